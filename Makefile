# airloop: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# Compile bytecode at install: this machine sets PYTHONDONTWRITEBYTECODE=1, and without .pyc files
# Great Expectations and Evidently take 2-3x longer to import in every task.
export UV_COMPILE_BYTECODE := 1
# Tiers run one after the other, cheapest first: a failing unit test stops before the slow tiers start.
PYTEST := $(PY) -m pytest -p no:cacheprovider

.DEFAULT_GOAL := help
.PHONY: help install lock demo up browser compose test test-unit test-integration test-e2e lint format clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv from requirements.lock (bytecode compiled, airloop's own too)
	@# airloop is installed editable, so uv does not compile it: without .pyc files every task process compiled
	@# the library anew (107 ms against 64 ms per task, measured). Only files changed since are compiled again.
	$(PY) -m compileall -q include dags

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(UV) pip sync --python $(PY) requirements.lock
	$(UV) pip install --python $(PY) --no-deps -e .
	touch $@

lock: ## re-resolve requirements.lock from pyproject.toml, and the image's requirements-runtime.lock from it
	$(UV) pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements.lock
	@# The same pins without the dev extras (tests, lint): what the Dockerfile installs.
	$(UV) pip compile pyproject.toml --universal --python-version 3.11 -c requirements.lock --no-annotate \
		-o requirements-runtime.lock

demo: install ## bring up Airflow + MLflow and replay 2013 through the whole loop, then a table per month (Ctrl-C stops)
	$(VENV)/bin/airloop demo

up: install ## run the local stack (Airflow + MLflow) until Ctrl-C
	$(VENV)/bin/airloop up

browser: ## Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "chromium could not be installed: browser tests will skip (fail under CI)"

compose: ## Debian's docker-compose, which validates docker-compose.yml (no Docker daemon needed)
	@command -v docker-compose >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; } || echo "docker-compose could not be installed: its test will skip (fail under CI)"

test: install browser compose ## every test tier: lint and layering with unit and DAG tests, integration, end-to-end (and browser)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PYTEST) -m "unit or dags" tests/unit tests/dags
	$(PYTEST) tests/integration
	$(PYTEST) tests/e2e

test-unit: install compose ## unit and DAG integrity tests only
	$(PYTEST) -m "unit or dags" tests/unit tests/dags

test-integration: install ## integration tests (PostgreSQL, MLflow, dag.test())
	$(PYTEST) tests/integration

test-e2e: install browser ## end-to-end tests on the real scheduler, and the UIs in Chromium
	$(PYTEST) tests/e2e

lint: install ## ruff (with Airflow's AIR rules) and the layering contracts (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## remove the local state (.airloop) and caches
	rm -rf .airloop .pytest_cache .ruff_cache
