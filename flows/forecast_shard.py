"""One shard of a sharded forecast: read it alone, validate, forecast, and commit it to the run's staging."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from pipeline.logfile import bind_run
from pipeline.manifest import StageTimer
from pipeline.report import plot_title
from pipeline.run import ResolvedRun
from pipeline.settings import load_settings
from pipeline.sharding import SHARD_MAP, ShardRecord, attempt_dir, commit_attempt, record_failure, worker_identity
from pipeline.sources import Source
from tasks.forecast import forecast_series, prepare_model, render_sample
from tasks.shards import load_shard
from tasks.validate import validate_series

__all__ = ["SHARD_ACTUALS", "forecast_shard"]

# The shard's validated, regular series: kept (in the run's staging, removed with it) as the actuals the
# parent's monitoring reads.
SHARD_ACTUALS = "regular.parquet"
_SCRATCH = ("input.parquet", "covariates_input.parquet", "covariates.parquet")


@flow(name="forecast-shard")
def forecast_shard(source: Source, shard: Annotated[int, Field(ge=0)], staging: str, run: ResolvedRun) -> ShardRecord:
    """Forecasts the series of shard ``shard`` of the sharded run ``run`` and commits them under
    ``<staging>/shards/<shard>/<this flow run id>/``; started by the `sharded-forecast` flow, not by hand.

    ``run`` is the parent's resolved run, taken as is: this worker's environment changes none of it.
    Rejections are recorded, never fatal here: the parent applies ``max_rejected_fraction`` to the whole job.
    """
    shard_run_id = str(flow_run.id or uuid.uuid4())
    directory = attempt_dir(Path(staging), shard, shard_run_id)
    try:
        with bind_run(shard_run_id, run.job, run.as_of.isoformat()):  # the log file's lines name this shard's run
            record = _forecast(source, shard, Path(staging), run, directory)
    except Exception as exc:
        record_failure(directory, exc)  # the parent retries by the error's type, read from here
        raise
    commit_attempt(directory, record)
    return record


def _forecast(source: Source, shard: int, staging: Path, run: ResolvedRun, directory: Path) -> ShardRecord:
    timer = StageTimer()
    with timer("prepare_model"):
        info = prepare_model(run.engine)
    with timer("load"):
        loaded = load_shard(source, load_settings().source_policy(), staging / SHARD_MAP, shard, directory,
                            run.covariates)
    with timer("validate"):
        validation = validate_series(loaded.path, directory, run, whole_job=False,
                                     covariates_path=loaded.covariates_path)
    with timer("forecast"):
        stats = forecast_series(validation.regular_path, validation.status_path, directory, run,
                                created_at=datetime.now(timezone.utc), whole_job=False,
                                covariates_path=validation.covariates_path)
    timer.seconds.update(stats.split())
    if shard == 0 and stats.counts.ok:
        render_sample(validation.regular_path, stats.forecasts_path, directory,
                      title=plot_title(run.job, run.as_of.isoformat(), run.engine.checkpoint, info.checkpoint_sha256))
    if validation.regular_path != directory / SHARD_ACTUALS:  # a regular input is not copied: it is the actuals
        validation.regular_path.replace(directory / SHARD_ACTUALS)
    for name in _SCRATCH:
        (directory / name).unlink(missing_ok=True)
    worker, host, pid = worker_identity()
    return ShardRecord(
        shard=shard, attempt=directory.name, worker=worker, host=host, pid=pid, counts=stats.counts,
        output_rows=stats.output_rows, input_fingerprint=loaded.fingerprint, checkpoint_sha256=info.checkpoint_sha256,
        random_weights=info.random_weights,
        device=stats.device, precision=stats.precision, batch_size=stats.batch_size,
        inference_seconds=stats.inference_seconds, timings=timer.seconds)
