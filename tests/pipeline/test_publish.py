"""Publishing replaces a partition's file atomically and never publishes a partial set."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.errors import OutputRootError
from pipeline.publish import check_output_root, discard_staging, partition_dir, publish_tables, staging_dir

TABLES = {"forecasts": "data.parquet", "runs": "batch-forecast.parquet"}


def stage(root: Path, run_id: str, content: bytes) -> Path:
    staging = staging_dir(root, run_id)
    for table in TABLES:
        (staging / f"{table}.parquet").write_bytes(content)
    return staging


def test_rerun_replaces_the_partition_file(tmp_path: Path) -> None:
    publish_tables(stage(tmp_path, "r1", b"first"), tmp_path, "job", "2026-01-01", TABLES)
    published = publish_tables(stage(tmp_path, "r2", b"second"), tmp_path, "job", "2026-01-01", TABLES)
    for table in TABLES:
        files = list(partition_dir(tmp_path, table, "job", "2026-01-01").iterdir())
        assert files == [published[table]] and files[0].name == TABLES[table], f"{table}: one file per partition"
        assert files[0].read_bytes() == b"second"


def test_missing_staged_table_publishes_nothing(tmp_path: Path) -> None:
    staging = stage(tmp_path, "r1", b"x")
    (staging / "runs.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="runs"):
        publish_tables(staging, tmp_path, "job", "2026-01-01", TABLES)
    assert not (tmp_path / "forecasts").exists()


def test_discard_staging(tmp_path: Path) -> None:
    staging = stage(tmp_path, "r1", b"x")
    discard_staging(staging)
    assert not staging.exists()


def test_output_root_may_be_a_directory_or_one_to_create(tmp_path: Path) -> None:
    assert check_output_root(tmp_path) == tmp_path
    assert check_output_root(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: (p / "f").write_text("x") and p / "f", r"/f is a regular file, not a directory"),
    (lambda p: (p / "f").write_text("x") and p / "f" / "out", r"cannot be created: .*/f is a regular file"),
    (lambda p: Path("/dev/null"), "/dev/null is a character device, not a directory"),
    (lambda p: os.mkfifo(p / "pipe") or p / "pipe", r"/pipe is a named pipe \(FIFO\), not a directory"),
])
def test_output_root_that_is_not_a_directory_is_refused_by_what_it_is(tmp_path: Path,
                                                                      make: Callable[[Path], Path],
                                                                      message: str) -> None:
    with pytest.raises(OutputRootError, match=message) as raised:
        check_output_root(make(tmp_path))
    assert "Fix: give a directory" in str(raised.value)
