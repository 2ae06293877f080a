# ludex: the two set-up commands are `make run` and `make test`; the rest are their parts.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
BIN    := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help install run test lint typecheck unit services services-down clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(UV):
	@scripts/bootstrap-python "$(PYTHON)" "$(TOOLS)"

$(BIN)/ludex: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python "$(PYTHON)"
	@touch $@

node_modules/.bin/anvil: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(BIN)/ludex node_modules/.bin/anvil ## Create .venv, install locked Python and npm dependencies

run: install ## Install, then run ludex on embedded defaults with a demo at http://127.0.0.1:8000
	$(BIN)/ludex run --demo

test: install ## Install, start the real local services, run lint, types and every test
	scripts/services up
	$(MAKE) --no-print-directory lint typecheck
	LUDEX_REQUIRE_SERVICES=1 $(BIN)/pytest -ra

lint: ## ruff lint and format check
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: ## mypy --strict on src/
	$(BIN)/mypy

unit: install ## Tests that need no server (services tests skip when their server is down)
	$(BIN)/pytest -ra -q

services: ## Start PostgreSQL, MariaDB, Redis, Kafka and anvil on 127.0.0.1
	scripts/services up

services-down: ## Stop the local services
	scripts/services down

clean: ## Remove the virtual environments, node_modules and local data
	rm -rf $(VENV) $(TOOLS) node_modules var .pytest_cache .mypy_cache .ruff_cache
