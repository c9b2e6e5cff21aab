"""The forecast tasks: load the model before any data work, forecast the validated series, plot a sample."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from forecast_model import EngineConfig, load_engine, loaded_checkpoint
from pipeline.accounting import SeriesCounts, check_rejected_fraction, check_something_forecast, reason_examples
from pipeline.contracts import FORECAST_SCHEMA, ID, STATUS_SCHEMA, SeriesStatus
from pipeline.forecasting import build_forecast_table, mark_failed, run_engine
from pipeline.manifest import ModelInfo
from pipeline.progress import ProgressReporter
from pipeline.run import ResolvedRun
from pipeline.tables import write_table

__all__ = ["ForecastStats", "forecast_series", "prepare_model", "render_sample"]


class ForecastStats(BaseModel):
    """What the forecast stage did: small enough to pass between tasks and log."""

    model_config = ConfigDict(frozen=True)

    counts: SeriesCounts
    output_rows: int
    inference_seconds: float
    series_per_second: float
    device: str
    precision: str
    batch_size: int
    forecasts_path: Path
    status_path: Path


@task(name="prepare-model", cache_policy=NO_CACHE)
def prepare_model(engine: EngineConfig) -> ModelInfo:
    """Resolves the checkpoint, checks its pin and loads it before any data work, so a bad one fails fast.

    The engine stays cached in this process for the forecast task.
    """
    model = load_engine(engine)
    logger = get_run_logger()
    logger.info("Model %s (sha256 %s) ready on %s", engine.checkpoint, model.weights_sha256, model.device)
    random_weights = loaded_checkpoint(engine).random_weights
    if random_weights:
        logger.warning("Checkpoint %s holds seeded RANDOM weights (a test checkpoint): its forecasts mean nothing. "
                       "The run manifest records it (model.random_weights). Use it for smoke tests only; for real "
                       "forecasts use google/timesfm-2.0-500m-pytorch or its local copy.", engine.checkpoint)
    return ModelInfo(device=str(model.device), precision=model.precision,
                     checkpoint_sha256=model.weights_sha256 or "", random_weights=random_weights)


@task(name="forecast-series", cache_policy=NO_CACHE)
def forecast_series(regular_path: Path, status_path: Path, staging: Path, run: ResolvedRun, *, created_at: datetime,
                    whole_job: bool = True) -> ForecastStats:
    """Forecasts every accepted series and stages the forecast and final series-status tables.

    Series whose forecast is not finite become ``failed``. For a whole job the run fails when rejected and
    failed series together pass ``max_rejected_fraction``, or when nothing could be forecast; a shard
    (``whole_job=False``) records its counts and leaves those rules to its parent.
    """
    status, frame = pd.read_parquet(status_path), pd.read_parquet(regular_path)
    accepted = status[status["status"] == SeriesStatus.OK.value].reset_index(drop=True)
    model = load_engine(run.engine)
    started = time.perf_counter()
    progress = ProgressReporter("forecast", "series", get_run_logger().info)
    result = run_engine(model, frame, accepted, run.horizon, run.context_len, progress)
    seconds = time.perf_counter() - started
    table = build_forecast_table(accepted, result, model=run.engine.checkpoint, run_id=run.run_id,
                                 created_at=created_at)
    status, table = mark_failed(status, table)
    counts = SeriesCounts.from_status(status)
    if whole_job:
        examples = reason_examples(status)
        check_rejected_fraction(counts, run.checks.max_rejected_fraction, examples)
        check_something_forecast(counts, examples)
    get_run_logger().info("Forecast %d series x %d steps on %s in %.2f s", len(accepted), run.horizon, model.device,
                          seconds)
    return ForecastStats(
        counts=counts, output_rows=len(table), inference_seconds=round(seconds, 4),
        series_per_second=round(len(accepted) / max(seconds, 1e-9), 2), device=str(model.device),
        precision=model.precision, batch_size=model.batch_size,
        forecasts_path=write_table(table, FORECAST_SCHEMA, staging / "forecasts.parquet"),
        status_path=write_table(status, STATUS_SCHEMA, staging / "series_status.parquet"),
    )


@task(name="render-sample", cache_policy=NO_CACHE)
def render_sample(regular_path: Path, forecasts_path: Path, staging: Path) -> Path:
    """A PNG of a few series (history, forecast, q10-q90 band) for the MLflow run."""
    from pipeline.plot import SAMPLE_SERIES, plot_sample  # matplotlib only where a plot is drawn

    # Only the plotted series are read: the whole regularised input of a large run costs seconds to load.
    ids = list(pd.unique(pd.read_parquet(forecasts_path, columns=[ID])[ID]))[:SAMPLE_SERIES]
    only = [(ID, "in", ids)] if ids else None
    return plot_sample(pd.read_parquet(regular_path, filters=only), pd.read_parquet(forecasts_path, filters=only),
                       staging / "sample.png", n_series=SAMPLE_SERIES)
