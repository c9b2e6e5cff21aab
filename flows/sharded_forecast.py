"""The sharded forecast flow: plan shards, run them (here or across a work pool), combine, publish once."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from prefect import flow
from pydantic import BaseModel

from flows.common import RunContext, forecast_metrics, monitor_run, outcome, publish_run, staged, start_run
from flows.fanout import run_local, run_remote
from flows.forecast_shard import SHARD_ACTUALS, forecast_shard
from pipeline.accounting import SeriesCounts, check_rejected_fraction, check_something_forecast
from pipeline.contracts import COVARIATE_EFFECTS_SCHEMA, FORECAST_SCHEMA, STATUS_SCHEMA, Horizon
from pipeline.forecasting import SCALES_FILE
from pipeline.manifest import StageTimer, build_manifest
from pipeline.params import (
    CovariateParams,
    FreqAlias,
    JobName,
    ModelParams,
    MonitorParams,
    OutputRoot,
    ShardedRunSummary,
    Sharding,
)
from pipeline.run import run_parameters
from pipeline.series_checks import SeriesChecks
from pipeline.sharding import ShardPlan, ShardRecord, attempt_path, job_fingerprint, job_model
from pipeline.sources import Source
from tasks.shards import combine_shards, plan_shards

__all__ = ["shard_parameters", "sharded_forecast"]


@flow(name="sharded-forecast")
def sharded_forecast(
    source: Source,
    horizon: Horizon | None = None,
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen, so one shared default is safe
    checks: SeriesChecks = SeriesChecks(),  # noqa: B008
    sharding: Sharding = Sharding(),  # noqa: B008
    monitor: MonitorParams = MonitorParams(),  # noqa: B008
    covariates: CovariateParams = CovariateParams(),  # noqa: B008
    freq: FreqAlias | None = None,
    job: JobName | None = None,
    as_of: date | None = None,
    output_root: OutputRoot | None = None,
    tracking_required: bool = False,
) -> ShardedRunSummary:
    """Forecast a job too large for one process or one machine, shard by shard, and publish it once.

    Series are split by a stable hash of `unique_id`; each shard is read alone from long-format Parquet,
    CSV or DuckDB, validated, forecast and committed to `<output_root>/_staging/<run_id>/`. With
    `sharding.deployment` set, every shard is a flow run of that `forecast-shard` deployment, taken by
    whichever worker of its pool is free (the workers must share `output_root`); crashed or failed shards
    are retried. Only when every shard has succeeded are the tables combined and published, with one
    manifest, exactly as `batch-forecast` publishes them (with the same `revisions` and `realized_accuracy`);
    otherwise nothing is.

    Args:
        source: Long-format Parquet/CSV file or glob, or DuckDB table/query.
        horizon: Steps to forecast (default: TIMESFM20_DEFAULT_HORIZON_LEN).
        model: Checkpoint (and optional SHA-256 pin), device, context length and batch size.
        checks: Which series are fit to forecast; `max_rejected_fraction` applies to the whole job.
        sharding: Series per shard (or a fixed number of shards), the shard deployment, attempts per shard.
        monitor: Revisions since the previous run and realized accuracy of earlier forecasts (on by default).
        covariates: As for batch-forecast, from the source's own columns and future rows (or future_source,
            read by every shard for its series).
        freq: Pandas frequency alias of the series; inferred per series if empty.
        job: Name of the forecast job; partitions outputs (default: derived from the source's name).
        as_of: Logical date of the run (default: the scheduled date, UTC).
        output_root: Output directory shared by all workers (default: FORECAST_OUTPUT_ROOT or data/outputs).
        tracking_required: Fail, publishing nothing, when the run cannot be recorded in MLflow.
    """
    ctx = start_run(source, model, checks, horizon=horizon, freq=freq, job=job, as_of=as_of, output_root=output_root,
                    covariates=covariates)
    timer = StageTimer()
    with staged(ctx):
        with timer("plan"):
            plan = plan_shards(source, ctx.settings.source_policy(), ctx.staging,
                               series_per_shard=sharding.series_per_shard, shards=sharding.shards)
        with timer("shards"):
            records = _run_shards(ctx, plan, sharding, source)
        counts, info = SeriesCounts.sum(r.counts for r in records), job_model(records)
        check_rejected_fraction(counts, checks.max_rejected_fraction)
        check_something_forecast(counts)
        with timer("combine"):
            forecasts_path = combine_shards(ctx.staging, records, "forecasts", FORECAST_SCHEMA)
            status_path = combine_shards(ctx.staging, records, "series_status", STATUS_SCHEMA)
            effects = []
            if covariates.enabled and covariates.effects:
                combine_shards(ctx.staging, records, "covariate_effects", COVARIATE_EFFECTS_SCHEMA)
                effects = ["covariate_effects"]
        attempts = [attempt_path(ctx.staging, r.shard, r.attempt) for r in records]
        monitoring = monitor_run(ctx, monitor, timer, forecasts=forecasts_path,
                                 scales=[directory / SCALES_FILE for directory in attempts],
                                 actuals=[directory / SHARD_ACTUALS for directory in attempts])
        manifest = build_manifest(
            ctx.run, flow_name=ctx.flow_name, deployment=ctx.deployment, source=source.describe(),
            input_fingerprint=job_fingerprint(records), counts=counts, output_rows=sum(r.output_rows for r in records),
            model=info, timings=timer.seconds, shards=[_shard_entry(r) for r in records],
            parameters=run_parameters(ctx.run, source, sharding=sharding.model_dump(),
                                      tracking_required=tracking_required, monitor=monitor.model_dump(),
                                      covariates=covariates.describe()),
            monitoring=monitoring.record(), covariates=covariates.describe())
        sample = attempt_path(ctx.staging, records[0].shard, records[0].attempt) / "sample.png"
        inference, throughput = sum(r.inference_seconds for r in records), _throughput(records, timer)
        metrics = forecast_metrics(counts, manifest.output_rows, shards=len(records),
                                   workers=len({r.worker for r in records}), inference_seconds=inference,
                                   series_per_second=throughput, batch_size=records[0].batch_size)
        published = publish_run(ctx, manifest, timer, tables=["forecasts", "series_status", *effects],
                                metrics=metrics, artifacts=[status_path, *([sample] if sample.is_file() else [])],
                                tracking_required=tracking_required, monitoring=monitoring,
                                optional=("covariate_effects",))
    return ShardedRunSummary(
        **outcome(manifest, published), forecast_rows=manifest.output_rows,
        checkpoint=ctx.run.engine.checkpoint, monitoring=monitoring.record(), inference_seconds=round(inference, 4),
        series_per_second=throughput,
        device=info.device, precision=info.precision,
        batch_size=records[0].batch_size, shards=len(records),
        shard_workers=dict(Counter(record.worker for record in records)))


def _run_shards(ctx: RunContext, plan: ShardPlan, sharding: Sharding, source: Source) -> list[ShardRecord]:
    shards = list(range(plan.shards))
    if sharding.deployment is None:
        return run_local(shards, lambda shard: forecast_shard(source, shard, str(ctx.staging), ctx.run),
                         sharding.max_attempts, sharding.local_concurrency)
    wire = shard_parameters({"source": source, "staging": str(ctx.staging), "run": ctx.run})
    return run_remote(shards, sharding.deployment, lambda shard: {**wire, "shard": shard}, ctx.staging,
                      parent_id=ctx.run.run_id, max_attempts=sharding.max_attempts, poll_seconds=sharding.poll_seconds)


def shard_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The shard flow's parameters as JSON, as they travel to a deployment's flow run."""
    return {name: value.model_dump(mode="json") if isinstance(value, BaseModel) else value
            for name, value in parameters.items()}


def _shard_entry(record: ShardRecord) -> dict[str, Any]:
    """One shard in the manifest: where it ran, its counts and timings."""
    return {**record.model_dump(include={"shard", "attempt", "worker", "host", "pid", "inference_seconds",
                                         "timings"}), **record.counts.published_fields()}


def _throughput(records: list[ShardRecord], timer: StageTimer) -> float:
    """Series forecast per wall-clock second of the shards stage (all workers together)."""
    return round(sum(r.counts.ok for r in records) / max(timer.seconds.get("shards", 0.0), 1e-9), 2)
