# graphrag-streams — the two commands a newcomer needs:
#   make demo   stack up, worker, submit the sample videos, show the graph
#   make test   install, start the local stack, run the whole suite, stop the stack
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STACK  := $(BIN)/python stack/localstack.py
PYTEST_ARGS ?=

.PHONY: help install stack-up stack-up-secure stack-down stack-wipe stack-status topics worker demo demo-stop \
        test test-unit lint typecheck schemas check-schemas lock clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)

# Every dependency from the hashed lock (scripts/lock.sh regenerates it), then the project
# itself, editable and without dependencies; with uv (scripts/uv.sh: pinned, cached under
# the user's cache dir), about 22 s where pip took a minute. Compiled to bytecode at install,
# as pip does and uv does not by default: where PYTHONDONTWRITEBYTECODE is set (this
# machine's CI), no process writes .pyc files, and each one compiled every module it imported
# again (a worker's imports 4.5 s of CPU instead of 1.9 s; make test 1000 s of CPU, not 670).
$(VENV)/.installed: pyproject.toml requirements-dev.lock | $(BIN)/python
	@uv="$$(PYTHON=$(PYTHON) scripts/uv.sh)" && export VIRTUAL_ENV="$(abspath $(VENV))" && \
	  echo "$$uv pip install --compile-bytecode --require-hashes -r requirements-dev.lock" && \
	  "$$uv" pip install -q --compile-bytecode --require-hashes -r requirements-dev.lock && \
	  "$$uv" pip install -q --no-deps -e .
	@touch $@

install: $(VENV)/.installed ## Create .venv and install the project with its dev tools (from the hashed lock)

stack-up: install ## Start Kafka and FerretDB on loopback (provisioned and cached on first use)
	$(STACK) up

stack-up-secure: install ## The same with SASL_SSL/SCRAM, mTLS and FerretDB TLS listeners (kept until stack-wipe)
	$(STACK) up --secure

stack-down: ## Stop the local stack (data kept)
	@if [ -x $(BIN)/python ]; then $(STACK) down; else $(PYTHON) stack/localstack.py down; fi

stack-wipe: ## Stop the local stack and delete its data and logs
	@if [ -x $(BIN)/python ]; then $(STACK) down --wipe; else $(PYTHON) stack/localstack.py down --wipe; fi

stack-status: ## Show what the local stack runs
	@$(STACK) status

topics: install ## Create the pipeline topics (idempotent)
	$(BIN)/graphrag-streams topics create

worker: install ## Run every stage in the foreground (development)
	$(BIN)/graphrag-streams worker --stages all

demo: install ## The main job end to end on the local defaults (no API key needed)
	@PATH="$(abspath $(BIN)):$$PATH" scripts/demo.sh

demo-stop: ## Stop the demo's worker, lag exporter and explorer (the stack keeps running; `make stack-down` stops it)
	@PATH="$(abspath $(BIN)):$$PATH" scripts/demo.sh stop

test: install ## Install, start the local stack, run the whole suite, stop the stack
	@scripts/run-tests.sh $(PYTEST_ARGS)

test-unit: install ## Only the tests that need no running services
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

lint: install ## ruff and the import-linter layer contracts
	$(BIN)/ruff check streams agents schemas tests stack benchmarks
	$(BIN)/lint-imports

typecheck: install ## mypy (strict)
	$(BIN)/mypy

schemas: install ## Regenerate schemas/jsonschema from the pydantic models
	$(BIN)/python -m schemas.generate

lock: ## Regenerate requirements.lock and requirements-dev.lock (hashed, with uv)
	scripts/lock.sh

check-schemas: install
	$(BIN)/python -m schemas.generate --check

clean: ## Remove the venv and caches (not the stack's data: see stack-wipe)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
