"""The shared log file: each line names its run, plain or JSON, and several processes rotate it without
losing or tearing a line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipeline.logfile
from pipeline.logfile import (
    FIELDS,
    JsonLines,
    PlainLines,
    RunFields,
    bind_run,
    file_handler,
    forget_runs,
    register_run,
    set_resolver,
)
from tests.conftest import REPO

RUN = "0b5c6c0e-1111-4222-8333-944445555666"


@pytest.fixture(autouse=True)
def no_runs() -> Iterator[None]:
    resolver = list(pipeline.logfile._resolver)  # the flows package sets one when it is imported
    forget_runs()
    set_resolver(None)
    yield
    forget_runs()
    set_resolver(resolver[0] if resolver else None)


def record(message: str = "hello", **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("pipeline.x", logging.INFO, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    RunFields().filter(made)
    return made


def fields(made: logging.LogRecord) -> tuple[object, ...]:
    return tuple(getattr(made, name) for name in FIELDS)


def test_lines_outside_a_run_name_none() -> None:
    assert fields(record()) == (None, None, None)


def test_a_bound_run_names_library_lines_and_its_end_releases_them() -> None:
    with bind_run(RUN, "sales", "2026-11-28"):
        assert fields(record()) == (RUN, "sales", "2026-11-28")
    assert fields(record()) == (None, None, None)


def test_prefect_lines_carry_their_own_run_id_and_get_its_job_once_registered() -> None:
    assert fields(record(flow_run_id=RUN)) == (RUN, None, None), "before the run resolved its job"
    register_run(RUN, "sales", "2026-11-28")
    assert fields(record(flow_run_id=RUN)) == (RUN, "sales", "2026-11-28"), "e.g. its final state line"
    with bind_run("another", "other", "2026-01-01"):  # a subflow's own lines keep their own run
        assert fields(record(flow_run_id=RUN)) == (RUN, "sales", "2026-11-28")


def test_the_resolver_tags_a_run_before_it_registers_and_is_asked_until_it_can_tell() -> None:
    asked: list[str] = []
    answers = iter([None, ("sales", "2026-11-28")])

    def resolver(flow_run_id: str) -> tuple[str, str] | None:
        asked.append(flow_run_id)
        logging.getLogger("pipeline.resolver").info("resolving")  # its own lines must not ask again
        return next(answers)

    set_resolver(resolver)
    assert fields(record(flow_run_id=RUN)) == (RUN, None, None), "it cannot tell yet (no run context)"
    assert fields(record(flow_run_id=RUN)) == (RUN, "sales", "2026-11-28"), "e.g. `Beginning flow run`"
    assert fields(record(flow_run_id=RUN)) == (RUN, "sales", "2026-11-28")
    assert asked == [RUN, RUN], "asked until it answered, then remembered"


def test_a_failing_resolver_costs_the_tags_not_the_line() -> None:
    def resolver(flow_run_id: str) -> tuple[str, str] | None:
        raise ValueError("bad parameters")

    set_resolver(resolver)
    assert fields(record(flow_run_id=RUN)) == (RUN, None, None)


def test_a_long_lived_worker_remembers_only_its_newest_runs() -> None:
    for i in range(300):
        register_run(f"run-{i}", f"job-{i}", "2026-11-28")
    assert fields(record(flow_run_id="run-299"))[1] == "job-299"
    assert fields(record(flow_run_id="run-0"))[1] is None


def test_plain_lines_show_the_run_only_inside_one() -> None:
    outside = PlainLines().format(record("outside"))
    assert "[" not in outside and outside.endswith(" pipeline.x: outside")
    with bind_run(RUN, "sales", "2026-11-28"):
        inside = PlainLines().format(record("inside"))
    assert inside.endswith(f" pipeline.x [flow_run={RUN} job=sales as_of=2026-11-28]: inside"), inside


def test_json_lines_are_one_object_a_line_with_the_exception() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        made = logging.LogRecord("pipeline.x", logging.ERROR, __file__, 1, "two\nlines %s", ("arg",), sys.exc_info())
    with bind_run(RUN, "sales", "2026-11-28"):
        RunFields().filter(made)
    line = JsonLines().format(made)
    assert "\n" not in line, "a multi-line message must stay on one line"
    parsed = json.loads(line)
    assert {k: parsed[k] for k in ("level", "logger", "message", *FIELDS)} == {
        "level": "ERROR", "logger": "pipeline.x", "message": "two\nlines arg", "flow_run_id": RUN, "job": "sales",
        "as_of": "2026-11-28"}
    assert parsed["time"].endswith("+00:00") and "ValueError: bad" in parsed["exception"]


def test_the_handler_follows_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FORECAST_LOG_FILE", str(tmp_path / "logs" / "f.log"))
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    handler, logger = file_handler(), logging.getLogger("tests.logfile")
    logger.addHandler(handler)
    try:
        assert isinstance(handler.formatter, JsonLines) and handler.level == logging.WARNING
        assert any(isinstance(f, RunFields) for f in handler.filters)
        logger.warning("kept")
        logger.info("dropped")
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = (tmp_path / "logs" / "f.log").read_text().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["kept"]


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("FORECAST_LOG_FILE", "{tmp}/a-file/f.log", "a-file"),
    ("FORECAST_LOG_MAX_BYTES", "ten", "FORECAST_LOG_MAX_BYTES: Input should be a valid integer"),
    ("LOG_LEVEL", "LOUD", "LOUD"),
])
def test_an_unusable_setting_leaves_no_file_and_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str], variable: str,
                                                         value: str, said: str) -> None:
    """The handler is built while Prefect imports: it must warn, never raise."""
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("FORECAST_LOG_FILE", str(tmp_path / "f.log"))
    monkeypatch.setenv(variable, value.format(tmp=tmp_path))
    handler = file_handler()
    assert isinstance(handler, logging.NullHandler)
    warning = capsys.readouterr().err
    assert warning.startswith("warning: no log file (") and said in warning, warning


_WRITER = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    from pipeline.logfile import bind_run, open_log_file
    handler = open_log_file(Path(sys.argv[1]), max_bytes=int(sys.argv[5]), backups=int(sys.argv[4]), json_lines=True)
    log = logging.getLogger("writer")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    while not Path(sys.argv[1] + ".go").exists():  # all writers start together
        time.sleep(0.002)
    with bind_run(f"run-{sys.argv[2]}", "job", "2026-11-28"):
        for i in range(int(sys.argv[3])):
            log.info("writer %s line %05d %s", sys.argv[2], i, "x" * 150)
    handler.close()
""")


def write_concurrently(tmp_path: Path, writers: int, lines: int, backups: int, max_bytes: int) -> list[Path]:
    """``writers`` processes append ``lines`` lines each to one file."""
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "forecast.log"), str(w), str(lines),
                               str(backups), str(max_bytes)], cwd=REPO, stderr=subprocess.PIPE, text=True)
             for w in range(writers)]
    time.sleep(0.5)
    (tmp_path / "forecast.log.go").touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    (tmp_path / "forecast.log.go").unlink()
    return sorted(tmp_path.glob("forecast.log*"))


def test_processes_writing_one_file_rotate_it_without_losing_or_tearing_a_line(tmp_path: Path) -> None:
    files = write_concurrently(tmp_path, writers=4, lines=2000, backups=100, max_bytes=65536)
    assert len(files) > 10, "the file was rotated"
    parsed = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    longest = max(len(line) + 1 for f in files for line in f.read_text().splitlines())
    assert all(f.stat().st_size <= 65536 + longest for f in files), \
        "a file is rotated once it reaches FORECAST_LOG_MAX_BYTES (the line that crossed it stays in)"
    seen = sorted((p["flow_run_id"], p["message"].split()[3]) for p in parsed)
    assert seen == sorted((f"run-{w}", f"{i:05d}") for w in range(4) for i in range(2000)), \
        "every line of every process exactly once"


def test_rotation_keeps_the_backup_count(tmp_path: Path) -> None:
    files = write_concurrently(tmp_path, writers=2, lines=300, backups=2, max_bytes=8192)
    assert [f.name for f in files] == ["forecast.log", "forecast.log.1", "forecast.log.2"]
    last = json.loads(files[0].read_text().splitlines()[-1])
    assert last["message"].split()[3] == "00299", "the current file ends with the last line written"
