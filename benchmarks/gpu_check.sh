#!/usr/bin/env bash
# Every CUDA figure of docs/gpu.md in one call, < 8 minutes on one H100/H200 (16 cores):
# CUDA unit tests, eager vs graph training step, eager vs graph latency of every variant,
# the tiny DAG with --resources gpu=1, the unet_256 sensitivity sweep, GPU-slot throughput,
# train() with GPU-resident data, the tiny DAG with the GPU-slot profile.  One JSON:
#   $OUT/gpu_check.json  (OUT: the device tool's output folder; default ./gpu_check_out)
# Fail soft: a step that fails is recorded (error, output tail) and the next one runs.
#
#   bash benchmarks/gpu_check.sh                      # everything (benchmarks/gpu_check.py --help)
#   bash benchmarks/gpu_check.sh --steps train_step latency
#
# Python: $PYTHON, else python3 (on the GPU machines: the image's torch).  The project's
# dependencies that image lacks (snakemake, jsonschema, torch-fidelity, ...) travel as wheels
# in .whl/ (made here by benchmarks/gpu_wheels.sh) and are installed into /tmp/site; the
# package itself is used from src/ (PYTHONPATH) with a `unetprune` launcher on PATH for the
# workflow's jobs.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
if ls .whl/*.whl >/dev/null 2>&1; then
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
       .whl/*.whl >"$OUT/pip.log" 2>&1; then
    echo "[gpu_check] installed $(ls .whl/*.whl | wc -l) wheels into /tmp/site"
  else
    echo "[gpu_check] wheel install failed (see pip.log); going on"
  fi
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="/tmp/site/bin:$PATH"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import shutil, sys; sys.exit(0 if shutil.which('unetprune') else 1)"; then
  BIN="$(mktemp -d)"
  printf '#!/bin/sh\nexec %s -m unetprune.cli "$@"\n' "$("$PY" -c 'import sys; print(sys.executable)')" >"$BIN/unetprune"
  chmod +x "$BIN/unetprune"
  export PATH="$BIN:$PATH"
fi
"$PY" benchmarks/gpu_check.py --out "$OUT" "$@"
rc=$?
echo "[gpu_check] $OUT/gpu_check.json (exit $rc)"
exit $rc
