"""The forecast tasks: load the model before any data work, forecast the validated series, plot a sample."""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from forecast_model import (
    EngineConfig,
    ForecastResult,
    TimesFmEngine,
    cpu_threads,
    forecast_with_covariates,
    load_engine,
    loaded_checkpoint,
    torch_threads,
)
from pipeline.accounting import SeriesCounts, check_rejected_fraction, check_something_forecast, reason_examples
from pipeline.contracts import COVARIATE_EFFECTS_SCHEMA, ID, STATUS_SCHEMA, SeriesStatus
from pipeline.covariate_data import AlignedCovariates, effects_frame
from pipeline.forecasting import (
    SCALES_FILE,
    Chunk,
    ForecastSink,
    chunk_size,
    engine_threads,
    mark_series_failed,
    read_chunks,
)
from pipeline.manifest import ModelInfo
from pipeline.overlap import pipelined
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
    host_seconds: float = 0.0  # reading inputs and building and writing outputs, beside the engine
    overlap_seconds: float = 0.0  # of the engine's and the host's seconds, how many ran at the same time
    forecasts_path: Path
    status_path: Path
    scales_path: Path  # each forecast series' season length and scale, for monitoring
    effects_path: Path | None = None  # with covariates (and covariates.effects): the covariate_effects table

    def split(self) -> dict[str, float]:
        """The forecast stage's seconds by kind, for the manifest's ``timings``: the engine's, the host's
        (reading, building and writing tables) and those two overlapped (``forecast`` is about engine +
        host - overlapped)."""
        return {"forecast.engine": self.inference_seconds, "forecast.host": self.host_seconds,
                "forecast.overlapped": self.overlap_seconds}


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
                    whole_job: bool = True, covariates_path: Path | None = None) -> ForecastStats:
    """Forecasts every accepted series and stages the forecast and final series-status tables.

    Reading and preparing the next chunk of series, and building and writing the last chunk's forecasts,
    overlap the engine's work on the current chunk (``run.overlap``); the tables are the same either way.
    Series whose forecast is not finite become ``failed``. For a whole job the run fails when rejected and
    failed series together pass ``max_rejected_fraction``, or when nothing could be forecast; a shard
    (``whole_job=False``) records its counts and leaves those rules to its parent.

    With ``covariates_path`` (validation's aligned covariates), every series is forecast with its in-context
    regression on them (``forecast_model.forecast_with_covariates``); the regression's effects are staged as the
    ``covariate_effects`` table (unless ``covariates.effects`` is off) and the unseen categorical levels are
    counted in the status table.
    """
    status = pd.read_parquet(status_path)
    accepted = status[status["status"] == SeriesStatus.OK.value].reset_index(drop=True)
    model = load_engine(run.engine)
    progress = ProgressReporter("forecast", "series", get_run_logger().info)
    done = [0]

    regression = _Regression(covariates_path, run) if covariates_path is not None else None

    def infer(chunk: Chunk) -> ForecastResult:
        if regression is not None:
            result = regression(model, chunk)
        else:
            result = model.forecast(chunk.values, run.horizon, chunk.codes, run.context_len)
        done[0] += len(chunk.values)
        progress(done[0], len(accepted))
        return result

    partial = staging / "forecasts.parquet.partial"  # a forecasts table is staged only once the checks pass
    try:
        with ForecastSink(partial, model=run.engine.checkpoint, run_id=run.run_id, created_at=created_at,
                          scales=staging / SCALES_FILE) as sink:
            with _engine_threads(model, run):
                seconds = pipelined(read_chunks(regular_path, accepted, chunk_size(model)), infer, sink,
                                    overlap=run.overlap)
        status = mark_series_failed(status, sink.failed)
        effects_path = None
        if regression is not None:
            status = regression.count_unseen(status)
            effects_path = regression.stage_effects(staging, sink.failed) if run.covariates.effects else None
        counts = SeriesCounts.from_status(status)
        if whole_job:
            examples = reason_examples(status)
            check_rejected_fraction(counts, run.checks.max_rejected_fraction, examples)
            check_something_forecast(counts, examples)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    get_run_logger().info(
        "Forecast %d series x %d steps on %s in %.2f s: engine %.2f s and reading/writing %.2f s, %.2f s of them "
        "at the same time", len(accepted), run.horizon, model.device, seconds.wall, seconds.compute,
        seconds.produce + seconds.consume, seconds.hidden)
    return ForecastStats(
        counts=counts, output_rows=sink.rows, inference_seconds=seconds.compute,
        series_per_second=round(len(accepted) / max(seconds.compute, 1e-9), 2), device=str(model.device),
        precision=model.precision, batch_size=model.batch_size,
        host_seconds=round(seconds.produce + seconds.consume, 4), overlap_seconds=seconds.hidden,
        forecasts_path=partial.replace(staging / "forecasts.parquet"),
        status_path=write_table(status, STATUS_SCHEMA, staging / "series_status.parquet"), effects_path=effects_path,
        scales_path=staging / SCALES_FILE,
    )


class _Regression:
    """Forecasts chunks with their covariates, and keeps what the regression found for the tables."""

    def __init__(self, covariates_path: Path, run: ResolvedRun) -> None:
        self.run = run
        self.aligned = AlignedCovariates(pd.read_parquet(covariates_path), run.covariates)
        self.effects: list[pd.DataFrame] = []
        self.unseen: list[pd.Series] = []

    def __call__(self, model: TimesFmEngine, chunk: Chunk) -> ForecastResult:
        ids = chunk.accepted[ID].tolist()
        forecast = forecast_with_covariates(
            model, chunk.values, self.run.horizon,
            self.aligned.for_series(ids, [len(v) for v in chunk.values], self.run.horizon), freq=chunk.codes,
            context_len=self.run.context_len, **self.run.covariates.regression())
        self.effects.append(effects_frame(ids, forecast))
        self.unseen.append(pd.Series(forecast.unseen_levels, index=ids))
        return forecast.result

    def count_unseen(self, status: pd.DataFrame) -> pd.DataFrame:
        """``status`` with each forecast series' count of unseen categorical levels."""
        counts = pd.concat(self.unseen) if self.unseen else pd.Series(dtype="int64")
        status = status.copy()
        status["unseen_covariate_levels"] = status[ID].map(counts).astype("Int64")
        return status

    def stage_effects(self, staging: Path, failed: set[str]) -> Path:
        """Stages the ``covariate_effects`` table of the series forecast (not of those that ``failed``)."""
        frame = pd.concat(self.effects, ignore_index=True) if self.effects else pd.DataFrame(
            {ID: [], "covariate": [], "coefficient": []})
        frame = frame[~frame[ID].isin(failed)] if failed else frame
        return write_table(frame.assign(run_id=self.run.run_id), COVARIATE_EFFECTS_SCHEMA,
                           staging / "covariate_effects.parquet")


def _engine_threads(model: TimesFmEngine, run: ResolvedRun) -> contextlib.AbstractContextManager[int]:
    """The torch threads a CPU engine runs with in this stage (see ``engine_threads``); a GPU's are left."""
    if model.device.type != "cpu":
        return contextlib.nullcontext(torch_threads())
    return cpu_threads(engine_threads(run.cpu_threads, available=torch_threads()))


@task(name="render-sample", cache_policy=NO_CACHE)
def render_sample(regular_path: Path, forecasts_path: Path, staging: Path, title: str | None = None) -> Path:
    """A PNG of a few series (history, forecast, q10-q90 band) for the MLflow run."""
    from pipeline.plot import SAMPLE_SERIES, plot_sample  # matplotlib only where a plot is drawn

    # Only the plotted series are read: the whole regularised input of a large run costs seconds to load, and
    # the first series forecast are in the forecast table's first row group.
    table = pq.ParquetFile(forecasts_path)
    first = table.read_row_group(0, columns=[ID]).column(ID).to_pylist() if table.num_row_groups else []
    ids = list(dict.fromkeys(first))[:SAMPLE_SERIES]
    only = [(ID, "in", ids)] if ids else None
    return plot_sample(pd.read_parquet(regular_path, filters=only), pd.read_parquet(forecasts_path, filters=only),
                       staging / "sample.png", n_series=SAMPLE_SERIES, title=title)
