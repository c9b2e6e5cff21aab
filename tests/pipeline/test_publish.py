"""Publishing replaces a partition's file atomically and never publishes a partial set."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.errors import OutputRootError
from pipeline.publish import (
    check_output_root,
    discard_staging,
    partition_dir,
    publish_tables,
    staging_dir,
    withdraw_partitions,
)

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


def test_withdraw_removes_only_that_partition(tmp_path: Path) -> None:
    publish_tables(stage(tmp_path, "r1", b"first"), tmp_path, "job", "2026-01-01", {"forecasts": "data.parquet"})
    publish_tables(stage(tmp_path, "r2", b"other"), tmp_path, "job", "2026-01-02", {"forecasts": "data.parquet"})
    removed = withdraw_partitions(tmp_path, "job", "2026-01-01", ["forecasts", "revisions"])
    assert removed == [partition_dir(tmp_path, "forecasts", "job", "2026-01-01") / "data.parquet"]
    assert not removed[0].exists(), "the partition's file is gone"
    assert (partition_dir(tmp_path, "forecasts", "job", "2026-01-02") / "data.parquet").read_bytes() == b"other"


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
    assert "FORECAST_OUTPUT_ROOT" in str(raised.value) or "cannot be created" in str(raised.value)


def test_publishing_moves_the_staged_file_itself(tmp_path: Path) -> None:
    """A rename, not a copy: the published file is the staged inode, and nothing is left in staging."""
    staging = stage(tmp_path, "r1", b"x")
    inodes = {table: (staging / f"{table}.parquet").stat().st_ino for table in TABLES}
    published = publish_tables(staging, tmp_path, "job", "2026-01-01", TABLES)
    assert {table: path.stat().st_ino for table, path in published.items()} == inodes
    assert list(staging.iterdir()) == []


def test_tables_are_published_in_the_order_given_so_the_manifest_lands_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.publish as publish

    moved: list[str] = []
    real_replace = os.replace

    def spy(source: Path, target: Path) -> None:
        moved.append(Path(source).stem)
        real_replace(source, target)

    monkeypatch.setattr(publish.os, "replace", spy)
    staging = staging_dir(tmp_path, "r1")
    tables = {"forecasts": "data.parquet", "series_status": "data.parquet", "runs": "batch-forecast.parquet"}
    for table in tables:
        (staging / f"{table}.parquet").write_bytes(b"x")
    publish_tables(staging, tmp_path, "job", "2026-01-01", tables)
    assert moved == ["forecasts", "series_status", "runs"]


def test_a_reused_staging_directory_starts_empty(tmp_path: Path) -> None:
    """A retried run keeps its id: what the dead attempt staged must not be published by the retry."""
    first = stage(tmp_path, "r1", b"from the dead attempt")
    (first / "leftover" / "deep").mkdir(parents=True)
    again = staging_dir(tmp_path, "r1")
    assert again == first and again.is_dir() and list(again.iterdir()) == []


def test_discarding_a_staging_directory_that_is_gone_is_harmless(tmp_path: Path) -> None:
    staging = stage(tmp_path, "r1", b"x")
    discard_staging(staging)
    discard_staging(staging)
    discard_staging(tmp_path / "never-created")
    assert not staging.exists() and (tmp_path / "_staging").is_dir()


def test_partitions_are_hive_paths_by_job_and_as_of(tmp_path: Path) -> None:
    assert partition_dir(tmp_path, "forecasts", "sales", "2026-01-01") == \
        tmp_path / "forecasts" / "job=sales" / "as_of=2026-01-01"
    assert staging_dir(tmp_path, "abc") == tmp_path / "_staging" / "abc"


def test_an_output_root_this_user_cannot_write_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.publish as publish

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root (as in CI) writes anywhere: deny it the way the kernel denies others
        real_access = os.access

        def access(path: Path, mode: int) -> bool:
            if Path(path) == locked and mode & os.W_OK:
                return False
            return real_access(path, mode)

        monkeypatch.setattr(publish.os, "access", access)
    try:
        with pytest.raises(OutputRootError, match=r"not writable: this user \(.+\) cannot write .*/locked"):
            check_output_root(locked / "out")
        assert check_output_root(tmp_path / "open" / "out") == tmp_path / "open" / "out"
    finally:
        locked.chmod(0o700)


def test_an_output_root_that_is_a_device_is_refused_with_the_whole_fix() -> None:
    with pytest.raises(OutputRootError) as raised:
        check_output_root(Path("/dev/null"))
    assert str(raised.value) == ("The output root /dev/null is a character device, not a directory. Fix: give a "
                                 "directory (it is created if missing) as output_root / --output-root, or set "
                                 "FORECAST_OUTPUT_ROOT.")
