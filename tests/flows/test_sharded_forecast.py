"""The sharded flow, shards run in-process, under a real Prefect API with the tiny checkpoint."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import tasks.shards
from flows.batch_forecast import batch_forecast
from flows.sharded_forecast import sharded_forecast
from forecast_model import ResolvedCheckpoint
from pipeline.canonical import to_canonical
from pipeline.errors import DataValidationError, InputDataError
from pipeline.params import CovariateParams, ModelParams, Sharding
from pipeline.series_checks import SeriesChecks
from pipeline.sources import FileSource
from tests.conftest import REPO, SAMPLE

pytestmark = pytest.mark.usefixtures("prefect_api")
AS_OF = date(2026, 11, 26)


def model(checkpoint: ResolvedCheckpoint) -> ModelParams:
    return ModelParams(checkpoint=str(checkpoint.weights.parent), device="cpu")


def table(root: Path, name: str) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{root}/{name}/**/*.parquet', hive_partitioning = true)").df()


def panel(workspace: Path) -> Path:
    path = workspace / "panel.parquet"
    to_canonical(pd.read_csv(SAMPLE)).to_parquet(path)
    return path


def test_sharded_run_publishes_what_one_batch_run_does(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    source = FileSource(path=str(panel(workspace)))
    single = batch_forecast(source=source, horizon=8, model=model(tiny_checkpoint), as_of=AS_OF, job="one",
                            output_root=str(workspace / "single"))
    summary = sharded_forecast(source=source, horizon=8, model=model(tiny_checkpoint), as_of=AS_OF, job="one",
                               sharding=Sharding(series_per_shard=5, local_concurrency=2),
                               output_root=str(workspace / "sharded"))
    assert (summary.shards, summary.series_in, summary.series_ok) == (3, 12, 12)
    assert summary.shard_workers == {"in-process": 3} and summary.forecast_rows == single.forecast_rows
    expected, got = (table(workspace / root, "forecasts").sort_values(["unique_id", "step"], ignore_index=True)
                     for root in ("single", "sharded"))
    assert got.groupby("unique_id").size().eq(8).all() and len(got) == 96, "every series exactly once"
    np.testing.assert_allclose(got["forecast"], expected["forecast"], rtol=1e-5)
    assert got[["unique_id", "ds", "cutoff"]].equals(expected[["unique_id", "ds", "cutoff"]])
    status = table(workspace / "sharded", "series_status")
    assert sorted(status["unique_id"]) == sorted(table(workspace / "single", "series_status")["unique_id"])
    runs = table(workspace / "sharded", "runs")
    assert len(runs) == 1 and runs.loc[0, "run_id"] == summary.run_id
    shards = json.loads(runs.loc[0, "shards"])
    assert sorted(s["shard"] for s in shards) == [0, 1, 2] and all(s["worker"] == "in-process" for s in shards)
    assert sum(s["series_in"] for s in shards) == 12
    assert not any((workspace / "sharded" / "_staging").iterdir()), "staging must be cleaned up"


@pytest.mark.slow
def test_a_sharded_run_with_covariates_publishes_what_one_batch_run_does(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    """The covariate sample, six series: one batch run on one file with future rows, and a sharded run whose
    shards read the history and take the future rows from a future source."""
    sample = pd.read_csv(REPO / "data" / "samples" / "us_consumption_income.csv")
    six = pd.concat([sample.assign(unique_id=sample["unique_id"] + f"-{k}", y=sample["y"] * (1 + k / 10))
                     for k in range(3)], ignore_index=True)
    six.to_parquet(workspace / "six.parquet")
    six[six["y"].notna()].to_parquet(workspace / "history.parquet")
    six[six["y"].isna()].drop(columns="y").to_parquet(workspace / "future.parquet")
    covariates = CovariateParams(dynamic_numerical=("income", "rate"), calendar=("quarter",))
    single = batch_forecast(source=FileSource(path=str(workspace / "six.parquet")), horizon=4,
                            model=model(tiny_checkpoint), as_of=AS_OF, job="six", covariates=covariates,
                            output_root=str(workspace / "single"))
    future = covariates.model_copy(update={"future_source": FileSource(path=str(workspace / "future.parquet"))})
    summary = sharded_forecast(source=FileSource(path=str(workspace / "history.parquet")), horizon=4,
                               model=model(tiny_checkpoint), as_of=AS_OF, job="six", covariates=future,
                               sharding=Sharding(series_per_shard=2), output_root=str(workspace / "sharded"))
    assert (summary.shards, summary.series_ok, single.series_ok) == (3, 6, 6)
    for name, keys in (("forecasts", ["unique_id", "step"]), ("covariate_effects", ["unique_id", "covariate"])):
        expected, got = (table(workspace / root, name).sort_values(keys, ignore_index=True)
                         for root in ("single", "sharded"))
        assert len(got) == len(expected) > 0 and got[keys].equals(expected[keys])
        column = "forecast" if name == "forecasts" else "coefficient"
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-5, atol=1e-6)
    assert json.loads(table(workspace / "sharded", "runs").loc[0, "covariates"])["calendar"] == ["quarter"]


@pytest.mark.slow
def test_rejections_are_judged_over_the_whole_job(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    frame = to_canonical(pd.read_csv(SAMPLE))
    frame.loc[frame["unique_id"].isin(["cpi", "m1"]), "y"] = 1.0  # two constant series: rejected
    path = workspace / "two_bad.parquet"
    frame.to_parquet(path)
    params = {"source": FileSource(path=str(path)), "horizon": 4, "model": model(tiny_checkpoint), "as_of": AS_OF,
              "sharding": Sharding(shards=2)}
    summary = sharded_forecast(**params, checks=SeriesChecks(max_rejected_fraction=0.2))
    assert (summary.series_ok, summary.series_rejected) == (10, 2)
    before = sorted(p.read_bytes() for p in (workspace / "data" / "outputs").rglob("*.parquet"))
    with pytest.raises(DataValidationError, match=r"2 of 12 series cannot be forecast \(2 rejected, 0 failed.*"
                                                  r"constant"):
        sharded_forecast(**params, checks=SeriesChecks(max_rejected_fraction=0.1))
    # Every series fails at inference (the tiny random model diverges over 10,000 steps): shards hold only
    # failed series, which count against the limit, and a job that forecast nothing never publishes.
    with pytest.raises(DataValidationError, match=r"12 of 12 series cannot be forecast \(2 rejected, 10 failed"):
        sharded_forecast(**{**params, "horizon": 10000}, checks=SeriesChecks(max_rejected_fraction=0.5))
    with pytest.raises(DataValidationError, match=r"No series could be forecast: all 12 were rejected or failed "
                                                  r"\(2 rejected, 10 failed\).*non_finite_forecast"):
        sharded_forecast(**{**params, "horizon": 10000}, checks=SeriesChecks(max_rejected_fraction=1.0))
    after = sorted(p.read_bytes() for p in (workspace / "data" / "outputs").rglob("*.parquet"))
    assert before == after, "a failed run must leave the earlier outputs as they were"


@pytest.mark.slow
def test_a_failing_shard_is_retried_then_fails_the_run_cleanly(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    failures = {"left": 1}
    real = tasks.shards.read_shard

    def flaky(*args: object, **kwargs: object) -> pd.DataFrame:
        if args[3] == 1 and failures["left"]:
            failures["left"] -= 1
            raise OSError("disk hiccup")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tasks.shards, "read_shard", flaky)
    params = {"source": FileSource(path=str(panel(workspace))), "horizon": 4, "model": model(tiny_checkpoint),
              "as_of": AS_OF}
    summary = sharded_forecast(**params, sharding=Sharding(shards=3, max_attempts=2))
    assert summary.series_ok == 12 and failures["left"] == 0
    failures["left"] = 5
    with pytest.raises(Exception, match="Shard 1 failed 2 times.*disk hiccup.*Nothing was published"):
        sharded_forecast(**params, sharding=Sharding(shards=3, max_attempts=2), job="other")
    assert not (workspace / "data" / "outputs" / "forecasts" / "job=other").exists()


def test_unshardable_source_fails_before_any_work(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    with pytest.raises(InputDataError, match="Sharded runs read long-format .* Fix: use the batch-forecast flow"):
        sharded_forecast(source=FileSource(path=str(SAMPLE), format="wide"), model=model(tiny_checkpoint))


def test_a_shard_the_hash_gave_no_series_forecasts_nothing_and_the_run_goes_on(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    """More shards than the hash fills: the empty ones are recorded with no series, not a crash of the run."""
    from pipeline.sharding import shard_of

    source = FileSource(path=str(panel(workspace)))
    ids = sorted(pd.read_csv(SAMPLE)["unique_id"].unique())
    shards = next(k for k in range(2, 40) if len(set(shard_of(ids, k))) < k)  # the first count with an empty shard
    summary = sharded_forecast(source=source, horizon=8, model=model(tiny_checkpoint), as_of=AS_OF, job="gaps",
                               sharding=Sharding(shards=shards), output_root=str(workspace / "sharded"))
    assert (summary.shards, summary.series_in, summary.series_ok) == (shards, 12, 12)
    got = table(workspace / "sharded", "forecasts")
    assert sorted(got["unique_id"].unique()) == ids and len(got) == 96, "every series once, none lost"
    runs = table(workspace / "sharded", "runs")
    assert sorted(s["series_in"] for s in json.loads(runs.loc[0, "shards"]))[0] == 0, "the empty shard is recorded"
