"""The backtest task on the tiny checkpoint: too-short series are rejected with their reason, the others are
scored against the naive baselines and staged."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect.logging import disable_run_logger

from forecast_model import EngineConfig, ResolvedCheckpoint
from pipeline.accounting import SeriesCounts
from pipeline.canonical import to_canonical
from pipeline.contracts import EVALUATION_SCHEMA, STATUS_SCHEMA
from pipeline.errors import InputDataError
from pipeline.run import ResolvedRun
from pipeline.scoring import BacktestSpec
from pipeline.series_checks import SeriesChecks, check_series, regularize
from pipeline.tables import write_table
from tasks.backtest import backtest_series
from tests.conftest import make_run

CREATED = datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc)
SPEC = BacktestSpec(h=4, n_windows=2, step=4)


def stage_validated(frame: pd.DataFrame, tmp_path: Path) -> tuple[Path, Path]:
    """What the validate task leaves for the backtest: the regular series and their status."""
    status = check_series(frame, {}, SeriesChecks(), None, date(2027, 1, 1))
    regular = tmp_path / "regular.parquet"
    regularize(frame, status).to_parquet(regular, index=False)
    return regular, write_table(status, STATUS_SCHEMA, tmp_path / "series_status.parquet")


def run_of(checkpoint: ResolvedCheckpoint, tmp_path: Path) -> ResolvedRun:
    return make_run(engine=EngineConfig(checkpoint=str(checkpoint.weights.parent), device="cpu", batch_size=8),
                    output_root=tmp_path, horizon=SPEC.h)


def shortened(frame: pd.DataFrame, series: dict[str, int]) -> pd.DataFrame:
    """``frame`` with the named series cut to their last ``n`` points."""
    keep = [group.tail(series.get(str(key), len(group))) for key, group in frame.groupby("unique_id", sort=True)]
    return pd.concat(keep, ignore_index=True)


@pytest.mark.usefixtures("prefect_api")
def test_too_short_series_are_rejected_and_the_rest_scored(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                                           sample_frame: pd.DataFrame) -> None:
    frame = shortened(to_canonical(sample_frame), {"cpi": 10})  # 10 - 4 - 4 leaves 2 points: less than a season
    regular, status_path = stage_validated(frame, tmp_path)
    assert set(pd.read_parquet(status_path)["status"]) == {"ok"}, "cpi passes validation, only the backtest cuts"
    with disable_run_logger():
        stats = backtest_series.fn(regular, status_path, tmp_path, run_of(tiny_checkpoint, tmp_path), SPEC,
                                   created_at=CREATED)
    assert stats.counts == SeriesCounts(ok=11, rejected=1, by_reason={"too_short_for_backtest": 1})
    status = pd.read_parquet(stats.status_path).set_index("unique_id")
    assert stats.status_path == tmp_path / "backtest_status.parquet"
    assert status.loc["cpi", ["status", "reason"]].tolist() == ["rejected", "too_short_for_backtest"]
    assert pd.read_parquet(status_path)["status"].eq("ok").all(), "the validation status is left as it was"

    table = pq.read_table(stats.evaluations_path)
    assert table.schema == EVALUATION_SCHEMA and stats.evaluations_path == tmp_path / "evaluations.parquet"
    evaluations = table.to_pandas()
    assert stats.output_rows == len(evaluations) == (11 + 1) * 3, "three models per series and overall"
    assert "cpi" not in set(evaluations["unique_id"])
    assert set(evaluations["model"]) == set(stats.overall) == {"TimesFM", "SeasonalNaive", "Naive"}
    per_series = evaluations[evaluations["unique_id"] != "__all__"]
    assert (per_series["n_windows"] == 2).all() and (per_series["n_points"] == 8).all()
    assert (per_series["season_length"] == 4).all(), "quarterly series have a season of four"
    assert (evaluations["run_id"] == "run-1").all() and (evaluations["created_at"] == pd.Timestamp(CREATED)).all()
    beats = per_series.loc[per_series["model"] == "TimesFM", "beats_seasonal_naive"].astype(bool)
    assert stats.share_beating_seasonal_naive == pytest.approx(beats.mean(), abs=1e-4)

    m1 = frame.loc[frame["unique_id"] == "m1", "y"].to_numpy()
    expected = np.mean([np.abs(m1[cut:cut + 4] - m1[cut - 4:cut]).mean() for cut in (len(m1) - 8, len(m1) - 4)])
    seasonal = evaluations[(evaluations["unique_id"] == "m1") & (evaluations["model"] == "SeasonalNaive")]
    assert seasonal["mae"].item() == pytest.approx(expected), "seasonal naive repeats the last four quarters"
    overall = evaluations[evaluations["unique_id"] == "__all__"].set_index("model")
    assert stats.overall["SeasonalNaive"]["mae"] == pytest.approx(overall.loc["SeasonalNaive", "mae"], abs=1e-6)


def test_no_series_long_enough_is_an_error_with_the_fix(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                                        sample_frame: pd.DataFrame) -> None:
    frame = to_canonical(sample_frame)
    regular, status_path = stage_validated(shortened(frame, dict.fromkeys(frame["unique_id"].unique(), 10)),
                                           tmp_path)
    with disable_run_logger(), pytest.raises(InputDataError, match=r"No series is long enough for 2 windows of "
                                                                   r"h=4, step=4.*Fix: fewer windows"):
        backtest_series.fn(regular, status_path, tmp_path, run_of(tiny_checkpoint, tmp_path), SPEC,
                           created_at=CREATED)
    assert not (tmp_path / "evaluations.parquet").exists()
