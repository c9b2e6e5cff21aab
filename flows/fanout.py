"""Running the shards of a sharded run: in this process, or as child flow runs of a deployment on a work pool.

Prefect does the distributing: each shard is a flow run of the `forecast-shard` deployment, picked up by
whichever worker of the pool is free. This module only starts them, watches their states, retries a
crashed or failed shard a bounded number of times, and reports progress.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from forecast_model.errors import shorten
from pipeline.errors import is_permanent
from pipeline.progress import ProgressReporter
from pipeline.sharding import ShardFailure, ShardRecord, read_attempt, read_failure

__all__ = ["ShardFailedError", "run_local", "run_remote"]

class ShardFailedError(RuntimeError):
    """A shard kept failing after its last attempt; nothing of the run is published."""


class _Progress:
    """A Prefect progress artifact on the parent run, plus a log line per finished shard."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.artifact = cast(UUID, create_progress_artifact(0.0, key="shards-done",
                                                            description=f"Shards done of {total}"))
        self.bar = ProgressReporter("sharded job", "shards", get_run_logger().info)  # a bar on a terminal

    def finished(self, record: ShardRecord) -> None:
        self.done += 1
        update_progress_artifact(self.artifact, 100.0 * self.done / self.total)
        self.bar(self.done, self.total)
        get_run_logger().info("Shard %d done by %s on %s (%d series): %d of %d shards", record.shard, record.worker,
                              record.host, record.counts.total(), self.done, self.total)


def run_local(shards: list[int], run_shard: Callable[[int], ShardRecord], max_attempts: int,
              concurrency: int = 1) -> list[ShardRecord]:
    """Runs the shards in this process (subflows), ``concurrency`` at a time, retrying each up to ``max_attempts``.

    Two at a time keep both cores of a small machine busy: one shard's reading and validation (mostly one
    core) runs beside another's inference. The first shard to fail for good fails the run; the shards already
    started finish first, and none is started after it.
    """
    progress, records = _Progress(len(shards)), []
    with ThreadPoolExecutor(concurrency, thread_name_prefix="shard") as pool:
        pending = {pool.submit(contextvars.copy_context().run, _attempts, run_shard, shard, max_attempts): shard
                   for shard in shards[:concurrency]}
        queued = iter(shards[concurrency:])
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    del pending[future]
                    record = future.result()
                    progress.finished(record)
                    records.append(record)
                    if (shard := next(queued, None)) is not None:
                        pending[pool.submit(contextvars.copy_context().run, _attempts, run_shard, shard,
                                            max_attempts)] = shard
        finally:
            for future in pending:
                future.cancel()
    records.sort(key=lambda r: r.shard)
    _summary_artifact(records)
    return records


def _attempts(run_shard: Callable[[int], ShardRecord], shard: int, max_attempts: int) -> ShardRecord:
    """One shard, tried up to ``max_attempts`` times; a permanent error (bad input, a bad checkpoint) at once."""
    for attempt in range(1, max_attempts + 1):
        try:
            return run_shard(shard)
        except Exception as exc:
            if is_permanent(exc):
                raise
            if attempt == max_attempts:
                raise ShardFailedError(f"Shard {shard} failed {attempt} times; last error: "
                                       f"{shorten(repr(exc), 500)}. Nothing was published.") from exc
            get_run_logger().warning("Shard %d attempt %d failed (%r); retrying", shard, attempt, exc)
    raise AssertionError("unreachable: max_attempts >= 1")


def run_remote(shards: list[int], deployment: str, parameters: Callable[[int], dict[str, Any]], staging: Path,
               *, parent_id: str, max_attempts: int, poll_seconds: float) -> list[ShardRecord]:
    """Starts one flow run of ``deployment`` per shard, waits for all, and retries crashed or failed ones.

    A shard counts as done only when its run Completed *and* its attempt directory holds a committed
    ``_SUCCESS.json``; its output is read from that attempt only.
    """
    logger, progress = get_run_logger(), _Progress(len(shards))
    attempts = dict.fromkeys(shards, 0)
    running: dict[int, UUID] = {}
    done: dict[int, ShardRecord] = {}

    def submit(shard: int) -> None:
        attempts[shard] += 1
        run = cast(FlowRun, run_deployment(deployment, parameters=parameters(shard), timeout=0, as_subflow=True,
                             flow_run_name=f"shard-{shard:05d}-try-{attempts[shard]}",
                             idempotency_key=f"{parent_id}:{shard}:{attempts[shard]}"))
        running[shard] = run.id

    for shard in shards:
        submit(shard)
    with get_client(sync_client=True) as client:
        try:
            while running:
                time.sleep(poll_seconds)
                for shard, run_id in list(running.items()):
                    run = client.read_flow_run(run_id)
                    if run.state is None or not run.state.is_final():
                        continue
                    del running[shard]
                    record = read_attempt(staging, shard, str(run_id)) if run.state.is_completed() else None
                    if record is not None:
                        done[shard] = record
                        progress.finished(record)
                        continue
                    failure = read_failure(staging, shard, str(run_id))
                    problem = _describe(run, failure)
                    if attempts[shard] >= max_attempts or _not_retried(run, failure):
                        raise ShardFailedError(f"Shard {shard} failed after {attempts[shard]} attempt(s): {problem}. "
                                               "Nothing was published.")
                    logger.warning("Shard %d: %s; starting attempt %d", shard, problem, attempts[shard] + 1)
                    submit(shard)
        except BaseException:
            for run_id in running.values():  # stop the rest: their staging is about to go
                client.set_flow_run_state(run_id, Cancelling(), force=True)
            raise
    records = [done[shard] for shard in shards]
    _summary_artifact(records)
    return records


def _describe(run: FlowRun, failure: ShardFailure | None) -> str:
    state = run.state
    if state is not None and state.is_completed():
        return f"run {run.name} completed without committing its output"
    if failure is not None:
        return f"run {run.name} failed with {failure.error}: {failure.message}"
    return f"run {run.name} ended {state.type.value if state else 'without a state'}: " + \
        (state.message if state and state.message else "no message")


def _not_retried(run: FlowRun, failure: ShardFailure | None) -> bool:
    """A cancelled shard, or one whose recorded error is permanent (bad input, a bad checkpoint), is not
    retried; a crash, a lost worker or a transient error is."""
    if run.state is None or run.state.type == StateType.CANCELLED:
        return True
    return failure is not None and failure.permanent


def _summary_artifact(records: list[ShardRecord]) -> None:
    create_table_artifact(key="shards", description="Which worker ran which shard", table=[
        {"shard": r.shard, "worker": r.worker, "host": r.host, "series": r.counts.total(), "ok": r.counts.ok,
         "rejected": r.counts.rejected, "inference_s": r.inference_seconds, "attempt": r.attempt}
        for r in records])
