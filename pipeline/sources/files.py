"""Local CSV and Parquet files, single or by glob, confined to the configured data roots."""

from __future__ import annotations

import glob
import itertools
import re
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forecast_model.errors import path_kind, shorten, shorten_names
from pipeline.canonical import ColumnMapping, FileKind, Layout, parse_bytes
from pipeline.errors import InputDataError
from pipeline.sources.policy import SourcePolicy, fixed_kind

__all__ = ["FileSource", "base_directory", "expand", "is_glob", "read_files", "require_file", "require_input_file",
           "resolve_within_roots"]

_GLOB_CHARS = set("*?[")
_KINDS: dict[str, FileKind] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# What a path is when it is not a regular file, from its mode alone.
class FileSource(BaseModel):
    """A local CSV or Parquet file, or a glob over many (e.g. data/sales/*.parquet)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["file"] = Field("file", description="Fixed: a file source.", json_schema_extra=fixed_kind)
    path: str = Field(..., min_length=1, description="Path or glob of .csv / .parquet files under a data root.")
    format: Layout = Field("long", description="long: one row per series and timestamp; "
                                               "wide: one time column and one column per series.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="Input column names.")

    @field_validator("path")
    @classmethod
    def _no_scheme(cls, path: str) -> str:
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]{0,31})://", path)
        if scheme:  # file:///x.csv would be looked up as a relative directory named "file:"
            raise ValueError(f"path names a URL scheme ({scheme.group(1)}://); a file source takes a local path or "
                             "glob. Fix: drop the scheme (file:///data/x.csv is /data/x.csv), or use a url source "
                             "for http(s)://.")
        return path

    @model_validator(mode="after")
    def _columns_fit_layout(self) -> FileSource:
        self.columns.check_for(self.format)
        return self

    def describe(self) -> str:
        """A loggable description of the source."""
        return f"file:{self.path}"


def resolve_within_roots(path: Path, policy: SourcePolicy) -> Path:
    """The real path of ``path`` (links followed), refused unless it lies under a data root."""
    real = path.expanduser().resolve()
    roots = [root.expanduser().resolve() for root in policy.data_roots]
    if not any(real.is_relative_to(root) for root in roots):
        raise InputDataError(
            f"Path {path} is outside the data roots {[str(r) for r in roots]}. Fix: place the file under a "
            "data root, or add its directory to FORECAST_DATA_ROOTS."
        )
    return real


def require_file(path: Path, role: str, directory_fix: str, *, missing_ok: bool = False) -> None:
    """Refuses ``path`` unless it is a regular file, saying what it is instead.

    Told from ``stat`` alone, never by opening the path: opening a named pipe blocks until something writes
    to it, and a device such as /dev/zero never ends. ``role`` names the path in messages ("Input file"),
    ``directory_fix`` says what to give instead of a directory.
    """
    try:
        kind = path_kind(path)
    except OSError as exc:
        raise InputDataError(f"{role} {path} cannot be read ({exc.strerror}). Fix the path or its "
                             "permissions.") from exc
    if kind == "a regular file" or (kind == "missing" and missing_ok):
        return
    if kind == "missing":
        raise InputDataError(f"{role} {path} does not exist. Fix the path.")
    if kind == "a directory":
        raise InputDataError(f"{role} {path} is a directory; {directory_fix}.")
    what = "is not a regular file" if kind == "not a regular file" else f"is {kind}, not a regular file"
    raise InputDataError(f"{role} {path} {what}. Fix: give a regular file (copy the data into one first).")


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` holds a wildcard (``*``, ``?`` or ``[``)."""
    return bool(_GLOB_CHARS & set(pattern))


def base_directory(pattern: str) -> Path:
    """The directory a path or glob reads from: a path's parent, or a glob's part before its first wildcard."""
    path = Path(pattern).expanduser()
    fixed = Path(*itertools.takewhile(lambda part: not is_glob(part), path.parts))
    return fixed if fixed != path else path.parent


def expand(pattern: str, policy: SourcePolicy) -> list[Path]:
    """The files a path or glob names, each checked against the data roots.

    A path that exists but is not a regular file (a directory, a named pipe, a device) is refused; a missing
    one is left to the reader, which says so. A glob skips the directories it matches (``**`` matches many).
    """
    absolute = Path(pattern).expanduser()
    absolute = absolute if absolute.is_absolute() else Path.cwd() / absolute
    if not is_glob(pattern):
        path = resolve_within_roots(absolute, policy)
        require_input_file(path, missing_ok=True)
        return [path]
    matches = sorted(Path(m) for m in glob.glob(str(absolute), recursive=True))
    found = [m for m in matches if m.exists() and not m.is_dir()]  # exists() is False for a dangling link
    if not found and matches:
        raise InputDataError(f"{shorten(pattern)} matches only directories, such as {matches[0]}. Fix: give a "
                             f"glob of files, such as {matches[0] / '*.csv'}.")
    if not found:
        raise InputDataError(f"No file matches {shorten(pattern)}. Fix the pattern or the working directory.")
    paths = [resolve_within_roots(m, policy) for m in found]
    for path in paths:
        require_input_file(path)
    return paths


def require_input_file(path: Path, *, missing_ok: bool = False) -> None:
    """:func:`require_file` for a source's data file."""
    require_file(path, "Input file", f"give a file, or a glob such as {path / '*.csv'}", missing_ok=missing_ok)


def read_files(source: FileSource, policy: SourcePolicy) -> pd.DataFrame:
    """Reads every file of the source into one frame; all files must have the same columns."""
    paths = expand(source.path, policy)
    frames = [_read_one(path, source.columns.text_columns(source.format)) for path in paths]
    first = list(frames[0].columns)
    for path, frame in zip(paths[1:], frames[1:], strict=True):
        if list(frame.columns) != first:
            raise InputDataError(f"{path} has columns {shorten_names(frame.columns, 10, 60)}, the first file has "
                                 f"{shorten_names(first, 10, 60)}. Fix: give all files of a glob the same columns.")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _read_one(path: Path, text_columns: tuple[str, ...]) -> pd.DataFrame:
    require_input_file(path)
    kind = _KINDS.get(path.suffix.lower())
    if kind is None:
        raise InputDataError(f"Unsupported file type {shorten(path.suffix)} for {path}; use .csv or .parquet.")
    return parse_bytes(path.read_bytes(), kind, str(path), text_columns)
