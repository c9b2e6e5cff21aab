"""The sharded forecast flow: plan shards, run them (here or across a work pool), combine, publish once."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import date
from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows.common import RunContext, publish_run, staged, start_run
from flows.fanout import run_local, run_remote
from flows.forecast_shard import forecast_shard
from flows.params import FreqAlias, JobName, ModelParams, OutputRoot, ShardedRunSummary, Sharding
from tasks.contracts import FORECAST_SCHEMA, STATUS_SCHEMA
from tasks.errors import DataValidationError
from tasks.manifest import RunManifest, StageTimer, package_versions
from tasks.series_checks import SeriesChecks
from tasks.shard_store import ShardRecord, attempt_path, combine_tables
from tasks.shards import ShardPlan, plan_shards
from tasks.sources import Source

__all__ = ["shard_parameters", "sharded_forecast"]

@flow(name="sharded-forecast")
def sharded_forecast(
    source: Source,
    horizon: Annotated[int, Field(gt=0, le=10000)] | None = None,
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen, so one shared default is safe
    checks: SeriesChecks = SeriesChecks(),  # noqa: B008
    sharding: Sharding = Sharding(),  # noqa: B008
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
    manifest, exactly as `batch-forecast` publishes them; otherwise nothing is.

    Args:
        source: Long-format Parquet/CSV file or glob, or DuckDB table/query.
        horizon: Steps to forecast (default: TIMESFM20_DEFAULT_HORIZON_LEN).
        model: Checkpoint (and optional SHA-256 pin), device, context length and batch size.
        checks: Which series are fit to forecast; `max_rejected_fraction` applies to the whole job.
        sharding: Series per shard (or a fixed number of shards), the shard deployment, attempts per shard.
        freq: Pandas frequency alias of the series; inferred per series if empty.
        job: Name of the forecast job; partitions outputs (default: derived from the source's name).
        as_of: Logical date of the run (default: the scheduled date, UTC).
        output_root: Output directory shared by all workers (default: FORECAST_OUTPUT_ROOT or data/outputs).
        tracking_required: Fail, publishing nothing, when the run cannot be recorded in MLflow.
    """
    ctx = start_run(source, model, job, as_of, output_root)
    horizon = horizon or ctx.settings.horizon_len
    # Resolved here, once: every worker then runs the same checkpoint and settings, whatever its env says.
    resolved = ModelParams(checkpoint=ctx.engine.checkpoint, device=ctx.engine.device,
                           context_len=model.context_len or ctx.settings.context_len,
                           batch_size=ctx.engine.batch_size, precision=model.precision,
                           expected_sha256=model.expected_sha256)
    timer = StageTimer()
    with staged(ctx):
        with timer("plan"):
            plan = plan_shards(source, ctx.settings.source_policy(), ctx.staging,
                             series_per_shard=sharding.series_per_shard, shards=sharding.shards)
        get_run_logger().info("Planned %d shards of %d series (%d to %d per shard)", plan.shards, plan.series,
                              min(plan.sizes), max(plan.sizes))
        with timer("shards"):
            records = _run_shards(ctx, plan, sharding, {
                "source": source, "staging": str(ctx.staging), "horizon": horizon, "as_of": ctx.day,
                "run_id": ctx.run_id, "model": resolved, "checks": checks, "freq": freq})
        _check_job(records, checks)
        with timer("combine"):
            combine_tables(ctx.staging, records, "forecasts", FORECAST_SCHEMA)
            status_path = combine_tables(ctx.staging, records, "series_status", STATUS_SCHEMA)
        parameters = {"source": source.describe(), "format": source.format, "horizon": horizon,
                      "model": resolved.model_dump(), "checks": checks.model_dump(),
                      "sharding": sharding.model_dump(), "freq": freq, "job": ctx.job, "as_of": ctx.day.isoformat(),
                      "tracking_required": tracking_required}
        manifest = _manifest(ctx, source.describe(), records, parameters, timer)
        sample = attempt_path(ctx.staging, records[0].shard, records[0].attempt) / "sample.png"
        published = publish_run(ctx, manifest, tables=["forecasts", "series_status"], metrics=_metrics(records, timer),
                                artifacts=[status_path, *([sample] if sample.is_file() else [])],
                                tracking_required=tracking_required)
    workers = dict(Counter(record.worker for record in records))
    inference = sum(r.inference_seconds for r in records)
    return ShardedRunSummary(
        run_id=ctx.run_id, job=ctx.job, as_of=ctx.day, checkpoint=ctx.engine.checkpoint,
        checkpoint_sha256=manifest.checkpoint_sha256, input_fingerprint=manifest.input_fingerprint,
        outputs=published.outputs, mlflow_run_id=published.mlflow_run_id, tracking_status=published.tracking_status,
        warnings=published.warnings, series_in=manifest.series_in, series_ok=manifest.series_ok,
        series_rejected=manifest.series_rejected,
        series_failed=manifest.series_failed, forecast_rows=manifest.output_rows,
        inference_seconds=round(inference, 4), series_per_second=_throughput(records, timer),
        device=manifest.device, precision=manifest.precision, batch_size=records[0].batch_size,
        shards=len(records), shard_workers=workers)


def _run_shards(ctx: RunContext, plan: ShardPlan, sharding: Sharding, parameters: dict[str, Any]) -> list[ShardRecord]:
    shards = list(range(plan.shards))
    if sharding.deployment is None:
        return run_local(shards, lambda shard: forecast_shard(shard=shard, **parameters), sharding.max_attempts)
    wire = shard_parameters(parameters)
    return run_remote(shards, sharding.deployment, lambda shard: {**wire, "shard": shard}, ctx.staging,
                      parent_id=ctx.run_id, max_attempts=sharding.max_attempts, poll_seconds=sharding.poll_seconds)


def shard_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The shard flow's parameters as JSON, as they travel to a deployment's flow run."""
    return {name: value.model_dump(mode="json") if isinstance(value, BaseModel)
            else value.isoformat() if isinstance(value, date) else value for name, value in parameters.items()}


def _check_job(records: list[ShardRecord], checks: SeriesChecks) -> None:
    """The whole job's checks: one set of weights everywhere, and the rejected share under the limit."""
    weights = {r.weights_sha256 for r in records}
    if len(weights) > 1:
        raise DataValidationError(f"Shards ran different weights {sorted(weights)} for one checkpoint: the workers "
                                  "do not hold the same files. Fix: pin model.expected_sha256, or sync the workers.")
    total = sum(r.series_in for r in records)
    rejected = sum(r.series_rejected for r in records)
    failed = sum(r.series_failed for r in records)
    if sum(r.forecast_rows for r in records) == 0 or (rejected + failed) / total > checks.max_rejected_fraction:
        raise DataValidationError(
            f"{rejected + failed} of {total} series cannot be forecast ({rejected} rejected, {failed} failed; "
            f"{(rejected + failed) / total:.0%}, more than max_rejected_fraction={checks.max_rejected_fraction:.0%}, "
            f"or no forecast at all), so nothing is published. Reasons: {_rejected_by_reason(records)}; the "
            "series_status table of each shard is in the staging directory until the run ends. Fix the input "
            "or raise checks.max_rejected_fraction.")


def _manifest(ctx: RunContext, source: str, records: list[ShardRecord], parameters: dict[str, Any],
              timer: StageTimer) -> RunManifest:
    fingerprints = "".join(r.input_fingerprint for r in sorted(records, key=lambda r: r.shard))
    return RunManifest(
        run_id=ctx.run_id, flow_name=ctx.flow_name, deployment=ctx.deployment, job=ctx.job,
        as_of=ctx.day.isoformat(), source=source, input_fingerprint=hashlib.sha256(fingerprints.encode()).hexdigest(),
        series_in=sum(r.series_in for r in records), series_ok=sum(r.series_ok for r in records),
        series_rejected=sum(r.series_rejected for r in records), series_failed=sum(r.series_failed for r in records),
        output_rows=sum(r.forecast_rows for r in records), rejected_by_reason=_rejected_by_reason(records),
        checkpoint=ctx.engine.checkpoint, checkpoint_sha256=records[0].weights_sha256,
        device=",".join(sorted({r.device for r in records})),
        precision=",".join(sorted({r.precision for r in records})),
        versions=package_versions(), parameters=parameters, timings=timer.seconds,
        shards=[r.model_dump(include={"shard", "attempt", "worker", "host", "pid", "series_in", "series_ok",
                                      "series_rejected", "series_failed", "inference_seconds", "timings"})
                for r in records],
    )


def _rejected_by_reason(records: list[ShardRecord]) -> dict[str, int]:
    return dict(sum((Counter(r.rejected_by_reason) for r in records), Counter()))


def _throughput(records: list[ShardRecord], timer: StageTimer) -> float:
    """Series forecast per wall-clock second of the shards stage (all workers together)."""
    return round(sum(r.series_ok for r in records) / max(timer.seconds.get("shards", 0.0), 1e-9), 2)


def _metrics(records: list[ShardRecord], timer: StageTimer) -> dict[str, float]:
    return {"series_in": sum(r.series_in for r in records), "series_ok": sum(r.series_ok for r in records),
            "series_rejected": sum(r.series_rejected for r in records),
            "series_failed": sum(r.series_failed for r in records),
            "forecast_rows": sum(r.forecast_rows for r in records), "shards": len(records),
            "workers": len({r.worker for r in records}),
            "inference_seconds": sum(r.inference_seconds for r in records),
            "series_per_second": _throughput(records, timer), "batch_size": records[0].batch_size}
