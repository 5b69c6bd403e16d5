# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKERS ?= 2

.PHONY: run test install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## Web on http://127.0.0.1:5000 and $(WORKERS) workers, against DATABASE_URL / REDIS_URL.
run: $(BIN)/.installed
	$(BIN)/python -m storage.preflight
	$(BIN)/python -m storage.migrate
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -c worker=$(WORKERS) web worker

## Lint, type-check and every test tier (unit, integration, e2e).
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache *.egg-info
