# Entry points for developers and CI; `make test` is the one command CI runs (see .ci/run).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test demo lint

## Install system packages (PostgreSQL + PostGIS) when missing, create .venv, install the project.
setup:
	@bash scripts/setup.sh

## Run the whole test suite (starts its own throwaway PostgreSQL cluster).
test: setup
	$(BIN)/pytest -q $(PYTEST_ARGS)

## Build the demo registry and serve it.
demo: setup
	$(BIN)/smartcode demo --serve

## Static checks: lint, formatting, types.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
