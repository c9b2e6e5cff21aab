"""Progress reports: a bar on a terminal, log lines at most every so often, whatever the stream."""

from __future__ import annotations

import io

from pipeline.progress import ProgressReporter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_a_bar_redrawn_in_place_and_a_final_newline() -> None:
    clock, screen, logged = Clock(), Terminal(), []
    report = ProgressReporter("forecast", "series", logged.append, every=10, stream=screen, clock=clock)
    clock.now += 2
    report(500, 2000)
    clock.now += 6
    report(2000, 2000)
    frames = screen.getvalue().split("\r")[1:]
    assert frames[0] == "[######..................] forecast: 500/2,000 series (25%), 250 series/s, ETA 6 s"
    assert frames[1] == "[########################] forecast: 2,000/2,000 series (100%), 250 series/s, done in 8.0 s\n"
    assert logged == [], "8 s of work: nothing for the logs"


def test_logs_get_a_line_at_most_every_interval_and_no_bar_off_a_terminal() -> None:
    clock, pipe, logged = Clock(), io.StringIO(), []
    report = ProgressReporter("sharded job", "shards", logged.append, every=10, stream=pipe, clock=clock)
    for done in range(1, 7):
        clock.now += 4
        report(done, 6)
    assert pipe.getvalue() == "", "a worker's stderr gets no bar"
    assert logged == ["sharded job: 3/6 shards (50%), 0.2 shards/s, ETA 12 s",
                      "sharded job: 6/6 shards (100%), 0.2 shards/s, done in 24.0 s"]


def test_the_first_report_has_no_rate_yet_and_an_empty_job_is_whole() -> None:
    report = ProgressReporter("forecast", "series", print, stream=io.StringIO(), clock=Clock())
    assert report.describe(0, 10, 0.0) == "forecast: 0/10 series (0%)"
    assert report.describe(0, 0, 1.0) == "forecast: 0/0 series (0%)"
