"""Publishing replaces a partition's file atomically and never publishes a partial set."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.logging import disable_run_logger

from tasks.publish import discard_staging, partition_dir, publish_outputs, staging_dir

TABLES = {"forecasts": "data.parquet", "runs": "batch-forecast.parquet"}


def stage(root: Path, run_id: str, content: bytes) -> Path:
    staging = staging_dir(root, run_id)
    for table in TABLES:
        (staging / f"{table}.parquet").write_bytes(content)
    return staging


def test_rerun_replaces_the_partition_file(tmp_path: Path) -> None:
    with disable_run_logger():
        publish_outputs.fn(stage(tmp_path, "r1", b"first"), tmp_path, "job", "2026-01-01", TABLES)
        published = publish_outputs.fn(stage(tmp_path, "r2", b"second"), tmp_path, "job", "2026-01-01", TABLES)
    for table in TABLES:
        files = list(partition_dir(tmp_path, table, "job", "2026-01-01").iterdir())
        assert files == [published[table]] and files[0].name == TABLES[table], f"{table}: one file per partition"
        assert files[0].read_bytes() == b"second"


def test_missing_staged_table_publishes_nothing(tmp_path: Path) -> None:
    staging = stage(tmp_path, "r1", b"x")
    (staging / "runs.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="runs"):
        publish_outputs.fn(staging, tmp_path, "job", "2026-01-01", TABLES)
    assert not (tmp_path / "forecasts").exists()


def test_discard_staging(tmp_path: Path) -> None:
    staging = stage(tmp_path, "r1", b"x")
    discard_staging(staging)
    assert not staging.exists()
