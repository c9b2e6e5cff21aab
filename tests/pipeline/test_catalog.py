"""The BI catalog: views over every readable partition, whatever another job left broken."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.catalog import CATALOG_FILE, build_catalog
from pipeline.contracts import FORECAST_SCHEMA
from pipeline.publish import partition_dir
from pipeline.tables import write_table


def publish(root: Path, job: str, as_of: str = "2026-01-01", rows: int = 2) -> Path:
    """A forecasts partition of ``rows`` rows (ids and steps; the other columns empty)."""
    table = pd.DataFrame({name: [None] * rows for name in FORECAST_SCHEMA.names})
    table["unique_id"], table["step"] = [f"{job}-{i}" for i in range(rows)], list(range(1, rows + 1))
    directory = partition_dir(root, "forecasts", job, as_of)
    directory.mkdir(parents=True)
    return write_table(table, FORECAST_SCHEMA, directory / "data.parquet")


def jobs(root: Path) -> dict[str, int]:
    with duckdb.connect(str(root / CATALOG_FILE), read_only=True) as con:
        return dict(con.execute("SELECT job, count(*) FROM forecasts GROUP BY job").fetchall())


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(f".{CATALOG_FILE}")]


def test_views_read_every_partition_through_a_glob(tmp_path: Path) -> None:
    publish(tmp_path, "a")
    path, skipped = build_catalog(tmp_path)
    assert path == tmp_path / CATALOG_FILE and skipped == []
    publish(tmp_path, "b", rows=3)  # published after the build: the glob sees it without a rebuild
    assert jobs(tmp_path) == {"a": 2, "b": 3}


@pytest.mark.parametrize("garbage", [b"", b"not parquet at all", b"PAR1" + b"\0" * 100 + b"PAR1"])
def test_an_unreadable_file_of_another_job_is_left_out_and_named(tmp_path: Path, garbage: bytes) -> None:
    publish(tmp_path, "a")
    broken = partition_dir(tmp_path, "forecasts", "other", "2026-01-01")
    broken.mkdir(parents=True)
    (broken / "data.parquet").write_bytes(garbage)
    _, skipped = build_catalog(tmp_path)
    assert skipped == [broken / "data.parquet"]
    assert jobs(tmp_path) == {"a": 2} and leftovers(tmp_path) == []
