"""The monitoring stage alone on consecutive nights of one job: its seconds per night, and where they go.

    python benchmarks/monitor_benchmark.py --series 50000 --nights 32          # the steady state (horizon 28)
    python benchmarks/monitor_benchmark.py --series 200000 --nights 3

Each night k the job's input is one day longer (series of 200 + k daily points, seeded synthetic values), its
forecasts are written as the forecast stage stages them (horizon 28, quantiles around the point; no model:
this measures monitoring, not the engine), then ``monitor_job`` runs (timed) and its staged tables, the
forecasts and a run manifest with its monitoring record are published as the flow publishes them, so the
next night compares with and scores what this one published. From night ``horizon + 1`` on, the job has
``horizon`` live forecasts and each night scores one point of each per series: the steady state.

It prints a line per night: the stage's seconds, its parts (the ``pipeline.monitoring`` functions it calls),
the points scored and the rows and bytes it published. ``scale_benchmark.py monitor`` measures the stage in
whole flow runs (its share of a run); this one isolates it, so a change to it can be timed in minutes.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pipeline.monitoring as monitoring  # noqa: E402
from forecast_model import ForecastResult  # noqa: E402
from pipeline.contracts import INPUT_SCHEMA, RUNS_SCHEMA  # noqa: E402
from pipeline.forecasting import SCALES_FILE, Chunk, ForecastSink  # noqa: E402
from pipeline.publish import DATA_FILE, partition_dir, publish_tables  # noqa: E402
from pipeline.tables import parquet_options  # noqa: E402

JOB = "bench"
LENGTH = 200
CHUNK = 4096  # series per engine chunk (the tiny model on CPU: batch 256 x 16)
START = datetime(2026, 1, 1)
PARTS = ("_scales", "_revisions", "_realized", "_latest")
_spent: dict[str, float] = defaultdict(float)


def _timed(name: str, function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _spent[name] += time.perf_counter() - began
    return wrapper


def _write(columns: dict[str, Any], schema: pa.Schema, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), path, **parquet_options(schema))


def _night(values: np.ndarray, ids: np.ndarray, night: int, horizon: int, workdir: Path, root: Path,
           warm: bool = False) -> dict:
    n, length = len(ids), LENGTH + night
    days = np.array([START + timedelta(days=t) for t in range(length)], dtype="datetime64[us]")
    staging = workdir / f"staging-{night}"
    staging.mkdir()
    if not warm:
        with pq.ParquetWriter(staging / "input.parquet", INPUT_SCHEMA, **parquet_options(INPUT_SCHEMA)) as writer:
            for start in range(0, n, 20_000):  # 4M rows at a time: a string column past 2 GB overflows
                part = slice(start, start + 20_000)
                count = len(ids[part])
                writer.write_table(pa.table({"unique_id": np.repeat(ids[part], length), "ds": np.tile(days, count),
                                             "y": values[part, :length].reshape(-1)}, schema=INPUT_SCHEMA))
    rng = np.random.default_rng(night)
    last = values[:, length - 1]
    point = (last[:, None] + rng.normal(0, 1, (n, horizon)) * np.sqrt(np.abs(last))[:, None]).astype(np.float32)
    spread = (0.05 * np.abs(last)[:, None, None] * (np.arange(9) - 4)[None, None, :]).astype(np.float32)
    run_id = f"run-{night:03d}"
    accepted = pd.DataFrame({"unique_id": ids, "freq": "D", "last_ds": np.full(n, days[-1])})
    # Written as the forecast stage writes them: the engine's chunks through the sink.
    with ForecastSink(staging / "forecasts.parquet", model="TimesFM", run_id=run_id,
                      created_at=datetime(2026, 12, 7, tzinfo=timezone.utc), scales=staging / SCALES_FILE) as sink:
        for start in range(0, n, CHUNK):
            part = slice(start, start + CHUNK)
            sink(Chunk(accepted.iloc[part].reset_index(drop=True), list(values[part, :length]), []),
                 ForecastResult(point[part], point[part], point[part][:, :, None] + spread[part]))
    as_of = (START + timedelta(days=length)).date()
    if warm:  # the forecasts and the state a run with monitoring leaves, without running it (nothing read of it)
        publish_tables(staging, root, JOB, as_of.isoformat(), {"forecasts": DATA_FILE})
        record = {"actuals_through": str(days[-1].astype(datetime)),
                  **({"state_as_of": (as_of - timedelta(days=1)).isoformat(),
                      "scored_from": str(days[-2].astype(datetime))} if night > 1 else {})}
        _manifest(root, as_of, run_id, record)
        shutil.rmtree(staging)
        return {"night": night, "as_of": as_of.isoformat(), "warm": True}
    inputs = monitoring.MonitorInputs(
        output_root=root, job=JOB, as_of=as_of, run_id=run_id, forecasts=staging / "forecasts.parquet",
        scales=[staging / SCALES_FILE], actuals=[staging / "input.parquet"], staging=staging,
        revision_threshold=0.5, lookback_runs=60)
    _spent.clear()
    began = time.perf_counter()
    summary = monitoring.monitor_job(inputs)
    seconds = time.perf_counter() - began
    written = {table: pq.ParquetFile(staging / f"{table}.parquet").metadata.num_rows for table in summary.tables}
    size = sum((staging / f"{table}.parquet").stat().st_size for table in summary.tables)
    publish_tables(staging, root, JOB, as_of.isoformat(), dict.fromkeys(["forecasts", *summary.tables], DATA_FILE))
    _manifest(root, as_of, run_id, summary.record())
    shutil.rmtree(staging)
    return {"night": night, "as_of": as_of.isoformat(), "seconds": round(seconds, 3),
            "parts": {name: round(value, 3) for name, value in _spent.items()},
            "points_scored": summary.points_scored, "series_compared": summary.series_compared,
            "rows_written": written, "mb_written": round(size / 1e6, 1)}


def _manifest(root: Path, as_of: date, run_id: str, record: dict[str, Any]) -> None:
    """The run manifest, with what monitoring reads of it: its record and when it was published."""
    manifest = {name: pa.nulls(1, field.type) for name, field in zip(RUNS_SCHEMA.names, RUNS_SCHEMA, strict=True)}
    manifest.update(run_id=pa.array([run_id]), monitoring=pa.array([json.dumps(record)]),
                    created_at=pa.array([datetime.now(timezone.utc)], pa.timestamp("us", tz="UTC")))
    _write(manifest, RUNS_SCHEMA, partition_dir(root, "runs", JOB, as_of.isoformat()) / DATA_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=50_000)
    parser.add_argument("--nights", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the job's published outputs (path printed)")
    parser.add_argument("--warm", type=int, default=0,
                        help="publish the first WARM nights' forecasts and monitoring state without running the "
                             "stage (its work there is not read later): reaches the steady state in minutes at 1M")
    args = parser.parse_args()
    for name in PARTS:
        if hasattr(monitoring, name):
            setattr(monitoring, name, _timed(name, getattr(monitoring, name)))
    rng = np.random.default_rng(0)
    level = rng.uniform(10, 1000, (args.series, 1))
    t = np.arange(LENGTH + args.nights)
    values = level * (1 + 0.3 * np.sin(2 * np.pi * t / 7)) + rng.normal(0, 1, (args.series, len(t))) * np.sqrt(level)
    ids = np.array([f"S{i // 1000:04d}-P{i % 1000:05d}" for i in range(args.series)], dtype=object)
    workdir = Path(tempfile.mkdtemp(prefix="monitor-bench-", dir=args.workdir))
    try:
        for night in range(1, args.nights + 1):
            print(json.dumps(_night(values, ids, night, args.horizon, workdir, workdir / "out",
                                    warm=night <= args.warm)), flush=True)
    finally:
        if args.keep:
            print(f"outputs kept in {workdir / 'out'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
