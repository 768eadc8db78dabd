# `make demo` and `make test` work on a fresh machine: they create the venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint unit e2e clean tools

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/extauthz demo

lint: $(BIN)/.installed
	$(BIN)/ruff check extauthz tests bench
	$(BIN)/ruff format --check extauthz tests bench
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit

e2e: $(BIN)/.installed
	$(BIN)/pytest -q tests/e2e

# The offline check of docker/docker-compose.yaml needs Debian's docker-compose.
tools:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	  else echo "note: docker-compose missing; its check will be skipped"; fi; }

test: $(BIN)/.installed tools lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
