"""The backtest flow: the forecast flow's sources and validation, then rolling-origin scoring."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timezone
from typing import Annotated

from prefect import flow
from pydantic import Field

from flows.common import prepare_load_validate, publish_run, staged, start_run
from flows.params import BacktestSummary, FreqAlias, JobName, ModelParams, OutputRoot
from tasks.evaluate import BacktestSpec, backtest_series
from tasks.manifest import RunManifest, StageTimer, package_versions
from tasks.series_checks import SeriesChecks
from tasks.sources import Source

__all__ = ["batch_backtest"]


@flow(name="batch-backtest")
def batch_backtest(
    source: Source,
    h: Annotated[int, Field(gt=0, le=10000)] = 12,
    n_windows: Annotated[int, Field(gt=0, le=100)] = 3,
    step: Annotated[int, Field(gt=0)] | None = None,
    season_length: Annotated[int, Field(gt=0)] | None = None,
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen, so one shared default is safe
    checks: SeriesChecks = SeriesChecks(),  # noqa: B008
    freq: FreqAlias | None = None,
    job: JobName | None = None,
    as_of: date | None = None,
    output_root: OutputRoot | None = None,
    tracking_required: bool = False,
) -> BacktestSummary:
    """Score TimesFM-2.0 against naive and seasonal-naive forecasts with a rolling-origin backtest.

    Each series is cut `n_windows` times, `step` apart, the last cut `h` before its end; every method
    forecasts `h` steps from each cut. Per series and overall: MAE, RMSE, sMAPE, MASE, scaled CRPS,
    q10-q90 coverage, and whether TimesFM beats seasonal naive (on MASE). Results go to
    `<output_root>/evaluations/job=<job>/as_of=<as_of>/`, MLflow and a Prefect table artifact.

    Args:
        source: Where the series come from, as for batch-forecast.
        h: Forecast horizon of each window.
        n_windows: Number of cutoffs.
        step: Steps between cutoffs (default: h).
        season_length: Seasonal period for seasonal naive and MASE (default: from each series' frequency).
        model: Checkpoint, device, context length and batch size.
        checks: Which series are fit to evaluate, and how many rejections the run tolerates.
        freq: Pandas frequency alias of the series; inferred per series if empty.
        job: Name of the job; partitions outputs (default: derived from the source's name).
        as_of: Logical date of the run (default: today, UTC).
        output_root: Output directory (default: FORECAST_OUTPUT_ROOT or data/outputs).
        tracking_required: Fail, publishing nothing, when the run cannot be recorded in MLflow.
    """
    ctx = start_run(source, model, job, as_of, output_root)
    spec = BacktestSpec(h=h, n_windows=n_windows, step=step or h, season_length=season_length,
                        context_len=model.context_len or ctx.settings.context_len)
    timer = StageTimer()
    with staged(ctx):
        info, loaded, validation = prepare_load_validate(ctx, source, checks, freq, timer)
        with timer("backtest"):
            stats = backtest_series(validation.regular_path, validation.status_path, ctx.staging, ctx.engine, spec,
                                    run_id=ctx.run_id, created_at=datetime.now(timezone.utc))
        manifest = RunManifest(
            run_id=ctx.run_id, flow_name=ctx.flow_name, deployment=ctx.deployment, job=ctx.job,
            as_of=ctx.day.isoformat(), source=source.describe(), input_fingerprint=loaded.fingerprint,
            series_in=stats.series_in, series_ok=stats.series_ok, series_rejected=stats.series_rejected,
            series_failed=0, output_rows=stats.evaluation_rows, rejected_by_reason=validation.rejected_by_reason,
            checkpoint=ctx.engine.checkpoint, checkpoint_sha256=info.weights_sha256, device=info.device,
            precision=info.precision, versions=package_versions(), timings=timer.seconds,
            parameters={"source": source.describe(), **spec.model_dump(), "model": dataclasses.asdict(ctx.engine),
                        "checks": checks.model_dump(), "freq": freq, "job": ctx.job, "as_of": ctx.day.isoformat()},
        )
        metrics = {f"{m}.{k}": v for m, values in stats.overall.items() for k, v in values.items()}
        published = publish_run(ctx, manifest, tables=["evaluations"],
                                metrics={**metrics, "share_beating_seasonal_naive": stats.share_beating_seasonal_naive},
                                artifacts=[stats.evaluations_path, stats.status_path, validation.report_path],
                                tracking_required=tracking_required)
    return BacktestSummary(run_id=ctx.run_id, job=ctx.job, as_of=ctx.day, checkpoint_sha256=info.weights_sha256,
                           input_fingerprint=loaded.fingerprint, outputs=published.outputs,
                           mlflow_run_id=published.mlflow_run_id, tracking_status=published.tracking_status,
                           warnings=published.warnings,
                           **stats.model_dump(include={"series_in", "series_ok", "series_rejected", "evaluation_rows",
                                                       "share_beating_seasonal_naive", "overall"}))
