"""The batch forecast flow: prepare the model, load, validate, forecast, then track and publish."""

from __future__ import annotations

from datetime import date, datetime, timezone

from prefect import flow

from flows.common import (
    forecast_metrics,
    monitor_run,
    outcome,
    prepare_load_validate,
    publish_run,
    staged,
    start_run,
)
from pipeline.contracts import Horizon
from pipeline.manifest import StageTimer, build_manifest
from pipeline.params import (
    CovariateParams,
    FreqAlias,
    JobName,
    ModelParams,
    MonitorParams,
    OutputRoot,
    RunSummary,
)
from pipeline.report import plot_title
from pipeline.run import run_parameters
from pipeline.series_checks import SeriesChecks
from pipeline.sources import Source
from tasks.forecast import forecast_series, render_sample

__all__ = ["batch_forecast"]


@flow(name="batch-forecast")
def batch_forecast(
    source: Source,
    horizon: Horizon | None = None,
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen, so one shared default is safe
    checks: SeriesChecks = SeriesChecks(),  # noqa: B008
    monitor: MonitorParams = MonitorParams(),  # noqa: B008
    covariates: CovariateParams = CovariateParams(),  # noqa: B008
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
    partition. After forecasting, the run compares its forecasts with the job's previous run (`revisions`) and
    scores the job's earlier forecasts against its actuals (`realized_accuracy`); that never fails the run.
    The run is recorded in MLflow. Empty parameters take the environment defaults (see README).

    Args:
        source: Where the series come from (file or glob, http(s) URL, or DuckDB table/query), their
            format (long or wide) and column names.
        horizon: Steps to forecast (default: TIMESFM20_DEFAULT_HORIZON_LEN).
        model: Checkpoint (and optional SHA-256 pin), device, context length and batch size.
        checks: Which series are fit to forecast, and how many rejections the run tolerates.
        monitor: Revisions since the previous run and realized accuracy of earlier forecasts (on by default).
        covariates: Input columns (dynamic: known for the history and the forecast steps; static: one value per
            series) and calendar features the forecast regresses on; empty: a plain forecast. See
            docs/DATA_FORMAT.md, "Covariates".
        freq: Pandas frequency alias of the series (e.g. h, D, W, MS, QS); inferred per series if empty.
        job: Name of the forecast job; partitions outputs (default: derived from the source's name).
        as_of: Logical date of the run (default: today, UTC).
        output_root: Output directory (default: FORECAST_OUTPUT_ROOT or data/outputs).
        tracking_required: Fail, publishing nothing, when the run cannot be recorded in MLflow.
    """
    ctx = start_run(source, model, checks, horizon=horizon, freq=freq, job=job, as_of=as_of, output_root=output_root,
                    covariates=covariates)
    timer = StageTimer()
    with staged(ctx):
        info, loaded, validation = prepare_load_validate(ctx, source, timer)
        with timer("forecast"):
            stats = forecast_series(validation.regular_path, validation.status_path, ctx.staging, ctx.run,
                                    created_at=datetime.now(timezone.utc), covariates_path=validation.covariates_path)
        timer.seconds.update(stats.split())
        plot = render_sample(validation.regular_path, stats.forecasts_path, ctx.staging,
                             title=plot_title(ctx.run.job, ctx.run.as_of.isoformat(), ctx.run.engine.checkpoint,
                                              info.checkpoint_sha256))
        monitoring = monitor_run(ctx, monitor, timer, forecasts=stats.forecasts_path, scales=[stats.scales_path],
                                 actuals=[validation.regular_path])
        manifest = build_manifest(ctx.run, flow_name=ctx.flow_name, deployment=ctx.deployment,
                                  source=source.describe(), input_fingerprint=loaded.fingerprint, counts=stats.counts,
                                  output_rows=stats.output_rows, model=info, timings=timer.seconds,
                                  parameters=run_parameters(ctx.run, source, tracking_required=tracking_required,
                                                            monitor=monitor.model_dump(),
                                                            covariates=covariates.describe()),
                                  monitoring=monitoring.record(), covariates=covariates.describe())
        tables = ["forecasts", "series_status", *(["covariate_effects"] if stats.effects_path else [])]
        published = publish_run(ctx, manifest, timer, tables=tables, metrics=forecast_metrics(
                                    stats.counts, stats.output_rows, inference_seconds=stats.inference_seconds,
                                    series_per_second=stats.series_per_second, batch_size=stats.batch_size),
                                artifacts=[stats.status_path, validation.report_path, validation.summary_path, plot,
                                           *([validation.docs_path] if validation.docs_path else []),
                                           *([validation.covariates_report_path]
                                             if validation.covariates_report_path else [])],
                                tracking_required=tracking_required, monitoring=monitoring,
                                optional=("covariate_effects",))
    return RunSummary(**outcome(manifest, published), forecast_rows=stats.output_rows,
                      checkpoint=ctx.run.engine.checkpoint, monitoring=monitoring.record(),
                      **stats.model_dump(include={"inference_seconds", "series_per_second", "device", "precision",
                                                  "batch_size"}))
