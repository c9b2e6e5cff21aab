"""The backtest task: windows for every accepted series, one batched TimesFM call, scores per series."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from forecast_model import EngineConfig, load_engine
from tasks.backtest import Window, make_windows, overall_metrics, score_windows, summarize
from tasks.contracts import EVALUATION_SCHEMA, ID, STATUS_SCHEMA, SeriesStatus, Y
from tasks.errors import InputDataError
from tasks.frequency import freq_code, season_length
from tasks.tables import write_table

__all__ = ["BacktestSpec", "BacktestStats", "backtest_series"]


class BacktestSpec(BaseModel):
    """How the rolling-origin backtest cuts each series."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    h: int
    n_windows: int
    step: int
    season_length: int | None
    context_len: int


class BacktestStats(BaseModel):
    """What the backtest stage did."""

    model_config = ConfigDict(frozen=True)

    series_in: int
    series_ok: int
    series_rejected: int
    series_failed: int
    evaluation_rows: int
    share_beating_seasonal_naive: float
    overall: dict[str, dict[str, float]]
    device: str
    evaluations_path: Path
    status_path: Path


def _windows(frame: pd.DataFrame, status: pd.DataFrame, spec: BacktestSpec) -> tuple[list[Window], pd.DataFrame]:
    """Cuts every accepted series; those too short become rejected with ``too_short_for_backtest``."""
    values = {key: group.to_numpy(dtype=np.float64) for key, group in frame.groupby(ID, sort=False)[Y]}
    status = status.copy()
    windows: list[Window] = []
    for row in status[status["status"] == SeriesStatus.OK.value].itertuples():
        period = spec.season_length or season_length(row.freq)
        cut = make_windows(values[row.unique_id], row.unique_id, spec.h, spec.n_windows, spec.step, period)
        if cut is None:
            status.loc[status[ID] == row.unique_id, ["status", "reason"]] = [SeriesStatus.REJECTED.value,
                                                                             "too_short_for_backtest"]
        else:
            windows.extend(cut)
    return windows, status


@task(name="backtest-series", cache_policy=NO_CACHE)
def backtest_series(regular_path: Path, status_path: Path, staging: Path, engine: EngineConfig, spec: BacktestSpec,
                    *, run_id: str, created_at: datetime) -> BacktestStats:
    """Backtests every accepted series; stages the evaluations and the backtest's series status."""
    windows, status = _windows(pd.read_parquet(regular_path), pd.read_parquet(status_path), spec)
    if not windows:
        raise InputDataError(f"No series is long enough for {spec.n_windows} windows of h={spec.h}, step={spec.step}"
                             " plus a season of history. Fix: fewer windows, a smaller h or step, or more history.")
    freqs = dict(zip(status[ID], status["freq"], strict=True))
    model = load_engine(engine)
    result = model.forecast([w.train for w in windows], spec.h, [freq_code(freqs[w.unique_id]) for w in windows],
                            spec.context_len)
    table = summarize(score_windows(windows, result), {w.unique_id: w.season_length for w in windows})
    table["run_id"], table["created_at"] = run_id, pd.Timestamp(created_at).tz_convert("UTC")
    overall = overall_metrics(table)
    share = float(table["beats_seasonal_naive"].dropna().astype(bool).mean())
    create_table_artifact(key="backtest-overall", description=f"Backtest: {len(windows)} windows, h={spec.h}",
                          table=[{"model": m, **v} for m, v in overall.items()])
    get_run_logger().info("Backtested %d windows; TimesFM beats seasonal naive on %.0f%% of series",
                          len(windows), 100 * share)
    counts = status["status"].value_counts()
    return BacktestStats(
        series_in=len(status), series_ok=int(counts.get("ok", 0)), series_rejected=int(counts.get("rejected", 0)),
        series_failed=0, evaluation_rows=len(table), share_beating_seasonal_naive=round(share, 4), overall=overall,
        device=str(model.device),
        evaluations_path=write_table(table, EVALUATION_SCHEMA, staging / "evaluations.parquet"),
        status_path=write_table(status, STATUS_SCHEMA, staging / "backtest_status.parquet"),
    )
