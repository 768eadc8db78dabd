# Stand-ins for the upstreams of the rig (see docker/README.md): bookinfo's productpage and
# details, httpbin and nginx-proxy, each as one role of `python -m extauthz.rig.servers`
# (the upstreams of `make demo`), with the real httpbin application from PyPI. One image per
# role, built by docker/compose-test.sh with --network none (context: the repository root,
# wheels in docker/wheelhouse/):
#   --build-arg ROLE=productpage --build-arg PORT=9080
#   --build-arg ROLE=httpbin --build-arg PORT=80
#   --build-arg ROLE=jwks --build-arg PORT=80 --build-arg ROLE_ARGS="--jwks-file ..."
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY docker/wheelhouse /wheelhouse
RUN python -m venv /opt/apps \
    && /opt/apps/bin/pip install --no-index --find-links /wheelhouse --no-cache-dir \
        extauthz 'httpbin>=0.10,<1' \
    && rm -rf /wheelhouse
ARG ROLE=productpage
ARG PORT=9080
ARG ROLE_ARGS=""
ENV PATH=/opt/apps/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ROLE=${ROLE} \
    PORT=${PORT} \
    ROLE_ARGS=${ROLE_ARGS}
EXPOSE ${PORT}
CMD exec python -m extauthz.rig.servers "$ROLE" --host 0.0.0.0 --port "$PORT" $ROLE_ARGS
