# CPU worker image. The install steps live in scripts/install.sh, which CI runs through ./setup.sh.
# For a GPU image, build with --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim
ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    FORECAST_REPO_DIR=/app
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scripts ./scripts
COPY forecast_model ./forecast_model
COPY tasks ./tasks
COPY flows ./flows
COPY deployments ./deployments
COPY data/samples ./data/samples
COPY prefect.yaml setup.sh ./
RUN python -m venv .venv && TORCH_INDEX_URL="$TORCH_INDEX_URL" VENV=.venv bash scripts/install.sh
ENV PATH=/app/.venv/bin:$PATH
ENTRYPOINT ["forecast"]
CMD ["--help"]
