"""Exceptions raised by the forecasting library, and how messages quote what a user gave.

Every error a user can fix derives from :class:`ConfigurationError`, so callers (the CLI, the flows) can
tell "your input or settings are wrong" apart from "something broke".

Messages quote input (a header, a value, a key of a config file) through :func:`shorten` and
:func:`shorten_names`, so that a hostile or broken input cannot make a message of gigabytes: messages
travel into terminals, log files, Prefect state messages and MLflow. :class:`ConfigurationError` also cuts
any message past :data:`MAX_MESSAGE_CHARS` in its middle, keeping the fix at its end, as a last line of
defence.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["MAX_MESSAGE_CHARS", "CheckpointError", "ConfigurationError", "DeviceError", "ForecastModelError",
           "path_kind", "shorten", "shorten_names"]

MAX_MESSAGE_CHARS = 4000
_TAIL_CHARS = 1000
VALUE_CHARS = 200
NAMES_SHOWN = 20


def shorten(value: object, limit: int = VALUE_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how much of the value was left out.

    A long string is cut before it is quoted, so a value of gigabytes costs no copy of gigabytes.
    """
    if isinstance(value, str):
        size, text = len(value), repr(value[:limit])[:limit + 2]
    else:
        text = repr(value)
        size, text = len(text), text[:limit]
    return text if size <= limit else f"{text}... ({size - limit:,} more characters)"


def shorten_names(values: Iterable[object], limit: int = NAMES_SHOWN, each: int = VALUE_CHARS) -> str:
    """A list of names for a message: at most ``limit`` of them, each cut by :func:`shorten`."""
    shown, extra = [], 0
    for index, value in enumerate(values):
        if index < limit:
            shown.append(shorten(value, each))
        else:
            extra += 1
    return "[" + ", ".join(shown) + (f", ... and {extra:,} more" if extra else "") + "]"


_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def path_kind(path: Path) -> str:
    """What ``path`` is, in words for a message ("a directory", "a named pipe (FIFO)"; "missing"), told from
    ``stat`` alone: opening a named pipe to find out would block, reading a device may never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


class ForecastModelError(Exception):
    """Base class of every error raised by ``forecast_model``."""


class ConfigurationError(ForecastModelError, ValueError):
    """A setting or an argument is wrong; the message says which one and how to fix it."""

    def __init__(self, message: object = "", *args: object) -> None:
        text = str(message)
        if len(text) > MAX_MESSAGE_CHARS:  # the middle goes: messages end with their fix
            head, tail = MAX_MESSAGE_CHARS - _TAIL_CHARS, _TAIL_CHARS
            text = f"{text[:head]} ... ({len(text) - head - tail:,} characters cut) ... {text[-tail:]}"
        super().__init__(text, *args)


class CheckpointError(ConfigurationError):
    """The checkpoint cannot be found, fetched or loaded."""


class DeviceError(ConfigurationError):
    """The requested compute device is not available."""
