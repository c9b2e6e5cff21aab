"""Overlapped stages: produce items in one thread, compute on them in the caller's, consume in a third.

A GPU worker should never wait for the host: while the engine runs on chunk *n*, chunk *n+1* is read and
prepared and chunk *n-1*'s output is built and written. Threads suffice: Parquet decoding, Arrow kernels,
NumPy and torch release the GIL for their heavy parts. Queues hold at most ``depth`` items, so memory
stays at a few chunks whatever the job's size.
"""

from __future__ import annotations

import contextvars
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

__all__ = ["StageSeconds", "pipelined"]

A = TypeVar("A")
B = TypeVar("B")
_DONE = object()  # end of a queue's items
_POLL = 0.1  # seconds a blocked put/get waits before it looks whether another stage failed


@dataclasses.dataclass(frozen=True)
class StageSeconds:
    """Busy seconds of each stage and the wall time of the whole; ``hidden`` is the work that overlapped."""

    produce: float
    compute: float
    consume: float
    wall: float

    @property
    def hidden(self) -> float:
        """Seconds of work done while another stage was busy: 0 when the stages ran one after the other."""
        return max(0.0, round(self.produce + self.compute + self.consume - self.wall, 4))


class _Busy(Generic[A]):
    """Adds up the seconds spent in a stage."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def iterate(self, items: Iterable[A]) -> Any:
        iterator = iter(items)
        while True:
            started = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.seconds += time.perf_counter() - started
                return
            self.seconds += time.perf_counter() - started
            yield item

    def call(self, function: Callable[..., B], *args: Any) -> B:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.seconds += time.perf_counter() - started


def pipelined(produce: Iterable[A], compute: Callable[[A], B], consume: Callable[[A, B], None], *,
              overlap: bool = True, depth: int = 2) -> StageSeconds:
    """Runs ``consume(item, compute(item))`` for every item of ``produce``, in order; returns the timings.

    With ``overlap`` the three stages run at once (``produce`` iterated in one thread, ``consume`` in
    another, ``compute`` in the caller's); without, one after the other in the caller's thread. Items reach
    ``consume`` in ``produce``'s order either way. The first error in any stage stops the others and is
    raised here, once they have stopped.
    """
    busy = {name: _Busy[Any]() for name in ("produce", "compute", "consume")}
    started = time.perf_counter()
    if overlap:
        _run_overlapped(produce, compute, consume, busy, depth)
    else:
        for item in busy["produce"].iterate(produce):
            consume_args = (item, busy["compute"].call(compute, item))
            busy["consume"].call(consume, *consume_args)
    return StageSeconds(**{name: round(stage.seconds, 4) for name, stage in busy.items()},
                        wall=round(time.perf_counter() - started, 4))


def _run_overlapped(produce: Iterable[A], compute: Callable[[A], B], consume: Callable[[A, B], None],
                    busy: dict[str, _Busy[Any]], depth: int) -> None:
    inbox: queue.Queue[Any] = queue.Queue(depth)
    outbox: queue.Queue[Any] = queue.Queue(depth)
    stop, errors = threading.Event(), []  # errors in the order they happened: the first is the cause

    def feed() -> None:
        try:
            for item in busy["produce"].iterate(produce):
                if not _put(inbox, item, stop):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            errors.append(exc)
            stop.set()
        _put(inbox, _DONE, stop)

    def drain() -> None:
        try:
            while (got := _get(outbox, stop)) is not _DONE:
                busy["consume"].call(consume, *got)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()

    # Threads get a copy of the caller's context: Prefect's run context (and its logger) lives there.
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(target,), daemon=True,
                                name=f"pipelined-{target.__name__}") for target in (feed, drain)]
    for thread in threads:
        thread.start()
    try:
        while (item := _get(inbox, stop)) is not _DONE:
            if not _put(outbox, (item, busy["compute"].call(compute, item)), stop):
                break
    except BaseException as exc:  # noqa: BLE001 - raised below, once the other stages have stopped
        errors.append(exc)
        stop.set()
    finally:
        _put(outbox, _DONE, stop)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


def _put(box: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Puts ``item``, waiting for room unless another stage failed; False if it was not put."""
    while not stop.is_set():
        try:
            box.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _get(box: queue.Queue[Any], stop: threading.Event) -> Any:
    """The next item, or ``_DONE`` once another stage failed."""
    while not stop.is_set():
        try:
            return box.get(timeout=_POLL)
        except queue.Empty:
            continue
    return _DONE
