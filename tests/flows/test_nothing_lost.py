"""A run that forecasts nothing, or too little, never replaces what an earlier run published; one job's
broken files never fail another job's run. The whole flow, under a real Prefect API."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flows.batch_forecast import batch_forecast
from forecast_model import ResolvedCheckpoint
from pipeline.errors import DataValidationError
from pipeline.params import ModelParams, RunSummary
from pipeline.series_checks import SeriesChecks
from pipeline.sources import FileSource
from tasks.catalog import CATALOG_FILE
from tests.conftest import SAMPLE

# Whole flow runs per test: the full suite runs them, ./setup.sh test-fast does not.
pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]
AS_OF = date(2026, 1, 15)


def run(checkpoint: ResolvedCheckpoint, path: Path = SAMPLE, **kwargs: object) -> RunSummary:
    params = {"source": FileSource(path=str(path)), "horizon": 4, "job": "j", "as_of": AS_OF,
              "model": ModelParams(checkpoint=str(checkpoint.weights.parent)), **kwargs}
    return batch_forecast(**params)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_values_past_float32_are_rejected_and_the_earlier_partition_stays(workspace: Path,
                                                                          tiny_checkpoint: ResolvedCheckpoint) -> None:
    good = run(tiny_checkpoint)
    root = workspace / "data" / "outputs"
    before = snapshot(root)
    huge = workspace / "huge.csv"
    pd.read_csv(SAMPLE).assign(y=lambda f: f["y"] * 1e300).to_csv(huge, index=False)
    with pytest.raises(DataValidationError, match=r"12 of 12 series cannot be forecast \(12 rejected, 0 failed"
                                                  r".*out_of_range"):
        run(tiny_checkpoint, huge)
    assert snapshot(root) == before, "the failed run changed the published outputs"
    assert len(pd.read_parquet(good.outputs["forecasts"])) == 48


def test_failed_series_count_against_the_limit_and_an_empty_run_never_publishes(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    """The tiny random checkpoint diverges (non-finite) when it feeds back its own forecasts for 10,000 steps:
    every series fails at inference, which validation could not foresee."""
    run(tiny_checkpoint)
    root = workspace / "data" / "outputs"
    before = snapshot(root)
    with pytest.raises(DataValidationError, match=r"12 of 12 series cannot be forecast \(0 rejected, 12 failed.*"
                                                  r"non_finite_forecast \(.*shorter horizon"):
        run(tiny_checkpoint, horizon=10000)
    with pytest.raises(DataValidationError, match=r"No series could be forecast: all 12 were rejected or failed.*"
                                                  r"non_finite_forecast \(.*\): 12 series"):
        run(tiny_checkpoint, horizon=10000, checks=SeriesChecks(max_rejected_fraction=1.0))
    assert snapshot(root) == before, "a run that forecast nothing changed the published outputs"
    assert not any((root / "_staging").iterdir()), "staging left behind"


def test_an_unreadable_file_of_another_job_does_not_fail_this_run(workspace: Path,
                                                                 tiny_checkpoint: ResolvedCheckpoint) -> None:
    root = workspace / "data" / "outputs"
    run(tiny_checkpoint, job="a")
    broken = root / "forecasts" / "job=other" / "as_of=2026-01-01" / "data.parquet"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"garbage, not parquet")
    summary = run(tiny_checkpoint, job="b")
    assert len(summary.warnings) == 1 and str(broken) in summary.warnings[0], summary.warnings
    with duckdb.connect(str(root / CATALOG_FILE), read_only=True) as con:
        counts = dict(con.execute("SELECT job, count(*) FROM forecasts GROUP BY job").fetchall())
        runs = con.execute("SELECT count(*) FROM runs").fetchone()
    assert counts == {"a": 48, "b": 48} and runs == (2,)
    assert broken.read_bytes() == b"garbage, not parquet", "another job's file is never touched"
    assert not [p for p in root.iterdir() if p.name.startswith(f".{CATALOG_FILE}")], "temporary catalog left"


def test_a_catalog_that_cannot_be_rebuilt_is_a_warning_not_a_failed_run(workspace: Path,
                                                                       tiny_checkpoint: ResolvedCheckpoint) -> None:
    root = workspace / "data" / "outputs"
    (root / CATALOG_FILE).mkdir(parents=True)
    summary = run(tiny_checkpoint)
    assert len(summary.warnings) == 1 and "could not be rebuilt" in summary.warnings[0]
    assert len(pd.read_parquet(summary.outputs["forecasts"])) == 48, "the run's outputs are published"
    assert not [p for p in root.iterdir() if p.name.startswith(f".{CATALOG_FILE}.")], "temporary catalog left"
