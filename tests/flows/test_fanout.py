"""Shard fan-out retries by the error's type: permanent errors fail at once, anything else is retried."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from prefect import flow
from prefect.client.schemas.objects import StateType

from flows.fanout import ShardFailedError, _not_retried, run_local
from forecast_model.errors import CheckpointError
from pipeline.accounting import SeriesCounts
from pipeline.errors import InputDataError
from pipeline.sharding import ShardFailure, ShardRecord

pytestmark = pytest.mark.usefixtures("prefect_api")


def record(shard: int) -> ShardRecord:
    return ShardRecord(shard=shard, attempt="a", worker="w", host="h", pid=1, counts=SeriesCounts(ok=1),
                       output_rows=1, input_fingerprint="f", checkpoint_sha256="s", device="cpu", precision="fp32",
                       batch_size=1, inference_seconds=0.1, timings={})


def flaky(failures: list[BaseException]) -> tuple[Callable[[int], ShardRecord], list[int]]:
    """A shard runner that raises ``failures`` in turn, then succeeds; and the list of shards it was called for."""
    calls: list[int] = []

    def run(shard: int) -> ShardRecord:
        calls.append(shard)
        if failures:
            raise failures.pop(0)
        return record(shard)
    return run, calls


@flow
def fan_out(run: Callable[[int], ShardRecord], attempts: int) -> list[ShardRecord]:
    return run_local([0, 1], run, attempts)


@pytest.mark.parametrize("error", [InputDataError("bad rows"), CheckpointError("weights do not match the pin")])
def test_a_permanent_error_is_not_retried(error: Exception) -> None:
    run, calls = flaky([error])
    with pytest.raises(type(error)):
        fan_out(run, 3)
    assert calls == [0], "a permanent error fails the same way every time: one attempt only"


def test_other_errors_are_retried_until_the_shard_succeeds() -> None:
    run, calls = flaky([RuntimeError("worker lost"), OSError("disk hiccup")])
    records = fan_out(run, 3)
    assert [r.shard for r in records] == [0, 1] and calls == [0, 0, 0, 1]


def test_a_shard_that_keeps_failing_fails_the_run_after_its_last_attempt() -> None:
    run, calls = flaky([RuntimeError("one"), RuntimeError("two")])
    with pytest.raises(ShardFailedError, match=r"Shard 0 failed 2 times; last error: .RuntimeError\('two'\)"):
        fan_out(run, 2)
    assert calls == [0, 0]


@flow
def fan_out_at_once(run: Callable[[int], ShardRecord], shards: int, concurrency: int) -> list[ShardRecord]:
    return run_local(list(range(shards)), run, 2, concurrency)


def test_shards_run_two_at_a_time_and_come_back_in_shard_order() -> None:
    lock, active, peak, calls = threading.Lock(), [0], [0], []

    def run(shard: int) -> ShardRecord:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            calls.append(shard)
        time.sleep(0.3 if shard == 0 else 0.05)  # shard 0 finishes last
        with lock:
            active[0] -= 1
        return record(shard)

    records = fan_out_at_once(run, 6, 2)
    assert [r.shard for r in records] == list(range(6)) and sorted(calls) == list(range(6))
    assert peak[0] == 2, "two shards at a time, never more"


def test_a_permanent_failure_starts_no_further_shard() -> None:
    calls: list[int] = []

    def run(shard: int) -> ShardRecord:
        calls.append(shard)
        if shard == 1:
            raise InputDataError("bad rows")
        time.sleep(0.2)
        return record(shard)

    with pytest.raises(InputDataError, match="bad rows"):
        fan_out_at_once(run, 6, 2)
    assert sorted(calls) == [0, 1], "the shard already running finishes; no other starts"


def state(kind: StateType) -> Any:
    return SimpleNamespace(state=SimpleNamespace(type=kind))


@pytest.mark.parametrize(("run", "failure", "retried"), [
    (state(StateType.FAILED), None, True),  # crashed or killed before it could record anything
    (state(StateType.CRASHED), None, True),
    (state(StateType.FAILED), ShardFailure(error="OSError", permanent=False, message="disk hiccup"), True),
    (state(StateType.FAILED), ShardFailure(error="InputDataError", permanent=True, message="bad rows"), False),
    (state(StateType.CANCELLED), None, False),
    (SimpleNamespace(state=None), None, False),
])
def test_a_remote_shard_is_retried_by_its_recorded_failure_not_by_its_message(run: Any, failure: ShardFailure | None,
                                                                              retried: bool) -> None:
    assert _not_retried(run, failure) is not retried
