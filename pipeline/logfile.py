"""The shared log file: one rotating file that every process of a deployment appends to, each line tagged with
the flow run, job and as_of it belongs to.

Prefect's logging config (``flows/logging.yml``, through ``PREFECT_LOGGING_SETTINGS_PATH``) names
``file_handler`` and ``RunFields`` here, so the server, the workers, their flow-run processes and the CLI all
write it. Several processes write one file, so rotation takes a lock (concurrent-log-handler): the standard
``RotatingFileHandler`` would have two processes rename the file under each other and lose lines.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["FIELDS", "JsonLines", "PlainLines", "RunFields", "bind_run", "file_handler", "forget_runs",
           "open_log_file", "register_run", "set_resolver"]

FIELDS = ("flow_run_id", "job", "as_of")
_REMEMBERED_RUNS = 256  # a worker's long-lived process sees many runs; keep the newest


@dataclass(frozen=True)
class _Run:
    flow_run_id: str
    job: str
    as_of: str


Resolver = Callable[[str], "tuple[str, str] | None"]

_current: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("forecast_log_run", default=None)
_runs: OrderedDict[str, _Run] = OrderedDict()
_runs_lock = threading.Lock()
_resolver: list[Resolver] = []
_resolving = threading.local()


def set_resolver(resolver: Resolver | None) -> None:
    """``resolver(flow_run_id)`` gives a run's (job, as_of) before the run registers them, e.g. from its
    parameters for Prefect's ``Beginning flow run`` line; None when it cannot (yet): asked again on the run's
    next line, so it must be cheap when it cannot tell."""
    _resolver[:] = [resolver] if resolver else []


def register_run(flow_run_id: str, job: str, as_of: str) -> None:
    """Remembers a run's job and as_of, so every later line that carries its flow-run id gets them: Prefect's
    own lines of the run (its final state, its tasks' states) as well as the flow's."""
    _remember(flow_run_id, _Run(flow_run_id, job, as_of))


def _remember(flow_run_id: str, run: _Run) -> None:
    with _runs_lock:
        _runs[flow_run_id] = run
        _runs.move_to_end(flow_run_id)
        while len(_runs) > _REMEMBERED_RUNS:
            _runs.popitem(last=False)


def _lookup(flow_run_id: str) -> _Run | None:
    if flow_run_id in _runs or not _resolver or getattr(_resolving, "active", False):
        return _runs.get(flow_run_id)
    _resolving.active = True  # whatever the resolver logs must not ask it again
    try:
        found = _resolver[0](flow_run_id)
    except Exception:  # noqa: BLE001 - a log line must never fail for want of its tags
        found = None
    finally:
        _resolving.active = False
    if found is None:
        return None
    _remember(flow_run_id, _Run(flow_run_id, *found))
    return _runs[flow_run_id]


def forget_runs() -> None:
    """Forgets every registered run (tests)."""
    with _runs_lock:
        _runs.clear()


@contextlib.contextmanager
def bind_run(flow_run_id: str, job: str, as_of: str) -> Iterator[None]:
    """Inside the block, lines with no flow-run id of their own (library loggers: the engine, the sources) are
    the run's. Threads started with a copy of the context inherit it."""
    register_run(flow_run_id, job, as_of)
    token = _current.set(_Run(flow_run_id, job, as_of))
    try:
        yield
    finally:
        _current.reset(token)


class RunFields(logging.Filter):
    """Sets ``flow_run_id``, ``job`` and ``as_of`` on every record (None outside a run); never drops one.

    Prefect's run loggers put the flow-run id on their records; other loggers get the bound run's."""

    def filter(self, record: logging.LogRecord) -> bool:
        flow_run_id = getattr(record, "flow_run_id", None)
        current = _current.get()
        if flow_run_id is None and current is not None:
            flow_run_id = current.flow_run_id
        run = _lookup(str(flow_run_id)) if flow_run_id is not None else None
        record.flow_run_id = str(flow_run_id) if flow_run_id is not None else None
        record.job = run.job if run else None
        record.as_of = run.as_of if run else None
        return True


class PlainLines(logging.Formatter):
    """``2026-11-28 02:00:01,234 INFO 4242 prefect.flow_runs [flow_run=... job=... as_of=...]: message``; the
    bracket only on a run's lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(process)d %(name)s%(run)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = {name: getattr(record, name, None) for name in FIELDS}
        record.run = "" if fields["flow_run_id"] is None else \
            " [" + " ".join(f"{name.removesuffix('_id')}={value or '-'}" for name, value in fields.items()) + "]"
        return super().formatMessage(record)


class JsonLines(logging.Formatter):
    """One JSON object a line (``LOG_FORMAT=json``), the keys a log shipper indexes: time (UTC, ISO 8601),
    level, logger, process, message, flow_run_id, job, as_of (null outside a run), exception (when any)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "process": record.process,
                "message": record.getMessage(), **{name: getattr(record, name, None) for name in FIELDS}}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def file_handler() -> logging.Handler:
    """The log file's handler, configured from the settings: ``FORECAST_LOG_FILE`` (or ``LOG_FILE``, default
    ``<FORECAST_DATA_DIR>/logs/forecast.log``), ``FORECAST_LOG_MAX_BYTES``, ``FORECAST_LOG_BACKUP_COUNT``,
    ``LOG_FORMAT`` (plain or json) and ``LOG_LEVEL``.

    Called while Prefect sets up logging, at its import: an error here must not break every ``import prefect``,
    so an unusable setting or path says why on stderr and the process logs without a file.
    """
    from pipeline.settings import load_settings

    try:
        settings = load_settings()
        return open_log_file(settings.resolved_log_file(), max_bytes=settings.log_max_bytes,
                             backups=settings.log_backup_count, json_lines=settings.log_format == "json",
                             level=settings.log_level)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"warning: no log file ({_describe(exc)})", file=sys.stderr)
        return logging.NullHandler()


def open_log_file(path: Path, *, max_bytes: int, backups: int, json_lines: bool,
                  level: str = "INFO") -> logging.Handler:
    """A handler appending to ``path`` (its directory made), rotated under a lock at ``max_bytes`` with
    ``backups`` kept, every line tagged by ``RunFields``."""
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = ConcurrentRotatingFileHandler(str(path), maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    try:
        handler.setLevel(level.upper())
    except ValueError:
        handler.close()
        raise
    handler.setFormatter(JsonLines() if json_lines else PlainLines())
    handler.addFilter(RunFields())
    return handler


def _describe(exc: BaseException) -> str:
    """One short line; a bad setting by its variable, without its value (it may be a secret)."""
    from pydantic import ValidationError

    from pipeline.errors import describe_invalid

    text = describe_invalid(exc) if isinstance(exc, ValidationError) else str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "... (cut)"
