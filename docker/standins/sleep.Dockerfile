# Stand-in for curlimages/curl (see docker/README.md): Debian's curl, already in the base
# image, and coreutils' `sleep`, for the client container that docker/run-matrix.sh curls from.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
CMD ["sleep", "infinity"]
