"""Local CSV and Parquet files, single or by glob, confined to the configured data roots."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.canonical import ColumnMapping, FileKind, Layout, parse_bytes
from tasks.errors import InputDataError
from tasks.sources.policy import SourcePolicy

__all__ = ["FileSource", "read_files", "resolve_within_roots"]

_GLOB_CHARS = set("*?[")
_KINDS: dict[str, FileKind] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class FileSource(BaseModel):
    """A local CSV or Parquet file, or a glob over many (``data/sales/*.parquet``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["file"] = "file"
    path: str = Field(..., min_length=1, description="Path or glob of .csv / .parquet files under a data root.")
    format: Layout = Field("long", description="long: one row per series and timestamp; "
                                               "wide: one time column and one column per series.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="Input column names.")

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


def expand(pattern: str, policy: SourcePolicy) -> list[Path]:
    """The files a path or glob names, each checked against the data roots."""
    absolute = Path(pattern).expanduser()
    absolute = absolute if absolute.is_absolute() else Path.cwd() / absolute
    if _GLOB_CHARS & set(pattern):
        matches = sorted(Path(m) for m in glob.glob(str(absolute), recursive=True) if Path(m).is_file())
        if not matches:
            raise InputDataError(f"No file matches {pattern!r}. Fix the pattern or the working directory.")
    else:
        matches = [absolute]
    return [resolve_within_roots(m, policy) for m in matches]


def read_files(source: FileSource, policy: SourcePolicy) -> pd.DataFrame:
    """Reads every file of the source into one frame; all files must have the same columns."""
    paths = expand(source.path, policy)
    frames = [_read_one(path, source.columns.text_columns(source.format)) for path in paths]
    first = list(frames[0].columns)
    for path, frame in zip(paths[1:], frames[1:], strict=True):
        if list(frame.columns) != first:
            raise InputDataError(f"{path} has columns {list(frame.columns)}, the first file has {first}. "
                                 "Fix: give all files of a glob the same columns.")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _read_one(path: Path, text_columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise InputDataError(f"Input file {path} does not exist. Fix the source path.")
    kind = _KINDS.get(path.suffix.lower())
    if kind is None:
        raise InputDataError(f"Unsupported file type {path.suffix!r} for {path}; use .csv or .parquet.")
    return parse_bytes(path.read_bytes(), kind, str(path), text_columns)
