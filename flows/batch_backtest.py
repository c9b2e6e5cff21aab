"""The backtest flow: the forecast flow's sources and validation, then rolling-origin scoring."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated

from prefect import flow
from pydantic import Field

from flows.common import outcome, prepare_load_validate, publish_run, staged, start_run
from pipeline.contracts import Horizon
from pipeline.manifest import StageTimer, build_manifest
from pipeline.params import BacktestSummary, CovariateParams, FreqAlias, JobName, ModelParams, OutputRoot
from pipeline.run import run_parameters
from pipeline.scoring import BacktestSpec
from pipeline.series_checks import SeriesChecks
from pipeline.sources import Source
from tasks.backtest import backtest_series

__all__ = ["batch_backtest"]


@flow(name="batch-backtest")
def batch_backtest(
    source: Source,
    h: Horizon = 12,
    n_windows: Annotated[int, Field(gt=0, le=100)] = 3,
    step: Annotated[int, Field(gt=0)] | None = None,
    season_length: Annotated[int, Field(gt=0)] | None = None,
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen, so one shared default is safe
    checks: SeriesChecks = SeriesChecks(),  # noqa: B008
    covariates: CovariateParams = CovariateParams(),  # noqa: B008
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
        covariates: As for batch-forecast: each window is also forecast with them (their values at its steps,
            known in advance at its origin), scored as model TimesFMCovariates beside plain TimesFM.
        freq: Pandas frequency alias of the series; inferred per series if empty.
        job: Name of the job; partitions outputs (default: derived from the source's name).
        as_of: Logical date of the run (default: today, UTC).
        output_root: Output directory (default: FORECAST_OUTPUT_ROOT or data/outputs).
        tracking_required: Fail, publishing nothing, when the run cannot be recorded in MLflow.
    """
    ctx = start_run(source, model, checks, horizon=h, freq=freq, job=job, as_of=as_of, output_root=output_root,
                    covariates=covariates)
    spec = BacktestSpec(h=h, n_windows=n_windows, step=step or h, season_length=season_length)
    timer = StageTimer()
    with staged(ctx):
        # Covariates are needed at every step a window uses: the context of the first window to the series' end.
        steps = (ctx.run.context_len + spec.h + spec.step * (spec.n_windows - 1), 0)
        info, loaded, validation = prepare_load_validate(ctx, source, timer, covariate_steps=steps)
        with timer("backtest"):
            stats = backtest_series(validation.regular_path, validation.status_path, ctx.staging, ctx.run, spec,
                                    created_at=datetime.now(timezone.utc), covariates_path=validation.covariates_path)
        manifest = build_manifest(ctx.run, flow_name=ctx.flow_name, deployment=ctx.deployment,
                                  source=source.describe(), input_fingerprint=loaded.fingerprint, counts=stats.counts,
                                  output_rows=stats.output_rows, model=info, timings=timer.seconds,
                                  parameters=run_parameters(ctx.run, source, **spec.model_dump(),
                                                            covariates=covariates.describe()),
                                  covariates=covariates.describe())
        metrics = {f"{m}.{k}": v for m, values in stats.overall.items() for k, v in values.items()}
        published = publish_run(ctx, manifest, timer, tables=["evaluations"],
                                metrics={**metrics, "share_beating_seasonal_naive": stats.share_beating_seasonal_naive,
                                         **({"share_covariates_beating_plain": stats.share_covariates_beating_plain}
                                            if stats.share_covariates_beating_plain is not None else {})},
                                artifacts=[stats.evaluations_path, stats.status_path, validation.report_path,
                                           validation.summary_path,
                                           *([validation.covariates_report_path]
                                             if validation.covariates_report_path else [])],
                                tracking_required=tracking_required)
    return BacktestSummary(**outcome(manifest, published), evaluation_rows=stats.output_rows,
                           **stats.model_dump(include={"share_beating_seasonal_naive", "overall",
                                                       "share_covariates_beating_plain"}))
