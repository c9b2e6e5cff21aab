#!/usr/bin/env bash
# Set up and run the batch forecaster.  Verbs:
#   ./setup.sh init   create .venv and install the package with its dev tools
#   ./setup.sh run    init if needed, then forecast the sample data once (embedded defaults)
#   ./setup.sh test   init if needed, then lint, type-check and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP=$VENV/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-90}
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=1

fingerprint() { cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1; }

init() {
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ]; then
    return 0
  fi
  "$PY" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] < (3, 12)))' || {
    echo "error: Python >=3.10,<3.12 is required (timesfm 1.3.0); set PYTHON=/path/to/python3.11" >&2; exit 2; }
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  VENV="$VENV" bash scripts/install.sh
  fingerprint > "$STAMP"
}

run() {
  init
  local sample=data/samples/us_macro_quarterly.csv
  echo "Forecasting $sample with ${TIMESFM20_DEFAULT_CHECKPOINT:-google/timesfm-2.0-500m-pytorch} ..." >&2
  "$VENV/bin/forecast" run --source "$sample" --horizon "${TIMESFM20_DEFAULT_HORIZON_LEN:-8}" "$@"
}

test() {
  init
  export HF_HUB_OFFLINE=1
  "$VENV/bin/ruff" check .
  "$VENV/bin/mypy"
  "$VENV/bin/python" -m pytest "$@"
}

case "${1:-}" in
  init) init ;;
  run) shift; run "$@" ;;
  test) shift; test "$@" ;;
  *) echo "usage: $0 {init|run|test} [args...]" >&2; exit 2 ;;
esac
