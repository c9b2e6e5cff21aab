#!/usr/bin/env bash
# Set up and run the batch forecaster.  Verbs:
#   ./setup.sh init   create .venv and install the package with its dev tools
#   ./setup.sh run    init if needed, then forecast the sample data once (embedded defaults)
#   ./setup.sh test   init if needed, then lint, type-check, check the layers and run the whole test suite
#   ./setup.sh test-fast  the same checks, and every test that is neither e2e nor slow (a few minutes)
#   ./setup.sh mutation   mutation testing of the safety-critical modules with mutmut (about 40 minutes on
#                     2 cores; docs/RELIABILITY.md); prints the score per module, writes the survivors' report
#   ./setup.sh serve [--checkpoint C]  init if needed, then start the local stack: Prefect server, MLflow
#                     server, work pools, deployments from prefect.yaml, a CPU worker and one GPU worker per GPU
#                     (FORECAST_GPU_WORKERS=N overrides the count) whose runs load checkpoint C (default:
#                     TIMESFM20_DEFAULT_CHECKPOINT, else the published one; docs/DEPLOYMENT.md)
#   ./setup.sh stop   stop everything `serve` started
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
  "$PY" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] < (3, 13)))' || {
    echo "error: Python 3.10, 3.11 or 3.12 is required; set PYTHON=/path/to/python3.11" >&2; exit 2; }
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  local log=$VENV/install.log started=$SECONDS
  echo "Installing into $VENV (a few minutes the first time; pip's output goes to $log)" >&2
  set +o pipefail  # the status wanted is install.sh's: PIPESTATUS[0]
  VENV="$VENV" bash scripts/install.sh 2>&1 | tee "$log" | { grep --line-buffered '^==> ' || true; } >&2
  local status=${PIPESTATUS[0]}
  set -o pipefail
  if [ "$status" != 0 ]; then
    echo "--- the last lines of $log:" >&2
    tail -n 30 "$log" >&2
    echo "error: installing failed (whole log: $log). Fix the cause above and run ./setup.sh init again." >&2
    exit 1
  fi
  fingerprint > "$STAMP"
  echo "Installed in $((SECONDS - started)) s." >&2
}

checkpoint_arg() {  # the checkpoint "$@" names (--checkpoint C or --checkpoint=C), else the default
  local checkpoint=${TIMESFM20_DEFAULT_CHECKPOINT:-google/timesfm-2.0-500m-pytorch} previous=
  for arg in "$@"; do
    [ "$previous" = --checkpoint ] && checkpoint=$arg
    [[ "$arg" == --checkpoint=* ]] && checkpoint=${arg#--checkpoint=}
    previous=$arg
  done
  printf '%s' "$checkpoint"
}

run() {
  init
  local sample=data/samples/us_macro_quarterly.csv checkpoint
  checkpoint=$(checkpoint_arg "$@")
  echo "Forecasting $sample with $checkpoint ..." >&2
  "$VENV/bin/forecast" run --source "$sample" --horizon "${TIMESFM20_DEFAULT_HORIZON_LEN:-8}" "$@"
}

ensure_promtool() {  # Prometheus' rule checker for the alert-rule tests, taken from Debian's package (not installed)
  [ -x "$VENV/bin/promtool" ] && return 0
  command -v apt-get >/dev/null || { echo "note: no apt-get: the alert rules get a structural check only" >&2; return 0; }
  local tmp
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null && dpkg-deb -x prometheus_*.deb x); then
    cp "$tmp/x/usr/bin/promtool" "$VENV/bin/promtool"
  else
    echo "note: could not fetch Debian's prometheus package: the alert rules get a structural check only" >&2
  fi
  rm -rf "$tmp"
}

checks() {  # what every test run starts with: lint, types, the Dockerfile, the layers
  init
  ensure_promtool
  export HF_HUB_OFFLINE=1
  "$VENV/bin/ruff" check .
  "$VENV/bin/mypy"
  "$VENV/bin/hadolint" Dockerfile
  "$VENV/bin/python" -m scripts.layering
}

test() {  # the end-to-end tests one at a time (they time real servers and workers), the rest in two processes
  checks
  local started=$SECONDS status=0
  pytest_selection -m e2e "$@" || status=$?
  pytest_selection -m "not e2e" -n "${FORECAST_TEST_WORKERS:-2}" "$@" || status=$?
  echo "test: $((SECONDS - started)) s of pytest (e2e, then the rest in ${FORECAST_TEST_WORKERS:-2} processes)" >&2
  return "$status"
}

pytest_selection() {  # pytest, where a selection (-k, a path) leaving one part empty is not a failure
  local status=0
  "$VENV/bin/python" -m pytest "$@" || status=$?
  [ "$status" -eq 5 ] && return 0  # no test collected
  return "$status"
}

test_fast() {
  local started=$SECONDS
  checks
  local status=0
  # Two test processes (FORECAST_TEST_WORKERS): the fast tier's tests share nothing but the machine.
  "$VENV/bin/python" -m pytest -m "not e2e and not slow" -n "${FORECAST_TEST_WORKERS:-2}" "$@" || status=$?
  echo "test-fast: $((SECONDS - started)) s (lint, types, layers and the tests marked neither e2e nor slow)" >&2
  return "$status"
}

mutation() {
  init
  "$VENV/bin/python" -m pip install --quiet -e ".[mutation]"
  export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1  # two test processes on two cores, not four threads each
  local started=$SECONDS
  [ "${1:-}" = --resume ] || rm -rf mutants  # a fresh run unless asked: mutmut's cache keys on code, not tests
  "$VENV/bin/mutmut" run
  "$VENV/bin/python" -m scripts.mutation_report
  echo "mutation: $((SECONDS - started)) s" >&2
}

STACK=$(realpath -m "${FORECAST_DATA_DIR:-data}/stack")
PREFECT_PORT=${PREFECT_PORT:-4200}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
METRICS_PORT=${METRICS_PORT:-9108}

wait_http() {  # url seconds name
  for _ in $(seq "$2"); do
    "$VENV/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" \
      2>/dev/null && return 0
    kill -0 "$(cat "$STACK/$3.pid")" 2>/dev/null || break
    sleep 1
  done
  echo "error: $3 did not answer at $1 within $2 s; see $STACK/$3.log" >&2
  return 1
}

start_bg() {  # name command... : own session (process group) so `stop` can end it and its children
  local name=$1
  shift
  setsid "$@" >>"$STACK/$name.log" 2>&1 < /dev/null &
  echo $! > "$STACK/$name.pid"
}

api_auth() {  # the server refuses requests without this user:password; every client started here sends it
  local file=$STACK/api-auth
  if [ -n "${PREFECT_SERVER_API_AUTH_STRING:-}" ]; then
    (umask 077 && printf '%s' "$PREFECT_SERVER_API_AUTH_STRING" > "$file")
  elif [ ! -s "$file" ]; then
    (umask 077 && printf 'forecast:%s' "$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))')" \
      > "$file")
  fi
  PREFECT_SERVER_API_AUTH_STRING=$(cat "$file")
  export PREFECT_SERVER_API_AUTH_STRING PREFECT_API_AUTH_STRING=$PREFECT_SERVER_API_AUTH_STRING
}

serve() {
  init
  mkdir -p "$STACK"
  # The worker's runs, the 5-minute health check included, load this checkpoint: offline, give a local one.
  TIMESFM20_DEFAULT_CHECKPOINT=$(checkpoint_arg "$@")
  [ -e "$TIMESFM20_DEFAULT_CHECKPOINT" ] && TIMESFM20_DEFAULT_CHECKPOINT=$(realpath "$TIMESFM20_DEFAULT_CHECKPOINT")
  export TIMESFM20_DEFAULT_CHECKPOINT
  local db=${FORECAST_PREFECT_DATABASE_URL:-}
  if [ -n "$db" ] && [[ "$db" != postgresql+asyncpg://* && "$db" != sqlite+aiosqlite://* ]]; then
    echo "error: FORECAST_PREFECT_DATABASE_URL must use the async driver form, e.g." \
         "postgresql+asyncpg://user:password@host:5432/prefect" >&2
    exit 2
  fi
  export PREFECT_HOME=${PREFECT_HOME:-$STACK/prefect-home}
  mkdir -p "$PREFECT_HOME"
  export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api
  export FORECAST_REPO_DIR=$PWD
  # One log file for every process started here and their flow runs, wherever each one's working directory is.
  FORECAST_DATA_DIR=$(realpath -m "${FORECAST_DATA_DIR:-data}")
  export FORECAST_DATA_DIR PREFECT_LOGGING_SETTINGS_PATH=${PREFECT_LOGGING_SETTINGS_PATH:-$PWD/flows/logging.yml}
  api_auth
  [ -n "$db" ] && export PREFECT_API_DATABASE_CONNECTION_URL=$db
  start_bg prefect-server "$VENV/bin/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false start_bg mlflow-server "$VENV/bin/mlflow" server --host 127.0.0.1 \
    --port "$MLFLOW_PORT" --workers 1 --backend-store-uri "sqlite:///$STACK/mlflow.db" \
    --artifacts-destination "$STACK/mlartifacts"
  wait_http "$PREFECT_API_URL/health" 180 prefect-server
  wait_http "http://127.0.0.1:$MLFLOW_PORT/health" 180 mlflow-server
  VENV=$VENV bash scripts/deploy.sh >>"$STACK/deploy.log" 2>&1 || {
    echo "error: registering the pools, deployments and automations failed; see $STACK/deploy.log" >&2; exit 1; }
  export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
  start_bg metrics-exporter "$VENV/bin/forecast" metrics-exporter --port "$METRICS_PORT"
  wait_http "http://127.0.0.1:$METRICS_PORT/metrics" 60 metrics-exporter
  start_bg worker-cpu "$VENV/bin/forecast" worker --pool cpu
  start_gpu_workers
  echo "Prefect UI:  http://127.0.0.1:$PREFECT_PORT   (API $PREFECT_API_URL; user:password in $STACK/api-auth)"
  echo "CLI/clients: export PREFECT_API_URL=$PREFECT_API_URL PREFECT_API_AUTH_STRING=\$(cat $STACK/api-auth)" \
       "MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT"
  echo "MLflow UI:   http://127.0.0.1:$MLFLOW_PORT"
  echo "Metrics:     http://127.0.0.1:$METRICS_PORT/metrics (Prometheus; alert rules in deployments/prometheus/)"
  if [ "$GPU_WORKERS" -gt 0 ]; then
    echo "Work pools:  cpu (a worker runs); gpu ($GPU_WORKERS workers, one per GPU; health-check-gpu resumed)"
  else
    echo "Work pools:  cpu (a worker runs); gpu has none: no GPU here (docs/DEPLOYMENT.md, GPU workers)"
  fi
  echo "Model:       $TIMESFM20_DEFAULT_CHECKPOINT, loaded by every run and by the health check every 5 minutes" \
       "(offline, start with ./setup.sh serve --checkpoint <local checkpoint dir>)"
  echo "Logs:        ${FORECAST_LOG_FILE:-${LOG_FILE:-$FORECAST_DATA_DIR/logs/forecast.log}} (every process and run);" \
       "each process's output and PID in $STACK; stop everything with ./setup.sh stop"
}

start_gpu_workers() {  # one worker per GPU (FORECAST_GPU_WORKERS overrides the count); sets GPU_WORKERS
  local count i log
  GPU_WORKERS=0
  count=${FORECAST_GPU_WORKERS:-$("$VENV/bin/python" -c 'import torch; print(torch.cuda.device_count())')}
  for ((i = 0; i < count; i++)); do
    log=$STACK/worker-gpu-$i.log
    if "$VENV/bin/forecast" worker --pool gpu --device-index "$i" --check >>"$log" 2>&1; then
      start_bg "worker-gpu-$i" "$VENV/bin/forecast" worker --pool gpu --device-index "$i"
      GPU_WORKERS=$((GPU_WORKERS + 1))
    else
      echo "warning: no worker for GPU $i: $(grep -m1 '^error:' "$log" || tail -n 1 "$log")" >&2
    fi
  done
  if [ "$GPU_WORKERS" -gt 0 ]; then
    "$VENV/bin/python" -m deployments.schedules resume health-check/health-check-gpu >>"$STACK/deploy.log" 2>&1 || {
      echo "error: resuming the GPU health check's schedule failed; see $STACK/deploy.log" >&2; exit 1; }
  fi
}

stop_group() {  # pidfile: SIGTERM to the process group, up to 30 s to exit, then SIGKILL (said on stderr)
  local pid name
  pid=$(cat "$1")
  name=$(basename "$1" .pid)
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 -- "-$pid" 2>/dev/null; then
    echo "warning: $name did not stop within 30 s of SIGTERM; killed" >&2
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

stop() {
  [ -d "$STACK" ] || return 0
  local pidfile
  # Workers first, while the API they report to is up: they stop in a second. A worker whose server went
  # first waits for it until killed.
  for pidfile in "$STACK"/worker-*.pid "$STACK"/*.pid; do
    [ -e "$pidfile" ] || continue
    stop_group "$pidfile"
  done
  echo "Stopped the local stack."
}

case "${1:-}" in
  init) init ;;
  run) shift; run "$@" ;;
  test) shift; test "$@" ;;
  test-fast) shift; test_fast "$@" ;;
  mutation) shift; mutation "$@" ;;
  serve) shift; serve "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 {init|run|test|test-fast|mutation|serve|stop} [args...]" >&2; exit 2 ;;
esac
