# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKERS ?= 2

.PHONY: run test install lock bench clean

# The whole dependency set, pinned with hashes: two clones install the same bytes. The
# project itself is not installed: every command runs from this folder.
$(BIN)/.installed: requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $@

install: $(BIN)/.installed

## Web on http://127.0.0.1:5000, $(WORKERS) workers and a mailer, against DATABASE_URL / REDIS_URL.
run: $(BIN)/.installed
	$(BIN)/python -m storage.preflight
	$(BIN)/python -m storage.migrate
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -c worker=$(WORKERS) web worker mailer

## Lint, type-check and every test tier (unit, integration, e2e).
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/pytest

## The benchmark: service vs. the seed-design baseline over HTTP with wrk (~15 minutes).
bench: $(BIN)/.installed
	$(BIN)/python -m bench $(BENCH_ARGS)

## Re-pin every dependency (after editing pyproject.toml's dependencies).
lock: $(BIN)/.installed
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links -o requirements.lock pyproject.toml
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links --extra dev -o requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache *.egg-info
