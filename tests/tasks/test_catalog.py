"""The catalog task warns, never fails: the run's outputs are published by the time it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.logging import disable_run_logger

from pipeline.catalog import CATALOG_FILE, build_catalog
from pipeline.publish import partition_dir
from tasks.catalog import refresh_catalog
from tests.pipeline.test_catalog import leftovers, publish


def test_a_catalog_that_cannot_be_written_is_a_warning_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    publish(tmp_path, "a")
    (tmp_path / CATALOG_FILE).mkdir()  # os.replace of the new catalog onto a directory fails
    with pytest.raises(OSError):
        build_catalog(tmp_path)
    assert leftovers(tmp_path) == []
    with disable_run_logger():
        warnings = refresh_catalog.fn(tmp_path)
    assert len(warnings) == 1 and "could not be rebuilt" in warnings[0] and "outputs are published" in warnings[0]
    assert leftovers(tmp_path) == []


def test_refresh_reports_left_out_files_as_a_warning(tmp_path: Path) -> None:
    publish(tmp_path, "a")
    broken = partition_dir(tmp_path, "forecasts", "b", "2026-01-02")
    broken.mkdir(parents=True)
    (broken / "data.parquet").write_bytes(b"x" * 10)
    with disable_run_logger():
        warnings = refresh_catalog.fn(tmp_path)
    assert len(warnings) == 1 and "leaves out 1 Parquet file" in warnings[0] and str(broken) in warnings[0]
    assert "Fix: delete them, or re-run their job" in warnings[0]
