"""Input sources: local files and globs, HTTP(S) URLs, DuckDB databases, chosen by a typed parameter."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from pydantic import Field

from pipeline.sources.database import DuckDBSource, read_duckdb
from pipeline.sources.files import FileSource, read_files
from pipeline.sources.http import TransientSourceError, UrlSource, read_url, redact_url
from pipeline.sources.policy import SourcePolicy

__all__ = [
    "DuckDBSource",
    "FileSource",
    "Source",
    "SourcePolicy",
    "TransientSourceError",
    "UrlSource",
    "read_source",
    "redact_url",
]

Source = Annotated[FileSource | UrlSource | DuckDBSource, Field(discriminator="kind")]


def read_source(source: FileSource | UrlSource | DuckDBSource, policy: SourcePolicy) -> pd.DataFrame:
    """Reads the raw frame of any source kind, under the access policy of this deployment."""
    if isinstance(source, FileSource):
        return read_files(source, policy)
    if isinstance(source, UrlSource):
        return read_url(source, policy)
    return read_duckdb(source, policy)
