"""The batch forecast flow: prepare the model, load, validate, forecast, track, publish."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from flows.params import ModelParams, RunSummary, default_job_name, validate_job_name
from forecast_model import EngineConfig
from tasks.forecast import ForecastStats, forecast_series, prepare_model
from tasks.load import load_series
from tasks.publish import discard_staging, publish_outputs, staging_dir
from tasks.series_checks import SeriesChecks
from tasks.settings import Settings, load_settings
from tasks.sources import Source
from tasks.tracking import track_run
from tasks.validate import ValidationOutcome, validate_series

__all__ = ["batch_forecast"]

JobName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


@flow(name="batch-forecast")
def batch_forecast(
    source: Source,
    horizon: Annotated[int, Field(gt=0, le=10000)] | None = None,
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen, so one shared default is safe
    checks: SeriesChecks = SeriesChecks(),  # noqa: B008
    freq: str | None = None,
    job: JobName | None = None,
    as_of: date | None = None,
    output_root: str | None = None,
) -> RunSummary:
    """Forecast every series of a file, URL or DuckDB table with TimesFM-2.0 and publish Parquet results.

    Series that fail validation are left out and listed with a reason in `series_status`; the run fails,
    publishing nothing, only if more than `checks.max_rejected_fraction` of them are rejected.
    Outputs go to `<output_root>/{forecasts,series_status}/job=<job>/as_of=<as_of>/data.parquet`;
    a re-run for the same job and as_of replaces that partition. The run is recorded in MLflow.
    Empty parameters take the environment defaults (see README).

    Args:
        source: Where the series come from (file or glob, http(s) URL, or DuckDB table/query), their
            format (long or wide) and column names.
        horizon: Steps to forecast (default: TIMESFM20_DEFAULT_HORIZON_LEN).
        model: Checkpoint, device, context length and batch size.
        checks: Which series are fit to forecast, and how many rejections the run tolerates.
        freq: Pandas frequency alias of the series (e.g. h, D, W, MS, QS); inferred per series if empty.
        job: Name of the forecast job; partitions outputs (default: derived from the source's name).
        as_of: Logical date of the run (default: today, UTC).
        output_root: Output directory (default: FORECAST_OUTPUT_ROOT or data/outputs).
    """
    settings = load_settings()
    run_id = str(flow_run.id or uuid.uuid4())
    job = validate_job_name(job or default_job_name(source))
    day = as_of or datetime.now(timezone.utc).date()
    root = Path(output_root).resolve() if output_root else settings.resolved_output_root()
    engine = _engine_config(model, settings)
    horizon = horizon or settings.horizon_len
    context_len = model.context_len or settings.context_len
    staging = staging_dir(root, run_id)
    try:
        prepare_model(engine)
        staged_input = load_series(source, settings.source_policy(), staging)
        validation = validate_series(staged_input, staging, checks, freq, day)
        stats = forecast_series(validation.regular_path, validation.status_path, staging, engine, horizon=horizon,
                                context_len=context_len, run_id=run_id, created_at=datetime.now(timezone.utc))
        summary = _summary(run_id, job, day, stats, engine, outputs={}, mlflow_run_id="")
        (staging / "summary.json").write_text(summary.model_dump_json(indent=2))
        mlflow_run_id = track_run(
            settings.resolved_tracking_uri(), settings.mlflow_experiment,
            None if settings.mlflow_tracking_uri else settings.artifact_root(),
            params=_tracked_params(source.describe(), engine, job, day, horizon, context_len, freq, checks),
            metrics=_tracked_metrics(stats), tags={"prefect.flow_run_id": run_id, "job": job},
            artifacts=_artifacts(stats, validation, staging),
        )
        outputs = publish_outputs(staging, root, job, day.isoformat())
    finally:
        discard_staging(staging)
    return _summary(run_id, job, day, stats, engine, {k: str(v) for k, v in outputs.items()}, mlflow_run_id)


def _engine_config(model: ModelParams, settings: Settings) -> EngineConfig:
    return EngineConfig(checkpoint=model.checkpoint or settings.checkpoint,
                        device=model.device or settings.backend,
                        batch_size=model.batch_size or settings.batch_size)


def _summary(run_id: str, job: str, day: date, stats: ForecastStats, engine: EngineConfig,
             outputs: dict[str, str], mlflow_run_id: str) -> RunSummary:
    counts = stats.model_dump(exclude={"forecasts_path", "status_path"})
    return RunSummary(run_id=run_id, job=job, as_of=day, checkpoint=engine.checkpoint, outputs=outputs,
                      mlflow_run_id=mlflow_run_id, **counts)


def _artifacts(stats: ForecastStats, validation: ValidationOutcome, staging: Path) -> list[Path]:
    docs = [validation.docs_path] if validation.docs_path else []
    return [stats.status_path, validation.report_path, staging / "summary.json", *docs]


def _tracked_params(source: str, engine: EngineConfig, job: str, day: date, horizon: int, context_len: int,
                    freq: str | None, checks: SeriesChecks) -> dict[str, str]:
    return {"source": source, "checkpoint": engine.checkpoint, "device": engine.device,
            "batch_size": str(engine.batch_size), "context_len": str(context_len), "horizon": str(horizon),
            "freq": str(freq), "job": job, "as_of": day.isoformat(),
            **{f"checks.{k}": str(v) for k, v in checks.model_dump().items()}}


def _tracked_metrics(stats: ForecastStats) -> dict[str, float]:
    return {"series_in": stats.series_in, "series_ok": stats.series_ok, "series_rejected": stats.series_rejected,
            "series_failed": stats.series_failed, "forecast_rows": stats.forecast_rows,
            "inference_seconds": stats.inference_seconds, "series_per_second": stats.series_per_second}
