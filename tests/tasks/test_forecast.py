"""Series summaries and the forecast table, on small frames and a hand-made result."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from forecast_model import ForecastResult
from tasks.contracts import FORECAST_SCHEMA, QUANTILE_COLUMNS
from tasks.forecast import build_forecast_table, summarize_series, write_table
from tasks.load import to_canonical


def frame() -> pd.DataFrame:
    raw = pd.DataFrame({
        "unique_id": ["a"] * 4 + ["b"] * 4 + ["c"] * 3,
        "ds": list(pd.date_range("2024-01-01", periods=4, freq="MS").astype(str)) * 2
        + ["2024-01-01", "2024-01-02", "2024-01-09"],
        "y": [1, 2, 3, 4, None, None, None, None, 1, 2, 3],
    })
    return to_canonical(raw)


def test_summary_rejects_empty_and_irregular_series() -> None:
    summary = summarize_series(frame()).set_index("unique_id")
    assert summary.loc["a", ["status", "reason", "n_obs", "freq"]].tolist() == ["ok", None, 4, "MS"]
    assert summary.loc["b", ["status", "reason", "n_obs"]].tolist() == ["rejected", "no_observations", 0]
    assert summary.loc["c", ["status", "reason"]].tolist() == ["rejected", "unknown_frequency"]
    assert summary.loc["a", "last_ds"] == pd.Timestamp("2024-04-01")


def test_declared_frequency_skips_inference() -> None:
    summary = summarize_series(frame(), freq="D").set_index("unique_id")
    assert summary.loc["c", "status"] == "ok" and summary.loc["c", "freq"] == "D"


def test_forecast_table_steps_timestamps_and_sorted_quantiles(tmp_path) -> None:
    summary = summarize_series(frame()).query("status == 'ok'").reset_index(drop=True)
    horizon = 3
    crossed = np.tile(np.arange(9, 0, -1, dtype=np.float32), (1, horizon, 1))  # q10 > ... > q90
    result = ForecastResult(point=crossed[:, :, 4], mean=crossed[:, :, 4], quantiles=crossed)
    created = datetime(2026, 1, 2, tzinfo=timezone.utc)
    table = build_forecast_table(summary, result, model="m", run_id="r", created_at=created)
    assert table["ds"].tolist() == list(pd.date_range("2024-05-01", periods=3, freq="MS"))
    assert table["step"].tolist() == [1, 2, 3]
    assert (np.diff(table[QUANTILE_COLUMNS].to_numpy(), axis=1) >= 0).all(), "quantiles must be non-decreasing"
    assert (table["cutoff"] == pd.Timestamp("2024-04-01")).all()
    written = write_table(table, FORECAST_SCHEMA, tmp_path / "f.parquet")
    assert pd.read_parquet(written)["created_at"].iloc[0] == pd.Timestamp(created)
