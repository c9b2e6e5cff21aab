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


def test_latest_is_the_jobs_latest_run_and_by_series_marks_its_fallbacks(tmp_path: Path) -> None:
    publish(tmp_path, "a", "2026-01-01", rows=3)
    publish(tmp_path, "a", "2026-01-02", rows=2)  # a-2 left out of the latest run
    publish(tmp_path, "b", "2025-12-01", rows=1)  # another job, run less recently
    build_catalog(tmp_path)
    with duckdb.connect(str(tmp_path / CATALOG_FILE), read_only=True) as con:
        latest = con.execute("SELECT job, unique_id, as_of::VARCHAR FROM forecasts_latest ORDER BY ALL").fetchall()
        by_series = con.execute("SELECT unique_id, as_of::VARCHAR, is_stale FROM forecasts_latest_by_series "
                                "ORDER BY ALL").fetchall()
    assert latest == [("a", "a-0", "2026-01-02"), ("a", "a-1", "2026-01-02"), ("b", "b-0", "2025-12-01")], \
        "a series the latest run left out must not show an older forecast as latest"
    assert by_series == [("a-0", "2026-01-02", False), ("a-1", "2026-01-02", False), ("a-2", "2026-01-01", True),
                         ("b-0", "2025-12-01", False)]


def test_the_catalog_is_written_in_the_storage_format_duckdb_1_reads(tmp_path: Path) -> None:
    path, _ = build_catalog(tmp_path)
    header = path.read_bytes()[:20]
    assert header[8:12] == b"DUCK" and int.from_bytes(header[12:20], "little") == 64, \
        "storage version 64 (v1.0.0) is what every DuckDB from 1.0 on opens"
