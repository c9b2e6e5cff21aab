"""Forecasts that watch themselves: how a run's forecast moved since the job's previous run (revisions), and
how the job's earlier published forecasts did against this run's actuals (realized accuracy).

Everything runs in DuckDB over Parquet: this run's staged forecasts and regularised input, and the job's
published partitions, at most ``lookback_runs`` of them; nothing is loaded whole into pandas.

The scale of a series (the MASE denominator, also the unit of its revisions) is the mean absolute seasonal
difference of its history in this run's input, as the backtest's (``pipeline.scoring.seasonal_scale``), over
the whole history. The forecast stage computes it, where each series' history is in memory, and stages it
beside the forecasts (``SCALES_SCHEMA``): a pass over the input here cost as much as the rest of the stage.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from pipeline.contracts import (
    DS,
    PENDING_SCHEMA,
    QUANTILE_COLUMNS,
    QUANTILE_LEVELS,
    REALIZED_SCHEMA,
    REALIZED_SERIES_SCHEMA,
    REVISION_SCHEMA,
)
from pipeline.errors import InputDataError
from pipeline.publish import DATA_FILE, partition_dir
from pipeline.sources.database import time_limit
from pipeline.tables import parquet_options

__all__ = [
    "MOST_REVISED",
    "REALIZED_METRICS",
    "MonitorInputs",
    "MonitorSummary",
    "MonitoringTimeout",
    "monitor_job",
    "published_partitions",
]

MOST_REVISED = 10  # series listed in the summary
_BATCH_ROWS = 1_000_000
_AS_OF = re.compile(r"^as_of=(\d{4}-\d{2}-\d{2})$")


class MonitoringTimeout(RuntimeError):
    """Monitoring ran longer than its time limit (``monitor.max_seconds``)."""


@dataclasses.dataclass(frozen=True)
class MonitorInputs:
    """Where one run's monitoring reads and writes."""

    output_root: Path
    job: str
    as_of: date
    run_id: str
    forecasts: Path  # this run's staged forecasts
    scales: list[Path]  # each forecast series' season length and scale (SCALES_SCHEMA): one file, or one per shard
    actuals: list[Path]  # this run's regularised input: one file, or one per shard
    staging: Path
    revision_threshold: float
    lookback_runs: int
    max_seconds: float = 600.0


class MonitorSummary(BaseModel):
    """What monitoring found: small, for the manifest, MLflow and the run summary."""

    model_config = ConfigDict(frozen=True)

    previous_as_of: date | None = None
    series_compared: int = 0
    series_revised: int = 0
    series_new: int = 0
    series_gone: int = 0
    forecast_runs_scored: int = 0
    points_scored: int = 0
    actuals_through: datetime | None = None  # the last target date it scored to: the next run's state starts there
    state_as_of: date | None = None  # the earlier run whose state it continued (None: it read the whole lookback)
    scored_from: datetime | None = None  # that run's actuals_through
    accuracy: dict[str, float] = Field(default_factory=dict)  # mase, coverage_80, ... of the points scored
    most_revised: list[dict[str, Any]] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=list)  # the staged tables to publish

    def metrics(self) -> dict[str, float]:
        """The run's MLflow metrics of monitoring."""
        figures = {"series_revised": float(self.series_revised), "series_compared": float(self.series_compared),
                   "series_new": float(self.series_new), "series_gone": float(self.series_gone),
                   "realized_points_scored": float(self.points_scored)}
        if self.series_compared:
            figures["series_revised_share"] = self.series_revised / self.series_compared
        figures.update({f"realized_{name}": value for name, value in self.accuracy.items()})
        return figures

    def record(self) -> dict[str, Any]:
        """The manifest's ``monitoring`` entry."""
        return self.model_dump(mode="json", exclude={"most_revised", "tables"})


def published_partitions(root: Path, table: str, job: str) -> list[tuple[date, Path]]:
    """The job's published files of ``table`` with their as_of, oldest first (partitions that are not a date
    are not ours and are left out)."""
    found = []
    for path in (root / table / f"job={job}").glob(f"as_of=*/{DATA_FILE}"):
        if match := _AS_OF.match(path.parent.name):
            try:
                found.append((date.fromisoformat(match.group(1)), path))
            except ValueError:
                continue
    return sorted(found)


def monitor_job(inputs: MonitorInputs) -> MonitorSummary:
    """Stages ``revisions.parquet``, ``realized_accuracy.parquet`` and ``realized_accuracy_by_series.parquet``
    for this run (and its state, ``monitor_pending.parquet``); returns what they hold.

    A table with nothing to say (no previous run; nothing left to score) is not staged, so a run publishes
    no empty partition; ``tables`` lists the staged ones, and the caller withdraws the others' partitions of
    this ``as_of`` (an earlier run's of the same day).

    Raises:
        MonitoringTimeout: the queries ran longer than ``max_seconds``.
    """
    earlier = [(day, path) for day, path in published_partitions(inputs.output_root, "forecasts", inputs.job)
               if day < inputs.as_of][-inputs.lookback_runs:]
    with duckdb.connect(config={"preserve_insertion_order": False}) as con:
        try:
            with time_limit(con, inputs.max_seconds):
                _scales(con, inputs.scales)
                summary = _revisions(con, inputs, earlier[-1] if earlier else None)
                runs, points, plan = _realized(con, inputs, earlier)
                accuracy = _latest(con, inputs.staging / "realized_accuracy.parquet") if points else {}
        except InputDataError as exc:  # time_limit's: its fix names the source query's setting, not ours
            raise MonitoringTimeout(
                f"Monitoring ran longer than monitor.max_seconds ({inputs.max_seconds:g} s) and was stopped. Fix: "
                "lower monitor.lookback_runs (fewer earlier runs to read) or raise monitor.max_seconds.") from exc
    tables = [*(["revisions"] if summary.previous_as_of else []),
              *(["realized_accuracy", "realized_accuracy_by_series"] if points else []),
              *(["monitor_pending"] if (inputs.staging / "monitor_pending.parquet").is_file() else [])]
    state = plan.state if plan else None
    return summary.model_copy(update={
        "forecast_runs_scored": runs, "points_scored": points, "accuracy": accuracy, "tables": tables,
        "actuals_through": plan.through if plan else None,
        "state_as_of": state.as_of if state else None, "scored_from": state.actuals_through if state else None})


def _files(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _scales(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> None:
    """``scales(unique_id, m, scale)``: this run's forecast series with their season length and scale, as the
    forecast stage computed them from the histories it had in memory (``pipeline.forecasting.seasonal_scales``)."""
    source = f"read_parquet({_files(paths)})" if paths else \
        "(SELECT NULL::VARCHAR AS unique_id, NULL::INTEGER AS season_length, NULL::DOUBLE AS scale WHERE false)"
    con.execute(f"CREATE TEMP TABLE scales AS SELECT unique_id, season_length AS m, scale FROM {source}")


def _revisions(con: duckdb.DuckDBPyConnection, inputs: MonitorInputs,
               previous: tuple[date, Path] | None) -> MonitorSummary:
    """Stages ``revisions.parquet`` against the job's previous run, if there is one."""
    if previous is None:
        return MonitorSummary()
    day, path = previous
    now, then = _files([inputs.forecasts]), _files([path])
    table = con.sql(f"""
        WITH cur AS (SELECT unique_id, ds, forecast, q90 - q10 AS width FROM read_parquet({now})),
        prev AS (SELECT unique_id, ds, forecast, q90 - q10 AS width FROM read_parquet({then})),
        pairs AS (SELECT unique_id, c.ds, c.forecast - p.forecast AS revision, c.width - p.width AS width_change
                  FROM cur c JOIN prev p USING (unique_id, ds)),
        -- the largest revision with its date, from one row (the first date, where two are as large)
        per AS (SELECT unique_id, count(*) AS n_dates, avg(abs(revision)) AS mean_abs_revision,
                       arg_max({{'revision': revision, 'ds': ds}}, {{'size': abs(revision), 'early': -epoch_us(ds)}})
                           AS largest, avg(width_change) AS mean_width_change
                FROM pairs GROUP BY unique_id),
        -- each forecast series has a step 1, in the first row groups of its block (written step by step)
        ids AS (SELECT unique_id FROM read_parquet({now}) WHERE step = 1),
        prev_ids AS (SELECT unique_id FROM read_parquet({then}) WHERE step = 1),
        everyone AS (SELECT unique_id, i.unique_id IS NOT NULL AS now, p.unique_id IS NOT NULL AS before
                     FROM ids i FULL JOIN prev_ids p USING (unique_id))
        SELECT e.unique_id,
               CASE WHEN NOT e.before THEN 'new' WHEN NOT e.now THEN 'gone' WHEN per.n_dates IS NULL THEN 'no_overlap'
                    ELSE 'compared' END AS change,
               coalesce(per.n_dates, 0) AS n_dates, per.mean_abs_revision,
               per.mean_abs_revision / nullif(s.scale, 0) AS scaled_revision, per.largest.revision AS largest_revision,
               per.largest.ds AS largest_revision_ds, per.mean_width_change, s.scale,
               coalesce(per.mean_abs_revision / nullif(s.scale, 0) > ?, false) AS revised, ? AS threshold,
               CAST(? AS DATE) AS previous_as_of, (SELECT run_id FROM read_parquet({then}) LIMIT 1) AS previous_run_id,
               ? AS run_id
        FROM everyone e LEFT JOIN per USING (unique_id) LEFT JOIN scales s USING (unique_id)
        ORDER BY e.unique_id""", params=[inputs.revision_threshold, inputs.revision_threshold, day, inputs.run_id])
    _write(table, REVISION_SCHEMA, inputs.staging / "revisions.parquet")
    counts = con.execute("""
        SELECT count(*) FILTER (WHERE change = 'compared'), count(*) FILTER (WHERE revised),
               count(*) FILTER (WHERE change = 'new'), count(*) FILTER (WHERE change = 'gone')
        FROM read_parquet(?)""", [str(inputs.staging / "revisions.parquet")]).fetchone()
    top = con.execute(f"""
        SELECT unique_id, round(scaled_revision, 4) AS scaled_revision, round(largest_revision, 4) AS largest_revision,
               CAST(largest_revision_ds AS VARCHAR) AS largest_revision_ds
        FROM read_parquet(?) WHERE scaled_revision IS NOT NULL ORDER BY scaled_revision DESC, unique_id
        LIMIT {MOST_REVISED}""", [str(inputs.staging / "revisions.parquet")])
    names = [column[0] for column in top.description]
    compared, revised, new, gone = counts or (0, 0, 0, 0)
    return MonitorSummary(previous_as_of=day, series_compared=compared, series_revised=revised, series_new=new,
                          series_gone=gone, most_revised=[dict(zip(names, row, strict=True)) for row in top.fetchall()])


@dataclasses.dataclass(frozen=True)
class _Record:
    """What a run with monitoring left in its manifest: how far its actuals reached, and the earlier run whose
    state it continued (None: it read every earlier forecast of its lookback) with that run's ``actuals_through``."""

    as_of: date
    actuals_through: datetime
    state_as_of: date | None
    scored_from: datetime | None


def _records(inputs: MonitorInputs, since: date) -> list[_Record]:
    """The job's runs from ``since`` on whose monitoring ran (their manifest's record has ``actuals_through``),
    oldest first: only manifests of the lookback and after are opened."""
    found = []
    for path in (inputs.output_root / "runs" / f"job={inputs.job}").glob("as_of=*/*.parquet"):
        match = _AS_OF.match(path.parent.name)
        try:
            day = date.fromisoformat(match.group(1)) if match else None
        except ValueError:
            continue
        if day is None or day < since or "monitoring" not in pq.read_schema(path).names:
            continue
        table = pq.read_table(path, columns=["monitoring"])
        record = json.loads(table.column("monitoring")[0].as_py() or "{}") if table.num_rows == 1 else {}
        if not record.get("actuals_through"):
            continue
        found.append(_Record(
            as_of=day, actuals_through=datetime.fromisoformat(record["actuals_through"]),
            state_as_of=date.fromisoformat(record["state_as_of"]) if record.get("state_as_of") else None,
            scored_from=datetime.fromisoformat(record["scored_from"]) if record.get("scored_from") else None))
    return sorted(found, key=lambda r: r.as_of)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Which points this run scores: the candidates' query, the last target date it may score, and the state
    it continues."""

    candidates: str
    through: datetime
    state: _Record | None
    kept_pending: Path | None = None  # a re-run's: the points its earlier run left pending, pending still


def _plan(inputs: MonitorInputs, earlier: list[tuple[date, Path]], through: datetime) -> _Plan | None:
    """The points this run scores, or None when they are a later run's.

    A point is scored once, by the first run (in ``as_of`` order) whose input holds its actual. Each run
    continues the state of the latest earlier run with monitoring: that run's ``actuals_through`` and its
    pending points. A re-run of an ``as_of`` that later runs followed changes nothing they scored: when the
    next of them continued this ``as_of``'s state, this run scores up to where that state ended, less the
    points the earlier run of this ``as_of`` left pending (the later runs took those: they stay pending here, for
    a re-run of the later run); when it continued an
    earlier state, every point here was its (this ``as_of`` is new, or its run had no monitoring).
    """
    records = _records(inputs, since=earlier[0][0])
    later = next((r for r in records if r.as_of > inputs.as_of), None)
    own_pending = None
    if later is not None:
        if later.state_as_of != inputs.as_of or later.scored_from is None:
            return None
        through = min(through, later.scored_from)
        own_pending = partition_dir(inputs.output_root, "monitor_pending", inputs.job, inputs.as_of.isoformat()) \
            / DATA_FILE
    state = next((r for r in reversed(records) if r.as_of < inputs.as_of), None)
    query = _candidates(inputs, earlier, state, through)
    if own_pending is None or not own_pending.is_file():
        return _Plan(candidates=query, through=through, state=state)
    # The published file is read as it is: this run's pending goes to staging, and replaces it only at publish.
    query = (f"SELECT * FROM ({query}) ANTI JOIN (SELECT unique_id, forecast_as_of, ds FROM read_parquet("
             f"{_files([own_pending])}, hive_partitioning = false)) USING (unique_id, forecast_as_of, ds)")
    return _Plan(candidates=query, through=through, state=state, kept_pending=own_pending)


def _realized(con: duckdb.DuckDBPyConnection, inputs: MonitorInputs,
              earlier: list[tuple[date, Path]]) -> tuple[int, int, _Plan | None]:
    """Stages ``realized_accuracy.parquet`` and ``realized_accuracy_by_series.parquet``: the sums of every point of
    the ``earlier`` forecasts this run has the actual for and no other run scores, and ``monitor_pending.parquet``:
    those it could not score yet; returns (forecast runs, points) scored and the plan followed (None: the points
    are a later run's, and this run leaves no state).

    The points stream from the Parquet files through one join and one aggregation (two grouping sets); they are
    never materialised: at a million series a nightly job scores about ``horizon`` million points.
    """
    span = _span(inputs.actuals)
    if span is None:
        return 0, 0, None
    if not earlier:  # nothing to score; the next run continues from here
        return 0, 0, _Plan(candidates=_NO_CANDIDATES, through=span[1], state=None)
    plan = _plan(inputs, earlier, span[1])
    if plan is None:
        return 0, 0, None
    first = _timestamp(span[0])
    [(candidates, earliest)] = con.execute(f"SELECT count(*), min(ds) FILTER (WHERE ds >= {first}) "
                                           f"FROM ({plan.candidates})").fetchall()
    if not candidates:
        _pending(con, plan, inputs.staging / "monitor_pending.parquet")
        return 0, 0, plan
    # One scan of the input for the actuals of the candidates' target dates (the seasonal-naive forecasts came
    # with the forecasts, made from the same history as they were), of the series this run forecast, each with
    # its scale: the points then need one join.
    con.execute(_TAIL)
    if earliest is not None:
        con.execute(f"INSERT INTO tail SELECT unique_id, ds, y, m, scale FROM read_parquet({_files(inputs.actuals)}) "
                    "JOIN scales USING (unique_id) WHERE ds >= ? AND ds <= ? AND y IS NOT NULL",
                    [earliest, plan.through])
    sums = con.sql(_SCORE_SQL.format(candidates=plan.candidates, first=first)).to_arrow_table()
    per_cell = sums.filter(pc.field("per_cell"))
    points = int(pc.sum(per_cell.column("n_points")).as_py() or 0)
    if points:
        _write_table(per_cell.append_column("run_id", pa.array([inputs.run_id] * per_cell.num_rows, pa.string())),
                     REALIZED_SCHEMA, inputs.staging / "realized_accuracy.parquet")
        per_series = sums.filter(~pc.field("per_cell"))
        _write_table(per_series.append_column("run_id", pa.array([inputs.run_id] * per_series.num_rows, pa.string())),
                     REALIZED_SERIES_SCHEMA, inputs.staging / "realized_accuracy_by_series.parquet")
    if points < candidates or plan.kept_pending:
        _pending(con, plan, inputs.staging / "monitor_pending.parquet")
    runs = len(set(per_cell.column("forecast_as_of").to_pylist()))
    return runs, points, plan


def _timestamp(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def _candidates(inputs: MonitorInputs, earlier: list[tuple[date, Path]], state: _Record | None,
                through: datetime) -> str:
    """The query of the points that may be scored now: forecast points up to ``through``.

    Without a state, every point of the ``earlier`` forecasts. With the state of the latest earlier run with
    monitoring: the forecasts since that run whole, the earlier ones only past the actuals it had (a forecast
    that ends before them is not read at all), and its pending points. The same points either way, the second
    without reading settled forecasts again.
    """
    upto = _timestamp(through)

    def read(paths: list[Path]) -> str:  # forecasts published before their seasonal_naive column: it is empty
        naive = "seasonal_naive" if any("seasonal_naive" in pq.read_schema(p).names for p in paths) else \
            "CAST(NULL AS DOUBLE) AS seasonal_naive"
        return (f"SELECT unique_id, CAST(as_of AS DATE) AS forecast_as_of, step, ds, cutoff, forecast, "
                f"{', '.join(QUANTILE_COLUMNS)}, {naive}, run_id AS forecast_run_id FROM read_parquet("
                f"{_files(paths)}, hive_partitioning = true, union_by_name = true)")

    if state is None:
        parts = [f"{read([p for _, p in earlier])} WHERE ds <= {upto}"]
    else:
        since = [path for day, path in earlier if day >= state.as_of]
        before = [path for day, path in earlier if day < state.as_of and _last_ds(path) > state.actuals_through]
        settled = _timestamp(state.actuals_through)
        pending = partition_dir(inputs.output_root, "monitor_pending", inputs.job, state.as_of.isoformat()) / DATA_FILE
        parts = [*([f"{read(since)} WHERE ds <= {upto}"] if since else []),
                 *([f"{read(before)} WHERE ds > {settled} AND ds <= {upto}"] if before else []),
                 *([f"SELECT {', '.join(PENDING_SCHEMA.names)} FROM read_parquet({_files([pending])}, "
                    f"hive_partitioning = false) WHERE forecast_as_of >= DATE '{earlier[0][0].isoformat()}' "
                    f"AND ds <= {upto}"] if pending.is_file() else [])]
    return " UNION ALL ".join(parts) if parts else _NO_CANDIDATES


def _pending(con: duckdb.DuckDBPyConnection, plan: _Plan, path: Path) -> None:
    """Stages the candidates not scored (yet): their actual missing, or their series not in this input; and a
    re-run's kept pending points."""
    con.execute(_TAIL)
    columns = ", ".join(PENDING_SCHEMA.names)
    kept = (f" UNION ALL SELECT {columns} FROM read_parquet({_files([plan.kept_pending])}, hive_partitioning = false)"
            if plan.kept_pending else "")
    query = con.sql(f"""
        SELECT {columns} FROM ({plan.candidates}) c
        ANTI JOIN tail USING (unique_id, ds){kept}""")
    if _write(query, PENDING_SCHEMA, path) == 0:
        path.unlink()


_DUCK = {pa.string(): "VARCHAR", pa.date32(): "DATE", pa.int32(): "INTEGER", pa.timestamp("us"): "TIMESTAMP",
         pa.float64(): "DOUBLE"}
# The actuals this run scores with: of the series it forecast, at the candidates' target dates (empty where
# there is nothing to score).
_TAIL = "CREATE TEMP TABLE IF NOT EXISTS tail (unique_id VARCHAR, ds TIMESTAMP, y DOUBLE, m INTEGER, scale DOUBLE)"
_NO_CANDIDATES = "SELECT " + ", ".join(f"CAST(NULL AS {_DUCK[f.type]}) AS {f.name}" for f in PENDING_SCHEMA) + \
    " WHERE false"


def _last_ds(path: Path) -> datetime:
    """The last target date of a forecasts file, from its footer (the end of time when it has no statistics)."""
    span = _span([path])
    return span[1] if span else datetime.max


def _span(paths: list[Path]) -> tuple[datetime, datetime] | None:
    """The first and last timestamp of the input, from the Parquet footers' statistics (no data read)."""
    lows, highs = [], []
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        column = meta.schema.names.index(DS)
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(column).statistics
            if stats is None or not stats.has_min_max:
                return datetime.min, datetime.max
            lows.append(stats.min)
            highs.append(stats.max)
    return (min(lows), max(highs)) if lows else None


# The pinball losses summed over q10..q90: max(t (y - q), (t - 1) (y - q)) = t (y - q) + max(q - y, 0), so the
# sum is sum(t) y - sum(t q) + sum(max(q - y, 0)): one comparison per quantile instead of two products and a max.
_PINBALL = (f"{sum(QUANTILE_LEVELS) / 100!r} * y - ("
            + " + ".join(f"{level / 100!r} * {q}" for level, q in zip(QUANTILE_LEVELS, QUANTILE_COLUMNS, strict=True))
            + ") + " + " + ".join(f"greatest({q} - y, 0)" for q in QUANTILE_COLUMNS))

# Each scored point: the actual, and the errors of the forecast and of the seasonal-naive forecast published
# beside it; summed per (forecast run, step) and per series, two aggregations of the points computed once. A
# series has one scale: its scaled sums are its sums divided by it (fewer sums per series, the costly grouping).
_SCORE_SQL = f"""
    WITH points AS MATERIALIZED (
        SELECT unique_id, forecast_as_of, step, ds, forecast_run_id, abs(y) AS abs_y, scale, m,
               abs(y - forecast) AS abs_error, (y - forecast) ^ 2 AS squared_error,
               CASE WHEN abs(y) + abs(forecast) = 0 THEN 0 ELSE abs(y - forecast) / (abs(y) + abs(forecast)) END
                   AS smape,
               abs(y - forecast) / nullif(scale, 0) AS scaled_error,
               ({_PINBALL}) / {len(QUANTILE_COLUMNS)} AS quantile_loss,
               q10 <= y AND y <= q90 AS covered,
               abs(y - sn) AS sn_abs_error, (y - sn) ^ 2 AS sn_squared_error,
               CASE WHEN sn IS NULL THEN NULL WHEN abs(y) + abs(sn) = 0 THEN 0
                    ELSE abs(y - sn) / (abs(y) + abs(sn)) END AS sn_smape,
               abs(y - sn) / nullif(scale, 0) AS sn_scaled_error
        FROM (SELECT c.*, c.seasonal_naive AS sn, a.m, a.y, a.scale FROM ({{candidates}}) c
              JOIN tail a USING (unique_id, ds) WHERE c.ds >= {{first}})),
    per_series AS (
        SELECT unique_id, min(forecast_as_of) AS first_forecast_as_of, max(forecast_as_of) AS last_forecast_as_of,
               count(*) AS n_points, sum(abs_error) AS sum_abs_error, sum(squared_error) AS sum_squared_error,
               sum(smape) AS sum_smape, sum(quantile_loss) AS sum_quantile_loss, sum(abs_y) AS sum_abs_y,
               count(*) FILTER (WHERE covered) AS n_covered, count(sn_abs_error) AS n_sn,
               coalesce(sum(sn_abs_error), 0) AS sum_sn_abs_error,
               coalesce(sum(sn_squared_error), 0) AS sum_sn_squared_error, coalesce(sum(sn_smape), 0) AS sum_sn_smape,
               coalesce(sum(abs_error) FILTER (WHERE sn_abs_error IS NOT NULL), 0) AS sum_paired_abs_error,
               any_value(scale) AS scale, any_value(m) AS season_length
        FROM points GROUP BY unique_id)
    SELECT true AS per_cell, forecast_as_of, step, forecast_run_id, min(ds) AS first_ds, max(ds) AS last_ds,
           count(*) AS n_points, sum(abs_error) AS sum_abs_error, sum(squared_error) AS sum_squared_error,
           sum(smape) AS sum_smape, count(scaled_error) AS n_scaled,
           coalesce(sum(scaled_error), 0) AS sum_scaled_error, sum(quantile_loss) AS sum_quantile_loss,
           sum(abs_y) AS sum_abs_y, count(*) FILTER (WHERE covered) AS n_covered, count(sn_abs_error) AS n_sn,
           coalesce(sum(sn_abs_error), 0) AS sum_sn_abs_error,
           coalesce(sum(sn_squared_error), 0) AS sum_sn_squared_error,
           coalesce(sum(sn_smape), 0) AS sum_sn_smape, count(sn_scaled_error) AS n_sn_scaled,
           coalesce(sum(sn_scaled_error), 0) AS sum_sn_scaled_error,
           coalesce(sum(scaled_error) FILTER (WHERE sn_scaled_error IS NOT NULL), 0) AS sum_paired_scaled_error
    FROM points GROUP BY forecast_as_of, step, forecast_run_id
    UNION ALL BY NAME
    SELECT false AS per_cell, unique_id, first_forecast_as_of, last_forecast_as_of, n_points, sum_abs_error,
           sum_squared_error, sum_smape, CASE WHEN nullif(scale, 0) IS NULL THEN 0 ELSE n_points END AS n_scaled,
           coalesce(sum_abs_error / nullif(scale, 0), 0) AS sum_scaled_error, sum_quantile_loss, sum_abs_y,
           n_covered, n_sn, sum_sn_abs_error, sum_sn_squared_error, sum_sn_smape,
           CASE WHEN nullif(scale, 0) IS NULL THEN 0 ELSE n_sn END AS n_sn_scaled,
           coalesce(sum_sn_abs_error / nullif(scale, 0), 0) AS sum_sn_scaled_error,
           coalesce(sum_paired_abs_error / nullif(scale, 0), 0) AS sum_paired_scaled_error, scale, season_length
    FROM per_series
    ORDER BY per_cell DESC, unique_id, forecast_as_of, step"""

# Realized accuracy of a group of rows of realized_accuracy (or realized_accuracy_by_series), as the backtest
# defines each metric (pipeline/scoring.py); the skill compares TimesFM and seasonal naive on the points both have.
REALIZED_METRICS = (
    "sum(n_points) AS n_points, sum(sum_abs_error) / sum(n_points) AS mae, "
    "sqrt(sum(sum_squared_error) / sum(n_points)) AS rmse, sum(sum_smape) / sum(n_points) AS smape, "
    "sum(sum_scaled_error) / nullif(sum(n_scaled), 0) AS mase, "
    "2 * sum(sum_quantile_loss) / nullif(sum(sum_abs_y), 0) AS scaled_crps, "
    "CAST(sum(n_covered) AS DOUBLE) / sum(n_points) AS coverage_80, "
    "sum(sum_sn_abs_error) / nullif(sum(n_sn), 0) AS seasonal_naive_mae, "
    "sum(sum_sn_scaled_error) / nullif(sum(n_sn_scaled), 0) AS seasonal_naive_mase, "
    "1 - sum(sum_paired_scaled_error) / nullif(sum(sum_sn_scaled_error), 0) AS skill_vs_seasonal_naive"
)


def _latest(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, float]:
    """Accuracy over the points this run scored: the latest actuals, against every earlier forecast of them
    (one point per series and live forecast run on a nightly job), so the figures trail the job's recent
    forecasts without reading earlier partitions (the catalog's views hold the longer windows)."""
    if not path.is_file():
        return {}
    row = con.execute(f"SELECT {REALIZED_METRICS} FROM read_parquet(?)", [str(path)])
    names = [column[0] for column in row.description]
    values = dict(zip(names, row.fetchone() or (), strict=True))
    return {name: round(float(value), 6) for name, value in values.items()
            if value is not None and name not in ("n_points", "mae", "rmse", "seasonal_naive_mae")}


def _write_table(table: pa.Table, schema: pa.Schema, path: Path) -> None:
    pq.write_table(table.select(schema.names).cast(schema), path, **parquet_options(schema))


def _write(result: duckdb.DuckDBPyRelation, schema: pa.Schema, path: Path) -> int:
    """Streams a query's rows into ``path`` with the contract's types (the columns come in its order); returns
    the rows written. Batch by batch: the rows of a large job never sit in memory at once."""
    rows = 0
    with pq.ParquetWriter(path, schema, **parquet_options(schema)) as writer:
        for batch in result.to_arrow_reader(_BATCH_ROWS):
            writer.write_table(pa.Table.from_batches([batch]).rename_columns(schema.names).cast(schema))
            rows += batch.num_rows
    return rows
