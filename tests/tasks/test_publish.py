"""The publish task: the same partition files as the core publish, the staged tables moved, not copied."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.logging import disable_run_logger

from pipeline.publish import partition_dir, publish_tables, staging_dir
from tasks.publish import publish_outputs

FILES = {"forecasts": "data.parquet", "series_status": "data.parquet", "runs": "batch-forecast.parquet"}
JOB, AS_OF = "nightly", "2027-01-01"


def stage(root: Path, run_id: str) -> Path:
    staging = staging_dir(root, run_id)
    for table in FILES:
        (staging / f"{table}.parquet").write_bytes(f"{table} of {run_id}".encode())
    return staging


def test_publish_outputs_matches_the_core_and_moves_the_staged_files(tmp_path: Path) -> None:
    task_root, core_root = tmp_path / "task", tmp_path / "core"
    staging = stage(task_root, "r1")
    with disable_run_logger():
        published = publish_outputs.fn(staging, task_root, JOB, AS_OF, FILES)
    expected = publish_tables(stage(core_root, "r1"), core_root, JOB, AS_OF, FILES)
    assert list(published) == list(expected) == list(FILES), "tables publish in the order given (runs last)"
    assert {t: p.relative_to(task_root) for t, p in published.items()} == \
        {t: p.relative_to(core_root) for t, p in expected.items()}
    for table, path in published.items():
        assert path == partition_dir(task_root, table, JOB, AS_OF) / FILES[table]
        assert path.read_bytes() == f"{table} of r1".encode()
    assert list(staging.iterdir()) == [], "the staged tables were moved, not copied"


def test_a_missing_staged_table_publishes_nothing(tmp_path: Path) -> None:
    staging = stage(tmp_path, "r1")
    (staging / "series_status.parquet").unlink()
    with disable_run_logger(), pytest.raises(FileNotFoundError, match="series_status"):
        publish_outputs.fn(staging, tmp_path, JOB, AS_OF, FILES)
    assert not (tmp_path / "forecasts").exists() and (staging / "forecasts.parquet").is_file()
