#!/usr/bin/env bash
# One-shot device check of the WHOLE batch-forecast flow on a lent GPU machine (docs/PERFORMANCE.md): the
# sample data and a seeded 20,000-series panel through batch_forecast with device gpu (ephemeral Prefect
# server, SQLite MLflow store), the published forecasts of 256 series compared with the CPU in fp32, stage
# timings and series/s per run, a PASS/FAIL table; gpu_flow_check.json and the log land in $OUT when set.
# Random weights with the TimesFM-2.0-500m architecture: nothing here is about accuracy.
#
#   bash benchmarks/gpu_wheels.sh                       # here, once: the wheels the device lacks, into .whl/
#   bash benchmarks/gpu_flow_check.sh                   # there (carry .whl); about 2-4 minutes on an H100
#   DEVICE=cpu SERIES=300 ARCH=tiny bash benchmarks/gpu_flow_check.sh    # CPU smoke test (no nvidia-smi)
#
# Knobs: DEVICE (gpu|cpu), SERIES (20000), ARCH (500m|tiny), HORIZON (28), WORKDIR (a new temp dir),
# PYTHON (python3). The carried wheels are installed only when .whl/ exists and the flow's imports fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
stamp() { echo "[$(date +%H:%M:%S)] $*"; }

if [ -d .whl ] && ! "$PYTHON" -c 'import prefect, mlflow, great_expectations, duckdb, timesfm' >/dev/null 2>&1; then
  stamp "installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --ignore-requires-python --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
if [ "${DEVICE:-gpu}" = gpu ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi

OUT_DIR=${OUT:-}
args=(--device "${DEVICE:-gpu}" --series "${SERIES:-20000}" --arch "${ARCH:-500m}" --horizon "${HORIZON:-28}")
if [ -n "${WORKDIR:-}" ]; then args+=(--workdir "$WORKDIR"); fi
stamp "starting the flow check: ${args[*]}"
if [ -n "$OUT_DIR" ]; then
  mkdir -p "$OUT_DIR"
  "$PYTHON" benchmarks/gpu_flow_check.py "${args[@]}" --out "$OUT_DIR" 2>&1 | tee "$OUT_DIR/gpu_flow_check.log"
else
  "$PYTHON" benchmarks/gpu_flow_check.py "${args[@]}"
fi
