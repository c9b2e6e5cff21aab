"""The backtest task: windows for every accepted series, one batched TimesFM call, scores per series."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from forecast_model import forecast_with_covariates, load_engine
from pipeline.accounting import SeriesCounts
from pipeline.contracts import EVALUATION_SCHEMA, ID, STATUS_SCHEMA
from pipeline.covariate_data import AlignedCovariates
from pipeline.errors import InputDataError
from pipeline.frequency import freq_code
from pipeline.run import ResolvedRun
from pipeline.scoring import (
    COVARIATE_MODEL,
    BacktestSpec,
    cut_windows,
    overall_metrics,
    score_windows,
    share_beating,
    summarize,
)
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
    share_covariates_beating_plain: float | None = None  # with covariates: series where they lower TimesFM's MASE


@task(name="backtest-series", cache_policy=NO_CACHE)
def backtest_series(regular_path: Path, status_path: Path, staging: Path, run: ResolvedRun, spec: BacktestSpec,
                    *, created_at: datetime, covariates_path: Path | None = None) -> BacktestStats:
    """Backtests every accepted series; stages the evaluations and the backtest's series status.

    With ``covariates_path`` (validation's aligned covariates over the steps every window uses), each window is
    also forecast with its covariates, known in advance at its origin: they are the data's values at the
    window's steps; scored as model ``TimesFMCovariates`` beside the plain model.
    """
    frame = read_staged(regular_path)
    windows, status = cut_windows(frame, pd.read_parquet(status_path), spec)
    if not windows:
        raise InputDataError(f"No series is long enough for {spec.n_windows} windows of h={spec.h}, step={spec.step}"
                             " plus a season of history. Fix: fewer windows, a smaller h or step, or more history.")
    freqs = dict(zip(status[ID], status["freq"], strict=True))
    model = load_engine(run.engine)
    codes = [freq_code(freqs[w.unique_id]) for w in windows]
    result = model.forecast([w.train for w in windows], spec.h, codes, run.context_len)
    with_covariates = None
    if covariates_path is not None:
        sizes = frame.groupby(ID, sort=False).size()
        aligned = AlignedCovariates(pd.read_parquet(covariates_path), run.covariates)
        with_covariates = forecast_with_covariates(
            model, [w.train for w in windows], spec.h,
            aligned.windows([w.unique_id for w in windows], [int(sizes[w.unique_id]) for w in windows],
                            [len(w.train) + spec.h for w in windows]),
            freq=codes, context_len=run.context_len, **run.covariates.regression()).result
    table = summarize(score_windows(windows, result, with_covariates), {w.unique_id: w.season_length for w in windows})
    table["run_id"], table["created_at"] = run.run_id, pd.Timestamp(created_at).tz_convert("UTC")
    overall = overall_metrics(table)
    share = float(table["beats_seasonal_naive"].dropna().astype(bool).mean())
    create_table_artifact(key="backtest-overall", description=f"Backtest: {len(windows)} windows, h={spec.h}",
                          table=[{"model": m, **v} for m, v in overall.items()])
    covariates_share = share_beating(table, COVARIATE_MODEL, "TimesFM") if with_covariates is not None else None
    get_run_logger().info("Backtested %d windows; TimesFM beats seasonal naive on %.0f%% of series%s",
                          len(windows), 100 * share, "" if covariates_share is None else
                          f"; covariates improve TimesFM (MASE) on {covariates_share:.0%} of series")
    return BacktestStats(
        counts=SeriesCounts.from_status(status), output_rows=len(table),
        share_beating_seasonal_naive=round(share, 4), overall=overall, device=str(model.device),
        evaluations_path=write_table(table, EVALUATION_SCHEMA, staging / "evaluations.parquet"),
        status_path=write_table(status, STATUS_SCHEMA, staging / "backtest_status.parquet"),
        share_covariates_beating_plain=covariates_share,
    )
