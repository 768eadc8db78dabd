# `make demo` and `make test` work on a fresh machine: they create the venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint unit e2e clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/extauthz demo

lint: $(BIN)/.installed
	$(BIN)/ruff check extauthz tests
	$(BIN)/ruff format --check extauthz tests
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit

e2e: $(BIN)/.installed
	$(BIN)/pytest -q tests/e2e

test: $(BIN)/.installed lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
