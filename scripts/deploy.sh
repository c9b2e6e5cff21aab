#!/usr/bin/env bash
# Register everything the Prefect API in PREFECT_API_URL needs to run this project's jobs: the cpu and gpu
# work pools, the deployments of prefect.yaml, the automations and the closed parameter schemas. Idempotent.
# Run by ./setup.sh serve, and by compose's one-shot `deploy` service, so workers register nothing themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
echo "==> work pools cpu and gpu"
"$BIN/prefect" work-pool create cpu --type process --overwrite
"$BIN/prefect" work-pool create gpu --type process --overwrite
echo "==> deployments (prefect.yaml)"
"$BIN/prefect" --no-prompt deploy --all
echo "==> automations"
"$BIN/python" -m deployments.automations
echo "==> closed parameter schemas"
"$BIN/python" -m deployments.parameters
