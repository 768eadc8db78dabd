# `make demo` and `make test` work on a fresh machine: they create the venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint unit integration e2e reliability conformance drain clean tools compose-test pictures

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/extauthz demo

lint: $(BIN)/.installed
	$(BIN)/ruff check extauthz tests bench monitoring
	$(BIN)/ruff format --check extauthz tests bench monitoring
	$(BIN)/mypy

# In process: no other program is started.
unit: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit

# Processes and the service on loopback ports (serve, SIGHUP/SIGTERM, workers, promtool, the CLI
# as a process, bench scripts), and the deploy files (k8s/, docker/, envoy/) checked against the
# package: envoy --mode validate, kubectl kustomize and docker-compose config where installed.
integration: $(BIN)/.installed tools
	$(BIN)/pytest -q tests/integration tests/packaging

# Envoy, extauthz, upstreams and a JWKS server as real processes, real requests through them.
e2e: $(BIN)/.installed
	$(BIN)/pytest -q tests/e2e

# The hostile-input suite at length: `make test` runs it too, with a fixed seed and fewer
# examples (1,000 generated CheckRequests in process, 3,000 against a served process).
reliability: $(BIN)/.installed
	EXTAUTHZ_RELIABILITY_EXAMPLES=20000 EXTAUTHZ_RELIABILITY_CHECKS=30000 $(BIN)/pytest -q -s tests/reliability

# The differential suite at length: generated configurations and requests answered by Envoy's
# own filters (extauthz envoy-config) and by extauthz behind ext_authz, compared one by one.
# `make test` runs one fixed seed with 40 configurations; this runs three seeds (new ones each
# time unless CONFORMANCE_SEEDS is given) of 200 configurations x 100 requests.
CONFORMANCE_SEEDS ?= $(shell $(PYTHON) -c 'import random; print(",".join(str(random.randrange(10**9)) for _ in range(3)))')
conformance: $(BIN)/.installed
	EXTAUTHZ_CONFORMANCE_SEEDS=$(CONFORMANCE_SEEDS) EXTAUTHZ_CONFORMANCE_CONFIGS=200 \
	EXTAUTHZ_CONFORMANCE_REQUESTS=100 $(BIN)/pytest -q -s tests/conformance

# The rollout drill: two extauthz behind the shipped k8s gateway's ext_authz settings, one
# restarted under load; every answer must stay what the policies say. Run five times.
drain: $(BIN)/.installed
	for run in 1 2 3 4 5; do EXTAUTHZ_DRAIN_TEST=1 $(BIN)/pytest -q tests/e2e/test_drain.py || exit 1; done

# Debian tools some tests use: docker-compose (offline check of docker/docker-compose.yaml)
# promtool (from prometheus, to lint /metrics), wrk and h2load (the bench's smoke run). Installed
# when missing and we are root.
DEBIAN_TOOLS := docker-compose:docker-compose promtool:prometheus wrk:wrk h2load:nghttp2-client
tools:
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "note: missing$$missing; their checks will be skipped"; fi; fi

# The compose rig in containers (docker/compose-test.sh): images built, `docker-compose up`,
# the seed matrix and the sidecar scenario sent from the sleep container, everything torn
# down. Without a Docker engine it starts a private dockerd (as root; Debian's docker.io) and
# builds local stand-ins for the upstream images; COMPOSE_TEST_OPTIONAL=1 turns "no engine
# can start" into a warning.
compose-test: $(BIN)/.installed
	PYTHON=$(BIN)/python docker/compose-test.sh

# The README's dashboard picture: the rig, Debian's prometheus scraping it, traffic, reloads
# and a JWKS outage, each panel drawn from its query (monitoring/render.py, about a minute).
pictures: $(BIN)/.installed tools
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install --quiet -e '.[pictures]'
	$(BIN)/python -m monitoring.render monitoring/dashboard.png
	$(BIN)/python bench/plot.py bench/results.json bench/results.png

test: $(BIN)/.installed tools lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
