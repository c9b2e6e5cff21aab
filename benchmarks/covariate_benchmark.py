"""What covariates cost: the same panel forecast plain and with covariates, through ``forecast run``.

    python benchmarks/covariate_benchmark.py                              # 20,000 series x 200 points
    python benchmarks/covariate_benchmark.py --series 500 --length 60     # a smoke size

The panel (benchmarks/panel.py, seeded, synthetic) gets a numerical covariate ``price`` and a categorical
``promo`` (0/1) on every row, and ``horizon`` future rows per series (``price`` and ``promo``, no ``y``).
The plain run reads the history rows only; the covariate run reads every row with ``price``, ``promo`` and the
calendar feature ``day_of_week``. Both run the tiny random checkpoint (figures about the pipeline, never about
TimesFM-2.0's cost or accuracy) with an ephemeral Prefect server and a SQLite MLflow store, one after the
other in fresh processes. It prints the stage seconds each run's manifest records and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.panel import write_panel  # noqa: E402

STAGES = ("load", "validate", "forecast", "forecast.engine", "total")


def covariate_panel(workdir: Path, series: int, length: int, horizon: int) -> tuple[Path, Path]:
    """The history-only panel and the panel with covariates and future rows, as Parquet."""
    history = pd.read_parquet(write_panel(workdir / "panel.parquet", series, length))
    rng = np.random.default_rng(1)
    last = history["ds"].max()
    ids = history["unique_id"].unique()
    future = pd.DataFrame({"unique_id": np.repeat(ids, horizon),
                           "ds": np.tile(pd.date_range(last, periods=horizon + 1, freq="D")[1:], len(ids)),
                           "y": np.nan})
    full = pd.concat([history, future]).sort_values(["unique_id", "ds"], ignore_index=True)
    full["price"] = 10 + rng.normal(0, 1, len(full)).cumsum() % 5
    full["promo"] = (rng.random(len(full)) < 0.1).astype(np.int64)
    plain, covariates = workdir / "plain.parquet", workdir / "covariates.parquet"
    history.to_parquet(plain, index=False)
    full.to_parquet(covariates, index=False)
    return plain, covariates


def forecast_run(source: Path, workdir: Path, checkpoint: Path, horizon: int, extra: list[str]) -> dict[str, float]:
    """One ``forecast run`` in a fresh process; its wall seconds and its manifest's stage timings."""
    env = {**os.environ, "PREFECT_HOME": str(workdir / "prefect"), "FORECAST_DATA_DIR": str(workdir / "data"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}", "FORECAST_DATA_ROOTS": str(workdir)}
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "forecast"), "run", "--source", str(source),
                           "--horizon", str(horizon), "--checkpoint", str(checkpoint), "--no-monitor",
                           "--job", source.stem, "--output-root", str(workdir / "out"), *extra],
                          env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    timings = json.loads(pd.read_parquet(summary["outputs"]["runs"])["timings"].iloc[0])
    return {"wall": wall, **{stage: timings.get(stage, float("nan")) for stage in STAGES}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=20_000)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="covariate-benchmark-") as temporary:
        workdir = Path(temporary)
        subprocess.run([str(Path(sys.executable).parent / "forecast"), "make-tiny-checkpoint",
                        str(workdir / "tiny")], check=True, capture_output=True)
        plain, covariates = covariate_panel(workdir, args.series, args.length, args.horizon)
        figures = {"plain": forecast_run(plain, workdir, workdir / "tiny", args.horizon, []),
                   "covariates": forecast_run(covariates, workdir, workdir / "tiny", args.horizon,
                                              ["--dynamic-numerical", "price", "--dynamic-categorical", "promo",
                                               "--calendar", "day_of_week"])}
    print(f"{args.series:,} series x {args.length} points, horizon {args.horizon}: seconds")
    print(f"{'stage':<16}{'plain':>10}{'covariates':>12}{'ratio':>8}")
    for stage in ("wall", *STAGES):
        a, b = figures["plain"][stage], figures["covariates"][stage]
        print(f"{stage:<16}{a:>10.2f}{b:>12.2f}{b / a if a else float('nan'):>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"series": args.series, "length": args.length, "horizon": args.horizon,
                                         **figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
