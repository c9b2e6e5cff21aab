"""Progress of long work: a bar on a terminal, a log line every so often wherever the logs go."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressReporter"]

_WIDTH = 24  # characters of the bar


class ProgressReporter:
    """Called with ``(done, total)`` as work advances.

    On a terminal (``stream`` is a TTY) it redraws one line: a bar, the count, the rate and the time left.
    Whatever the stream, it sends the same text to ``log`` at most every ``every`` seconds, and once at
    the end when the work took longer than that, so Prefect's run logs show long work moving. Not a
    terminal (a worker, CI, a pipe): no bar, only those log lines.
    """

    def __init__(self, label: str, unit: str, log: Callable[[str], None], *, every: float = 10.0,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.unit, self.log, self.every, self.clock = label, unit, log, every, clock
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self.started = self.last_log = clock()

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        text = self.describe(done, total, now - self.started)
        if self.tty:
            filled = _WIDTH * done // max(total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (_WIDTH - filled)}] {text}" + ("\n" if done >= total else ""))
            self.stream.flush()
        if now - self.last_log >= self.every:
            self.log(text)
            self.last_log = now

    def describe(self, done: int, total: int, seconds: float) -> str:
        """``label: done/total unit (percent), rate unit/s, ETA seconds`` (the rate once some time has passed)."""
        text = f"{self.label}: {done:,}/{total:,} {self.unit} ({done / max(total, 1):.0%})"
        if seconds <= 0 or done == 0:
            return text
        rate = done / seconds
        shown = f"{rate:,.1f}" if rate < 10 else f"{rate:,.0f}"  # a shard every few seconds is not 0 shards/s
        return f"{text}, {shown} {self.unit}/s, " + (f"ETA {(total - done) / rate:,.0f} s" if done < total
                                                     else f"done in {seconds:,.1f} s")
