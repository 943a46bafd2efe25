# opsmon developer entry points. Every target is idempotent and quick when there is nothing to do.
#   make setup       system packages (deploy/install-system-deps.sh), .venv, pip install -e '.[dev]' (compiles
#                    the detector's helpers with mypyc: setup.py)
#   make test        setup, then the whole test suite (integration tests start their own stack)
#   make demo        setup, then `opsmon demo`
#   make stack-up    start the local stack (kafka, influxdb, alertmanager; SERVICES="..." for others)
#   make stack-down  stop it (data kept; WIPE=1 deletes it)
#   make lint        ruff

# Debian's python3.11 where there is one (deploy/install-system-deps.sh makes sure of it): built with
# profile-guided and link-time optimisation, like the python:3.11 image deploy/Dockerfile runs the worker on.
# A python3.11 found first on the PATH may be a plain build (pyenv's default), on which the worker does ~8%
# fewer events per second (docs/benchmark.md). PYTHON=... picks another; an existing .venv is kept.
PYTHON ?= $(if $(wildcard /usr/bin/python3.11),/usr/bin/python3.11,python3.11)
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

# Reinstalls only when pyproject.toml, setup.py or a module setup.py compiles (its COMPILED) changed since the last
# install: Python imports the compiled build before the source (conftest.py stops a test run on a stale one).
COMPILED := $(shell sed -n 's/^COMPILED = \[\(.*\)\]/\1/p' setup.py | tr -d '",')
$(VENV)/.installed: pyproject.toml setup.py $(COMPILED) | $(BIN)/python
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
