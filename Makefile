# Every target works from a fresh clone: it creates .venv and installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
# The machines here cap torch/torchvision through a pip constraint file; our own pins win.
export PIP_CONSTRAINT := /dev/null
export ZENML_ANALYTICS_OPT_IN := false
export GX_ANALYTICS_ENABLED := false
export MLFLOW_ENABLE_TELEMETRY := false
PYTEST_ARGS ?=
# Two workers, whole modules each (tests/conftest.py puts the server-fault modules first), one torch
# thread each: two each oversubscribe 2 cores (17.6 min, against 12.9-14.1; 2026-12-02). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2

.PHONY: venv tools lint test demo services-down clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt -c requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Scanners whose pins clash with ours (checkov) live in their own venv.
tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): requirements-tools.txt
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet -r requirements-tools.txt
	touch $(TOOLS_STAMP)

test: $(STAMP) $(TOOLS_STAMP) lint
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# ruff (lint and format check) and mypy over what pyproject.toml names; both run before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/trs-pose demo

services-down: $(STAMP)
	$(BIN)/trs-pose services down

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .state .cache data runs
