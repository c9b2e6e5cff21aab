# Worker image: a Prefect process worker with this project installed. No weights are baked in: mount a
# volume at /home/forecast/.cache/huggingface (or point TIMESFM20_DEFAULT_CHECKPOINT at a mounted path).
#   CPU:  docker build -t timesfm-forecast .
#   CUDA: docker build -t timesfm-forecast:cuda --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#           --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# The install steps are scripts/install.sh, which CI runs through ./setup.sh.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG TORCH_INDEX_URL=""
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
    && TORCH_INDEX_URL="$TORCH_INDEX_URL" PIP_FIND_LINKS="$PIP_FIND_LINKS" VENV=.venv bash scripts/install.sh
VOLUME ["/data", "/home/forecast/.cache/huggingface"]
HEALTHCHECK --interval=60s --timeout=30s --start-period=120s CMD ["forecast", "health", "--no-model"]
ENTRYPOINT ["prefect", "worker", "start", "--type", "process"]
CMD ["--pool", "cpu"]
