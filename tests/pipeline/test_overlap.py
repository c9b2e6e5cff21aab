"""Overlapped stages: order kept, the same results as one after the other, errors raised from any stage."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator

import pytest

from pipeline.overlap import StageSeconds, pipelined

REQUEST = contextvars.ContextVar("request", default="unset")


def run(items: list[int], *, overlap: bool, **kwargs: float) -> tuple[list[tuple[int, int]], StageSeconds]:
    seen: list[tuple[int, int]] = []

    def produce() -> Iterator[int]:
        for item in items:
            time.sleep(kwargs.get("produce", 0))
            yield item

    def compute(item: int) -> int:
        time.sleep(kwargs.get("compute", 0))
        return item * item

    def consume(item: int, result: int) -> None:
        time.sleep(kwargs.get("consume", 0))
        seen.append((item, result))

    return seen, pipelined(produce(), compute, consume, overlap=overlap)


@pytest.mark.parametrize("overlap", [True, False])
def test_every_item_reaches_consume_in_order_with_its_result(overlap: bool) -> None:
    items = [5, 3, 9, 1, 7, 2, 8]
    seen, _ = run(items, overlap=overlap)
    assert seen == [(i, i * i) for i in items]
    assert run([], overlap=overlap)[0] == []


def test_the_stages_run_at_the_same_time_and_the_timings_say_so() -> None:
    _, overlapped = run(list(range(6)), overlap=True, produce=0.05, compute=0.05, consume=0.05)
    _, serial = run(list(range(6)), overlap=False, produce=0.05, compute=0.05, consume=0.05)
    for seconds in (overlapped, serial):
        assert min(seconds.produce, seconds.compute, seconds.consume) >= 6 * 0.05 * 0.9
    assert serial.wall >= serial.produce + serial.compute + serial.consume - 0.05, "one after the other"
    assert serial.hidden < 0.05
    assert overlapped.wall < 0.8 * (overlapped.produce + overlapped.compute + overlapped.consume)
    assert overlapped.hidden > 0.2, overlapped


@pytest.mark.parametrize("stage", ["produce", "compute", "consume"])
def test_an_error_in_any_stage_stops_the_others_and_is_raised(stage: str) -> None:
    calls = {"produce": 0, "compute": 0, "consume": 0}

    def produce() -> Iterator[int]:
        for item in range(1000):
            calls["produce"] += 1
            if stage == "produce" and item == 3:
                raise ValueError(f"broken in {stage}")
            yield item

    def compute(item: int) -> int:
        calls["compute"] += 1
        if stage == "compute" and item == 3:
            raise ValueError(f"broken in {stage}")
        return item

    def consume(item: int, result: int) -> None:
        calls["consume"] += 1
        if stage == "consume" and item == 3:
            raise ValueError(f"broken in {stage}")

    before = threading.active_count()
    with pytest.raises(ValueError, match=f"broken in {stage}"):
        pipelined(produce(), compute, consume, depth=2)
    assert threading.active_count() == before, "no stage thread is left running"
    assert calls["produce"] < 20, "the producer stopped soon after the error, bounded by the queues"


def test_the_threads_see_the_callers_context() -> None:
    seen: list[tuple[str, str, str]] = []

    def produce() -> Iterator[str]:
        yield REQUEST.get()  # runs in the producer thread

    REQUEST.set("run-42")
    pipelined(produce(), lambda item: REQUEST.get(), lambda item, result: seen.append((item, result, REQUEST.get())))
    assert seen == [("run-42", "run-42", "run-42")]
