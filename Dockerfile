# Worker images: a Prefect process worker with this project installed, started by `forecast worker` (it checks
# the device and output root, then becomes `prefect worker start`). No weights are baked in: mount a volume at
# /home/forecast/.cache/huggingface (or point TIMESFM20_DEFAULT_CHECKPOINT at a mounted path).
#   CPU (default target): docker build -t timesfm-forecast .
#   GPU:                  docker build -t timesfm-forecast:gpu --target gpu --build-arg TORCH_INDEX_URL= .
# The GPU image is the same plain Python base with the CUDA build of the pinned torch, whose wheels carry the
# CUDA libraries: the host (NVIDIA container toolkit) supplies only the driver. Both install with
# scripts/install.sh, which CI runs through ./setup.sh, without the dev extra (no test tools, no JAX).
# BASE_IMAGE=python:3.12-slim works too (README).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS app
# The torch build: the CPU index by default (the CUDA build on PyPI is several GB); empty takes PyPI's CUDA
# build of the same version (the GPU image); or a CUDA index, e.g. https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# A directory of local wheels pip may take (scripts/build_image.sh mounts the machine's CPU torch wheel).
ARG PIP_FIND_LINKS=""
ENV PYTHONUNBUFFERED=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    FORECAST_REPO_DIR=/app \
    FORECAST_DATA_DIR=/data \
    HF_HOME=/home/forecast/.cache/huggingface \
    PATH=/app/.venv/bin:$PATH
RUN useradd --create-home --uid 10001 forecast \
    && mkdir -p /app /data /home/forecast/.cache/huggingface \
    && chown -R forecast:forecast /app /data /home/forecast
WORKDIR /app
USER 10001
COPY --chown=forecast:forecast pyproject.toml README.md prefect.yaml setup.sh ./
COPY --chown=forecast:forecast scripts ./scripts
COPY --chown=forecast:forecast forecast_model ./forecast_model
COPY --chown=forecast:forecast pipeline ./pipeline
COPY --chown=forecast:forecast tasks ./tasks
COPY --chown=forecast:forecast flows ./flows
COPY --chown=forecast:forecast deployments ./deployments
COPY --chown=forecast:forecast data/samples ./data/samples
RUN python3 -m venv .venv \
    && FORECAST_INSTALL_EXTRAS='' TORCH_INDEX_URL="$TORCH_INDEX_URL" PIP_FIND_LINKS="$PIP_FIND_LINKS" VENV=.venv \
       bash scripts/install.sh
VOLUME ["/data", "/home/forecast/.cache/huggingface"]
ENTRYPOINT ["forecast", "worker"]

# A GPU worker: its runs use the GPU the container is given (compose device_ids, Kubernetes nvidia.com/gpu),
# which it sees as GPU 0. The probe checks CUDA answers with free memory; the health-check-gpu deployment
# loads the model on the device every 5 minutes.
FROM app AS gpu
ENV TIMESFM20_DEFAULT_BACKEND=gpu \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
HEALTHCHECK --interval=60s --timeout=60s --start-period=120s CMD ["forecast", "health", "--device", "gpu", "--no-model"]
CMD ["--pool", "gpu"]

# The default target: a CPU worker.
FROM app AS cpu
ENV TIMESFM20_DEFAULT_BACKEND=cpu
HEALTHCHECK --interval=60s --timeout=30s --start-period=120s CMD ["forecast", "health", "--device", "cpu", "--no-model"]
CMD ["--pool", "cpu"]
