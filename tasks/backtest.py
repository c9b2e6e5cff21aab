"""The backtest task: windows for every accepted series, one batched TimesFM call, scores per series."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from forecast_model import load_engine
from pipeline.accounting import SeriesCounts
from pipeline.contracts import EVALUATION_SCHEMA, ID, STATUS_SCHEMA
from pipeline.errors import InputDataError
from pipeline.frequency import freq_code
from pipeline.run import ResolvedRun
from pipeline.scoring import BacktestSpec, cut_windows, overall_metrics, score_windows, summarize
from pipeline.tables import read_staged, write_table

__all__ = ["BacktestStats", "backtest_series"]


class BacktestStats(BaseModel):
    """What the backtest stage did."""

    model_config = ConfigDict(frozen=True)

    counts: SeriesCounts
    output_rows: int
    share_beating_seasonal_naive: float
    overall: dict[str, dict[str, float]]
    device: str
    evaluations_path: Path
    status_path: Path


@task(name="backtest-series", cache_policy=NO_CACHE)
def backtest_series(regular_path: Path, status_path: Path, staging: Path, run: ResolvedRun, spec: BacktestSpec,
                    *, created_at: datetime) -> BacktestStats:
    """Backtests every accepted series; stages the evaluations and the backtest's series status."""
    windows, status = cut_windows(read_staged(regular_path), pd.read_parquet(status_path), spec)
    if not windows:
        raise InputDataError(f"No series is long enough for {spec.n_windows} windows of h={spec.h}, step={spec.step}"
                             " plus a season of history. Fix: fewer windows, a smaller h or step, or more history.")
    freqs = dict(zip(status[ID], status["freq"], strict=True))
    model = load_engine(run.engine)
    result = model.forecast([w.train for w in windows], spec.h, [freq_code(freqs[w.unique_id]) for w in windows],
                            run.context_len)
    table = summarize(score_windows(windows, result), {w.unique_id: w.season_length for w in windows})
    table["run_id"], table["created_at"] = run.run_id, pd.Timestamp(created_at).tz_convert("UTC")
    overall = overall_metrics(table)
    share = float(table["beats_seasonal_naive"].dropna().astype(bool).mean())
    create_table_artifact(key="backtest-overall", description=f"Backtest: {len(windows)} windows, h={spec.h}",
                          table=[{"model": m, **v} for m, v in overall.items()])
    get_run_logger().info("Backtested %d windows; TimesFM beats seasonal naive on %.0f%% of series",
                          len(windows), 100 * share)
    return BacktestStats(
        counts=SeriesCounts.from_status(status), output_rows=len(table),
        share_beating_seasonal_naive=round(share, 4), overall=overall, device=str(model.device),
        evaluations_path=write_table(table, EVALUATION_SCHEMA, staging / "evaluations.parquet"),
        status_path=write_table(status, STATUS_SCHEMA, staging / "backtest_status.parquet"),
    )
