"""One shard of a sharded forecast: read it alone, validate, forecast, and commit it to the run's staging."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import Field

from flows.params import FreqAlias, ModelParams, engine_config
from tasks.contracts import INPUT_SCHEMA
from tasks.forecast import forecast_series, prepare_model, render_sample
from tasks.manifest import StageTimer, input_fingerprint
from tasks.series_checks import SeriesChecks
from tasks.settings import load_settings
from tasks.shard_store import ShardRecord, attempt_dir, commit_attempt, worker_identity
from tasks.shards import SHARD_MAP, read_shard
from tasks.sources import Source, SourcePolicy
from tasks.tables import write_table
from tasks.validate import validate_series

__all__ = ["forecast_shard"]

_SCRATCH = ("input.parquet", "regular.parquet")


@task(name="load-shard", cache_policy=NO_CACHE)
def load_shard(source: Source, policy: SourcePolicy, map_path: Path, shard: int, directory: Path) -> tuple[Path, str]:
    """Reads one shard into the canonical frame, stages it, and returns its path and fingerprint."""
    frame = read_shard(source, policy, map_path, shard)
    return write_table(frame, INPUT_SCHEMA, directory / "input.parquet"), input_fingerprint(frame)


@flow(name="forecast-shard")
def forecast_shard(
    source: Source,
    shard: Annotated[int, Field(ge=0)],
    staging: str,
    horizon: Annotated[int, Field(gt=0, le=10000)],
    as_of: date,
    run_id: str,
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen, so one shared default is safe
    checks: SeriesChecks = SeriesChecks(),  # noqa: B008
    freq: FreqAlias | None = None,
) -> ShardRecord:
    """Forecasts the series of shard ``shard`` of the sharded run ``run_id`` and commits them under
    ``<staging>/shards/<shard>/<this flow run id>/``; started by the `sharded-forecast` flow, not by hand.

    Rejections are recorded, never fatal here: the parent applies ``max_rejected_fraction`` to the whole job.
    """
    timer = StageTimer()
    settings = load_settings()
    directory = attempt_dir(Path(staging), shard, str(flow_run.id or uuid.uuid4()))
    engine = engine_config(model, settings)
    with timer("prepare_model"):
        info = prepare_model(engine)
    with timer("load"):
        input_path, fingerprint = load_shard(source, settings.source_policy(), Path(staging) / SHARD_MAP, shard,
                                             directory)
    with timer("validate"):
        validation = validate_series(input_path, directory, checks.model_copy(update={"max_rejected_fraction": 1.0}),
                                     freq, as_of)
    with timer("forecast"):
        stats = forecast_series(validation.regular_path, validation.status_path, directory, engine, horizon=horizon,
                                context_len=model.context_len or settings.context_len, run_id=run_id,
                                created_at=datetime.now(timezone.utc), allow_empty=True)
    if shard == 0 and stats.series_ok:
        render_sample(validation.regular_path, stats.forecasts_path, directory)
    for name in _SCRATCH:
        (directory / name).unlink(missing_ok=True)
    worker, host, pid = worker_identity()
    record = ShardRecord(
        shard=shard, attempt=directory.name, worker=worker, host=host, pid=pid, series_in=stats.series_in,
        series_ok=stats.series_ok, series_rejected=stats.series_rejected, series_failed=stats.series_failed,
        forecast_rows=stats.forecast_rows, rejected_by_reason=stats.by_reason,
        input_fingerprint=fingerprint, weights_sha256=info.weights_sha256, device=stats.device,
        precision=stats.precision, batch_size=stats.batch_size, inference_seconds=stats.inference_seconds,
        timings=timer.seconds)
    commit_attempt(directory, record)
    return record
