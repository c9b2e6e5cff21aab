#!/usr/bin/env bash
# Install steps shared by ./setup.sh init and the Dockerfile (CI runs them through setup.sh).
set -euo pipefail
VENV=${VENV:-.venv}
# Lines starting with "==> " are the progress ./setup.sh init shows; the rest goes to its log.
echo "==> pip"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
echo "==> torch 2.13.0${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}"
# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build. TORCH_INDEX_URL lets a GPU host
# take the CUDA build of the same version, e.g. https://download.pytorch.org/whl/cu128
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
else
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
fi
# FORECAST_INSTALL_EXTRAS: the package's optional dependencies to add; default dev (test tools, and JAX and
# scikit-learn for the covariate reference test). The worker image passes none (FORECAST_INSTALL_EXTRAS=''), so it
# has no test tools and no JAX (scikit-learn comes with MLflow and timesfm anyway).
EXTRAS=${FORECAST_INSTALL_EXTRAS-dev}
echo "==> the package and its dependencies (Prefect, MLflow, timesfm, great-expectations, ...)${EXTRAS:+, extras [$EXTRAS]}"
"$VENV/bin/python" -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))'; then
  # timesfm 1.3.0 declares Python <3.12 but is pure Python; pyproject.toml declares the dependencies its code
  # uses (einshape, utilsforecast, huggingface_hub), so only the package itself is installed here.
  echo "==> timesfm 1.3.0 (declares Python <3.12; installed without its declared requirements)"
  "$VENV/bin/python" -m pip install --quiet --no-deps --ignore-requires-python "timesfm==1.3.0"
fi
