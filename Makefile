# Two commands on a fresh machine (Python 3.11 + git):
#   make run    install everything into .venv (once) and run the default (offline demo) experiment
#   make test   install everything into .venv (once) and run the test suite (fast + slow end-to-end)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/config.yaml
CORES  ?= 2
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1
# the workflow's rules call `unetprune`, `snakemake` and `dvc` from the venv
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test test-fast test-slow install lint clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes. torch/torchvision are pinned (taken from
# local disk where pip's constraint file provides them).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --snakefile Snakefile --configfile $(CONFIG) --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not gpu'

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/snakemake --lint --snakefile Snakefile --configfile $(CONFIG)

clean:
	rm -rf results .snakemake mlflow.db
