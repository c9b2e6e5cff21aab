"""The batch forecast flow: prepare the model, load, validate, forecast, then track and publish."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timezone
from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from flows.common import RunContext, prepare_load_validate, publish_run, staged, start_run
from flows.params import FreqAlias, JobName, ModelParams, OutputRoot, RunSummary
from tasks.forecast import ForecastStats, ModelInfo, forecast_series, render_sample
from tasks.load import LoadResult
from tasks.manifest import RunManifest, StageTimer, package_versions
from tasks.series_checks import SeriesChecks
from tasks.sources import Source

__all__ = ["batch_forecast"]


@flow(name="batch-forecast")
def batch_forecast(
    source: Source,
    horizon: Annotated[int, Field(gt=0, le=10000)] | None = None,
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen, so one shared default is safe
    checks: SeriesChecks = SeriesChecks(),  # noqa: B008
    freq: FreqAlias | None = None,
    job: JobName | None = None,
    as_of: date | None = None,
    output_root: OutputRoot | None = None,
    tracking_required: bool = False,
) -> RunSummary:
    """Forecast every series of a file, URL or DuckDB table with TimesFM-2.0 and publish Parquet results.

    Series that fail validation are left out and listed with a reason in `series_status`; the run fails,
    publishing nothing, only if more than `checks.max_rejected_fraction` of them are rejected.
    Outputs go to `<output_root>/{forecasts,series_status,runs}/job=<job>/as_of=<as_of>/`, with a DuckDB
    catalog of views at `<output_root>/catalog.duckdb`; a re-run for the same job and as_of replaces that
    partition. The run is recorded in MLflow. Empty parameters take the environment defaults (see README).

    Args:
        source: Where the series come from (file or glob, http(s) URL, or DuckDB table/query), their
            format (long or wide) and column names.
        horizon: Steps to forecast (default: TIMESFM20_DEFAULT_HORIZON_LEN).
        model: Checkpoint (and optional SHA-256 pin), device, context length and batch size.
        checks: Which series are fit to forecast, and how many rejections the run tolerates.
        freq: Pandas frequency alias of the series (e.g. h, D, W, MS, QS); inferred per series if empty.
        job: Name of the forecast job; partitions outputs (default: derived from the source's name).
        as_of: Logical date of the run (default: today, UTC).
        output_root: Output directory (default: FORECAST_OUTPUT_ROOT or data/outputs).
        tracking_required: Fail, publishing nothing, when the run cannot be recorded in MLflow.
    """
    ctx = start_run(source, model, job, as_of, output_root)
    horizon = horizon or ctx.settings.horizon_len
    context_len = model.context_len or ctx.settings.context_len
    timer = StageTimer()
    with staged(ctx):
        info, loaded, validation = prepare_load_validate(ctx, source, checks, freq, timer)
        with timer("forecast"):
            stats = forecast_series(validation.regular_path, validation.status_path, ctx.staging, ctx.engine,
                                    horizon=horizon, context_len=context_len, run_id=ctx.run_id,
                                    created_at=datetime.now(timezone.utc),
                                    max_rejected_fraction=checks.max_rejected_fraction)
        plot = render_sample(validation.regular_path, stats.forecasts_path, ctx.staging)
        parameters = {"source": source.describe(), "format": source.format, "horizon": horizon,
                      "context_len": context_len, "model": dataclasses.asdict(ctx.engine),
                      "checks": checks.model_dump(), "freq": freq, "job": ctx.job, "as_of": ctx.day.isoformat(),
                      "tracking_required": tracking_required}
        manifest = _manifest(ctx, source.describe(), loaded, stats, info, parameters, timer)
        published = publish_run(ctx, manifest, tables=["forecasts", "series_status"], metrics=_metrics(stats),
                                artifacts=[stats.status_path, validation.report_path, plot,
                                           *([validation.docs_path] if validation.docs_path else [])],
                                tracking_required=tracking_required)
    return RunSummary(run_id=ctx.run_id, job=ctx.job, as_of=ctx.day, checkpoint=ctx.engine.checkpoint,
                      checkpoint_sha256=info.weights_sha256, input_fingerprint=loaded.fingerprint,
                      outputs=published.outputs, mlflow_run_id=published.mlflow_run_id,
                      tracking_status=published.tracking_status,
                      warnings=published.warnings,
                      **stats.model_dump(exclude={"forecasts_path", "status_path", "by_reason"}))


def _manifest(ctx: RunContext, source: str, loaded: LoadResult, stats: ForecastStats, info: ModelInfo,
              parameters: dict[str, Any], timer: StageTimer) -> RunManifest:
    return RunManifest(
        run_id=ctx.run_id, flow_name=ctx.flow_name, deployment=ctx.deployment, job=ctx.job,
        as_of=ctx.day.isoformat(), source=source, input_fingerprint=loaded.fingerprint, series_in=stats.series_in,
        series_ok=stats.series_ok, series_rejected=stats.series_rejected, series_failed=stats.series_failed,
        output_rows=stats.forecast_rows, rejected_by_reason=stats.by_reason,
        checkpoint=ctx.engine.checkpoint, checkpoint_sha256=info.weights_sha256, device=info.device,
        precision=info.precision, versions=package_versions(), parameters=parameters, timings=timer.seconds,
    )


def _metrics(stats: ForecastStats) -> dict[str, float]:
    return {"series_in": stats.series_in, "series_ok": stats.series_ok, "series_rejected": stats.series_rejected,
            "series_failed": stats.series_failed, "forecast_rows": stats.forecast_rows,
            "inference_seconds": stats.inference_seconds, "series_per_second": stats.series_per_second,
            "batch_size": stats.batch_size}
