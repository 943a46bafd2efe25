# opsmon developer entry points. Every target is idempotent and quick when there is nothing to do.
#   make setup       system packages (deploy/install-system-deps.sh), .venv, pip install -e '.[dev]'
#   make test        setup, then the whole test suite (integration tests start their own stack)
#   make demo        setup, then `opsmon demo`
#   make stack-up    start the local stack (kafka, influxdb, alertmanager; SERVICES="..." for others)
#   make stack-down  stop it (data kept; WIPE=1 deletes it)
#   make lint        ruff

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SERVICES ?=
PYTEST_ARGS ?=

.PHONY: setup system-deps test demo stack-up stack-down stack-status lint

setup: system-deps $(VENV)/.installed

system-deps:
	bash deploy/install-system-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when pyproject.toml changed since the last install.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/opsmon demo

stack-up: setup
	$(BIN)/opsmon stack up $(SERVICES)

stack-down:
	$(BIN)/opsmon stack down $(if $(WIPE),--wipe,)

stack-status:
	$(BIN)/opsmon stack status

lint:
	$(BIN)/ruff check .
