#!/usr/bin/env bash
# One-shot GPU check for a lent device machine (see docs/PERFORMANCE.md): installs the carried pure-Python
# wheels (timesfm 1.3.0, utilsforecast, einshape), checks correctness on a tiny checkpoint, then measures
# W1 with the real architecture. Results land in $OUT when set.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --ignore-requires-python --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# A failed correctness check is reported, and the W1 figures are still taken: the device time is scarce.
python3 benchmarks/engine_benchmark.py --quick --device cuda --precisions fp32,tf32,bf16 --batch-sizes 4,16 \
  --json "$OUT/quick.json" || echo "CORRECTNESS CHECK FAILED (see above); measuring W1 anyway"
python3 benchmarks/engine_benchmark.py --workload w1 --series "${SERIES:-4096}" --device cuda \
  --precisions fp32,tf32,bf16 --batch-sizes "${BATCHES:-256,1024}" --layouts "${LAYOUTS:-padded,packed}" \
  --repeats "${REPEATS:-2}" --json "$OUT/w1.json" || true
