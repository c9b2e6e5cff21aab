"""The anomaly-detection task: cut every accepted series, one batched TimesFM call, score each observation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from forecast_model import load_engine
from pipeline.accounting import SeriesCounts, check_rejected_fraction, check_something_forecast, reason_examples
from pipeline.contracts import ID, STATUS_SCHEMA
from pipeline.detection import DetectionSpec, anomaly_table, cut_for_detection
from pipeline.errors import InputDataError
from pipeline.forecasting import mark_series_failed
from pipeline.frequency import freq_code
from pipeline.run import ResolvedRun
from pipeline.tables import parquet_options, read_staged, write_table

__all__ = ["DetectionStats", "detect_anomalies", "render_anomalies"]

TOP_ANOMALIES = 20  # rows of the run's Prefect table artifact


class DetectionStats(BaseModel):
    """What the detection stage did."""

    model_config = ConfigDict(frozen=True)

    counts: SeriesCounts
    points_scored: int
    points_missing: int
    anomalies: int
    horizon: int  # the most steps one forecast covered (the window, or the stride when rolling)
    device: str
    anomalies_path: Path
    status_path: Path

    def metrics(self, threshold: float) -> dict[str, float]:
        """The run's MLflow metrics beside its series counts."""
        return {"points_scored": self.points_scored, "points_missing": self.points_missing,
                "anomalies": self.anomalies, "anomaly_rate": self.anomalies / max(self.points_scored, 1),
                "threshold": threshold}


@task(name="detect-anomalies", cache_policy=NO_CACHE)
def detect_anomalies(regular_path: Path, status_path: Path, staging: Path, run: ResolvedRun,
                     spec: DetectionSpec) -> DetectionStats:
    """Scores the window of every accepted series; stages the anomalies and the run's series status.

    The run fails, staging nothing, when no series can be scored or more than ``max_rejected_fraction`` of
    them are left out (rejected by validation or for their window, or failed in the model).
    """
    cuts, status = cut_for_detection(read_staged(regular_path), pd.read_parquet(status_path), spec)
    if not cuts:
        raise InputDataError(
            f"No series can be scored: {_reasons(status)}. Fix: a smaller window, an earlier since, or series "
            f"with more history (each needs 3 observed points before its window).")
    freqs = dict(zip(status[ID], status["freq"], strict=True))
    model = load_engine(run.engine)
    horizon = max(len(c.actual) for c in cuts)
    result = model.forecast([c.context for c in cuts], horizon, [freq_code(freqs[c.unique_id]) for c in cuts],
                            run.context_len)
    table, failed, missing = anomaly_table(cuts, result, threshold=spec.threshold, model=run.engine.checkpoint,
                                           run_id=run.run_id)
    status = mark_series_failed(status, failed)
    counts = SeriesCounts.from_status(status)
    examples = reason_examples(status)
    check_rejected_fraction(counts, run.checks.max_rejected_fraction, examples)
    check_something_forecast(counts, examples)
    if table.num_rows == 0:
        raise InputDataError("Every observation in the scoring windows is missing: nothing to score, nothing is "
                             "published. Fix: a window (or since) that covers observed points.")
    anomalies = int(table.column("is_anomaly").to_numpy().sum())
    _top_artifact(table, spec.threshold)
    get_run_logger().info("Scored %d observations of %d series (%d missing, left out): %d anomalies at "
                          "threshold %.3g", table.num_rows, counts.ok, missing, anomalies, spec.threshold)
    path = staging / "anomalies.parquet"
    pq.write_table(table, path, **parquet_options(table.schema))
    return DetectionStats(counts=counts, points_scored=table.num_rows, points_missing=missing, anomalies=anomalies,
                          horizon=horizon, device=str(model.device), anomalies_path=path,
                          status_path=write_table(status, STATUS_SCHEMA, staging / "anomaly_status.parquet"))


@task(name="render-anomalies", cache_policy=NO_CACHE)
def render_anomalies(regular_path: Path, anomalies_path: Path, staging: Path, title: str | None = None) -> Path:
    """A PNG of the series with the most surprising observations, for the MLflow run."""
    from pipeline.plot import WORST_SERIES, plot_anomalies  # matplotlib only where a plot is drawn

    anomalies = pd.read_parquet(anomalies_path)
    ids = list(anomalies.groupby(ID)["anomaly_probability"].max().nlargest(WORST_SERIES).index)
    history = pd.read_parquet(regular_path, filters=[(ID, "in", ids)]) if ids else anomalies.iloc[:0]
    return plot_anomalies(history, anomalies, staging / "anomalies.png", title=title)


def _top_artifact(table: pa.Table, threshold: float) -> None:
    frame = table.to_pandas()
    top = frame.nlargest(TOP_ANOMALIES, "anomaly_probability")
    rows = [{"unique_id": r.unique_id, "ds": str(r.ds), "y": r.y, "expected": r.expected, "lower": r.lower,
             "upper": r.upper, "anomaly_probability": round(float(r.anomaly_probability), 4),
             "is_anomaly": bool(r.is_anomaly)} for r in top.itertuples()]
    create_table_artifact(key="top-anomalies", table=rows,
                          description=f"The {len(rows)} most surprising observations (threshold {threshold})")


def _reasons(status: pd.DataFrame) -> str:
    reasons = status["reason"].dropna().value_counts()
    return ", ".join(f"{count} {reason}" for reason, count in reasons.items()) or "no series was accepted"
