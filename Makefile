# Two commands on a fresh machine (Python 3.11 + git):
#   make run    install everything into .venv (once) and run both offline demos (pix2pix, then Wav2Lip)
#   make test   install everything into .venv (once) and run the test suite (fast + slow end-to-end)
# Others: make check (validate $(CONFIG)), make test-fast, make test-slow, make lint (ruff check + format
# check, snakemake --lint), make clean.
# CONFIG=config/experiments/pix2pix_facades.yaml CORES=16 make run   runs another experiment
# (CONFIG may list several config files; each is one run of the same workflow).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/config.yaml config/wav2lip_demo.yaml
CORES  ?= 2
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1
# the workflow's rules call `unetprune`, `snakemake` and `dvc` from the venv
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run check test test-fast test-slow install lint clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes.  torch/torchvision (pinned in
# pyproject.toml) are installed first, on their own, as the largest download.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

check: $(STAMP)
	set -e; for c in $(CONFIG); do $(BIN)/unetprune config check "$$c"; done

run: $(STAMP)
	set -e; for c in $(CONFIG); do $(BIN)/snakemake --snakefile Snakefile --configfile "$$c" --cores $(CORES); done

test: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not gpu'

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	set -e; for c in $(CONFIG); do $(BIN)/snakemake --lint --snakefile Snakefile --configfile "$$c"; done

clean:
	rm -rf results .snakemake mlflow.db mlartifacts
