"""The forecast flow with covariates (issue #19) under a real Prefect API: the real TimesFM code path on a tiny
checkpoint, the shipped covariate sample (US consumption and investment with disposable income and the T-bill
rate), MLflow and the catalog as a user would read them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.batch_backtest import batch_backtest
from flows.batch_forecast import batch_forecast
from forecast_model import Covariates, EngineConfig, ResolvedCheckpoint, forecast_with_covariates, load_engine
from pipeline.contracts import COVARIATE_EFFECTS_SCHEMA
from pipeline.params import CovariateParams, ModelParams, RunSummary
from pipeline.series_checks import SeriesChecks
from pipeline.sources import FileSource
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("prefect_api")
AS_OF = date(2009, 12, 1)
SAMPLE = REPO / "data" / "samples" / "us_consumption_income.csv"
COVARIATES = CovariateParams(dynamic_numerical=("income", "rate"), calendar=("quarter",))
HORIZON = 4


def run(checkpoint: ResolvedCheckpoint, source: Path = SAMPLE, **kwargs: object) -> RunSummary:
    model = ModelParams(checkpoint=str(checkpoint.weights.parent), device="cpu")
    params = {"source": FileSource(path=str(source)), "horizon": HORIZON, "model": model, "as_of": AS_OF,
              "covariates": COVARIATES, "job": "consumption", **kwargs}
    return batch_forecast(**params)


def published(summary: RunSummary, table: str) -> pd.DataFrame:
    return pd.read_parquet(summary.outputs[table]).sort_values(["unique_id", *(["step"] if table == "forecasts"
                                                                              else [])], ignore_index=True)


def test_the_covariate_sample_is_forecast_with_its_covariates_published_and_tracked(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    summary = run(tiny_checkpoint)
    assert (summary.series_in, summary.series_ok, summary.forecast_rows) == (2, 2, 2 * HORIZON)
    forecasts = published(summary, "forecasts")
    assert forecasts.groupby("unique_id")["ds"].apply(list).to_dict() == {
        name: list(pd.date_range("2008-10-01", periods=HORIZON, freq="QS")) for name in ("consumption", "investment")}
    assert set(forecasts["cutoff"]) == {pd.Timestamp("2008-07-01")}, "the future rows are not history"

    # The flow's forecasts and effects are the engine's with the sample's own covariates, cut as documented.
    sample = pd.read_csv(SAMPLE, parse_dates=["ds"])
    series = [sample.loc[(sample["unique_id"] == name) & sample["y"].notna(), "y"].to_numpy()
              for name in ("consumption", "investment")]
    steps = [sample[sample["unique_id"] == name] for name in ("consumption", "investment")]
    engine = load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu"))
    expected = forecast_with_covariates(engine, series, HORIZON, Covariates(
        dynamic_numerical={name: [s[name].to_numpy() for s in steps] for name in ("income", "rate")},
        dynamic_categorical={"quarter": [s["ds"].dt.quarter.to_numpy() for s in steps]}), freq=[2, 2])
    np.testing.assert_allclose(forecasts["forecast"].to_numpy(), expected.result.point.reshape(-1), rtol=1e-6)
    plain = engine.forecast(series, HORIZON, [2, 2])
    assert np.abs(plain.point.reshape(-1) - forecasts["forecast"].to_numpy()).max() > 1, "covariates had no effect"

    effects = published(summary, "covariate_effects")
    assert effects.columns.tolist() == COVARIATE_EFFECTS_SCHEMA.names and set(effects["run_id"]) == {summary.run_id}
    consumption = effects[effects["unique_id"] == "consumption"].set_index("covariate")["coefficient"]
    assert consumption.index.tolist() == ["(intercept)", "income", "rate", "quarter=1", "quarter=2", "quarter=3",
                                          "quarter=4"]
    np.testing.assert_allclose(consumption.to_numpy(), expected.coefficients[0], rtol=1e-9)
    assert published(summary, "series_status")["unseen_covariate_levels"].tolist() == [0, 0]

    manifest = pd.read_parquet(summary.outputs["runs"]).iloc[0]
    assert json.loads(manifest["covariates"])["dynamic_numerical"] == ["income", "rate"]
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    recorded = client.get_run(summary.mlflow_run_id)
    assert recorded.data.params["covariates.dynamic_numerical"] == "['income', 'rate']"
    report = client.download_artifacts(summary.mlflow_run_id, "validation_covariates.json", str(workspace))
    assert json.loads(Path(report).read_text())["success"] is True, "the covariates' great-expectations result"
    assert recorded.data.params["covariates.calendar"] == "['quarter']"
    catalog = duckdb.connect(str(workspace / "data" / "outputs" / "catalog.duckdb"), read_only=True)
    assert catalog.execute("SELECT count(*) FROM covariate_effects WHERE job = 'consumption'").fetchone() == (14,)


def test_a_series_without_future_values_is_rejected_and_nothing_else_changes(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    """The same forecasts when the future rows come from a second source, and a series that has none there is
    rejected (missing_future_covariates), not the run."""
    alone = run(tiny_checkpoint)
    sample = pd.read_csv(SAMPLE)
    observed = sample[sample["y"].notna()]
    exports = observed[observed["unique_id"] == "consumption"].assign(unique_id="exports", y=lambda f: f["y"] * 0.1)
    pd.concat([observed, exports]).to_csv(workspace / "history.csv", index=False)
    sample[sample["y"].isna()].drop(columns=["y"]).to_csv(workspace / "future.csv", index=False)
    future = COVARIATES.model_copy(update={"future_source": FileSource(path=str(workspace / "future.csv"))})
    split = run(tiny_checkpoint, source=workspace / "history.csv", covariates=future, as_of=date(2009, 12, 2),
                checks=SeriesChecks(max_rejected_fraction=0.5))

    assert (split.series_in, split.series_ok, split.series_rejected) == (3, 2, 1)
    status = published(split, "series_status").set_index("unique_id")
    assert status.loc["exports", ["status", "reason"]].tolist() == ["rejected", "missing_future_covariates"]
    assert json.loads(pd.read_parquet(split.outputs["runs"])["rejected_by_reason"][0]) == {
        "missing_future_covariates": 1}
    columns = ["unique_id", "ds", "step", "forecast", "q10", "q50", "q90", "cutoff"]
    pd.testing.assert_frame_equal(published(split, "forecasts")[columns], published(alone, "forecasts")[columns])
    pd.testing.assert_frame_equal(published(split, "covariate_effects").drop(columns="run_id"),
                                  published(alone, "covariate_effects").drop(columns="run_id"))


@pytest.mark.slow
def test_a_rerun_without_covariates_withdraws_the_earlier_effects(workspace: Path,
                                                                  tiny_checkpoint: ResolvedCheckpoint) -> None:
    first = run(tiny_checkpoint)
    effects = Path(first.outputs["covariate_effects"])
    assert effects.is_file()
    again = run(tiny_checkpoint, covariates=CovariateParams())
    assert "covariate_effects" not in again.outputs and not effects.exists()
    assert pd.read_parquet(again.outputs["runs"])["covariates"].isna().all()


def test_a_backtest_scores_the_forecasts_with_covariates_beside_the_plain_ones(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    """Each window is forecast with the covariates' values at its own steps (known in advance at its origin)."""
    model = ModelParams(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu")
    summary = batch_backtest(source=FileSource(path=str(SAMPLE)), h=HORIZON, n_windows=2, model=model, as_of=AS_OF,
                             covariates=COVARIATES, job="consumption")
    assert summary.tracking_status == "ok"
    evaluations = pd.read_parquet(summary.outputs["evaluations"])
    assert set(evaluations["model"]) == {"TimesFM", "TimesFMCovariates", "SeasonalNaive", "Naive"}

    sample = pd.read_csv(SAMPLE, parse_dates=["ds"])
    history = sample[sample["y"].notna() & (sample["unique_id"] == "investment")]
    y = history["y"].to_numpy()
    cuts = [len(y) - 2 * HORIZON, len(y) - HORIZON]
    engine = load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu"))
    expected = forecast_with_covariates(engine, [y[:cut] for cut in cuts], HORIZON, Covariates(
        dynamic_numerical={name: [history[name].to_numpy()[:cut + HORIZON] for cut in cuts]
                           for name in ("income", "rate")},
        dynamic_categorical={"quarter": [history["ds"].dt.quarter.to_numpy()[:cut + HORIZON] for cut in cuts]}),
        freq=[2, 2])
    mae = np.mean([np.abs(y[cut:cut + HORIZON] - expected.result.point[k]).mean() for k, cut in enumerate(cuts)])
    row = evaluations[(evaluations["unique_id"] == "investment") & (evaluations["model"] == "TimesFMCovariates")]
    assert row["mae"].item() == pytest.approx(mae, rel=1e-5)

    mase = evaluations[evaluations["unique_id"] != "__all__"].pivot(index="unique_id", columns="model", values="mase")
    assert summary.share_covariates_beating_plain == (mase["TimesFMCovariates"] < mase["TimesFM"]).mean()
    recorded = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}").get_run(summary.mlflow_run_id)
    assert recorded.data.metrics["TimesFMCovariates.mae"] == pytest.approx(
        evaluations.query("unique_id == '__all__' and model == 'TimesFMCovariates'")["mae"].item(), rel=1e-6)
