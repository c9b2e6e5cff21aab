"""Anomaly detection against a rolling z-score, on real series with anomalies injected at known places.

    python benchmarks/anomaly_benchmark.py                                  # the tiny random checkpoint
    python benchmarks/anomaly_benchmark.py --checkpoint google/timesfm-2.0-500m-pytorch   # the real weights

The series are the shipped sample (data/samples/us_macro_quarterly.csv: twelve quarterly US macro series,
public domain, see data/samples/README.md). In each series' last ``--window`` quarters, ``--per-series``
points (seeded) are made anomalous, cycling through four kinds, each sized by the series' own volatility
(sigma: the standard deviation of its quarter-on-quarter changes before the window):

- spike: + 6 sigma at one point; dip: - 6 sigma at one point;
- dropout: the value becomes 0 (a feed that sends zeros); counted only where 0 is 6 sigma or more away;
- level shift: + 6 sigma from that point to the end of the window; only its first point is labelled (with
  rolling scoring the next forecasts start from the shifted level, so the later points are not surprising).

Then ``forecast detect`` (the CLI, as a user runs it: rolling scoring, stride 1, every point forecast from
everything before it) scores the windows, and a rolling z-score does the same: |y - mean| / std of the
``--z-history`` points before each one (the injected ones included, as a detector sees them). Reported:
precision, recall and F1 of the flow's flags (anomaly_probability >= threshold) and of the same number of
top z-scores; and precision at k = the number of labelled points, both methods ranked by their score.

With the random tiny checkpoint (the default: nothing can be downloaded here) the figures only check the
plumbing, and the output says so; the real weights give the real comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "us_macro_quarterly.csv"
KINDS = ("spike", "dip", "dropout", "level_shift")
SIZE = 6.0  # sigmas


def inject(frame: pd.DataFrame, window: int, per_series: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The panel with anomalies in each series' last ``window`` points, and the labels (unique_id, ds, kind)."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    kind_index = 0
    for series_id, group in frame.groupby("unique_id", sort=True):
        group = group.sort_values("ds").reset_index(drop=True)
        y = group["y"].to_numpy(dtype=np.float64).copy()
        start = len(y) - window
        sigma = float(np.nanstd(np.diff(y[:start]))) or 1.0
        for position in sorted(rng.choice(np.arange(start + 1, len(y)), size=per_series, replace=False)):
            kind = KINDS[kind_index % len(KINDS)]
            kind_index += 1
            if kind == "spike":
                y[position] += SIZE * sigma
            elif kind == "dip":
                y[position] -= SIZE * sigma
            elif kind == "dropout":
                if abs(y[position]) < SIZE * sigma:
                    continue  # a zero would not stand out from this series
                y[position] = 0.0
            else:
                y[position:] += SIZE * sigma
            labels.append({"unique_id": series_id, "ds": group.loc[position, "ds"], "kind": kind})
        parts.append(group.assign(y=y))
    return pd.concat(parts, ignore_index=True), pd.DataFrame(labels)


def z_scores(frame: pd.DataFrame, scored: pd.DataFrame, history: int) -> pd.Series:
    """|y - mean| / std of the ``history`` points before each scored observation."""
    rolling = frame.sort_values(["unique_id", "ds"]).groupby("unique_id")["y"]
    mean = rolling.transform(lambda s: s.shift(1).rolling(history).mean())
    std = rolling.transform(lambda s: s.shift(1).rolling(history).std())
    z = ((frame["y"] - mean).abs() / std.replace(0, np.nan)).fillna(np.inf)
    keyed = frame.assign(z=z).set_index(["unique_id", "ds"])["z"]
    return keyed.reindex(pd.MultiIndex.from_frame(scored[["unique_id", "ds"]])).reset_index(drop=True)


def scores(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    hits = int((flagged & truth).sum())
    precision = hits / flagged.sum() if flagged.sum() else float("nan")
    recall = hits / truth.sum() if truth.sum() else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
    return {"flags": int(flagged.sum()), "hits": hits, "precision": precision, "recall": recall, "f1": f1}


def top(values: np.ndarray, k: int) -> np.ndarray:
    chosen = np.zeros(len(values), dtype=bool)
    if k > 0:
        chosen[np.argsort(-values, kind="stable")[:k]] = True
    return chosen


def detect(panel: Path, checkpoint: str, window: int, threshold: float, workdir: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "FORECAST_"))}
    env.update({"FORECAST_DATA_DIR": str(workdir / "data"), "PREFECT_HOME": str(workdir / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    forecast = Path(sys.executable).with_name("forecast")
    command = [str(forecast), "detect", "--source", str(panel), "--window", str(window), "--scoring", "rolling",
               "--stride", "1", "--threshold", str(threshold), "--checkpoint", checkpoint, "--job", "injected",
               "--as-of", "2026-11-27", "--max-rejected-fraction", "0"]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise SystemExit(f"forecast detect failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="Checkpoint (default: a tiny random one, for the plumbing only).")
    parser.add_argument("--window", type=int, default=24, help="Quarters scored per series (default 24).")
    parser.add_argument("--per-series", type=int, default=3, help="Anomalies injected per series (default 3).")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--z-history", type=int, default=8, help="Points of each z-score's history (default 8).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="anomaly-benchmark-") as directory:
        workdir = Path(directory)
        random_weights = args.checkpoint is None
        checkpoint = args.checkpoint
        if checkpoint is None:
            sys.path.insert(0, str(REPO))
            from forecast_model import make_tiny_checkpoint

            checkpoint = str(make_tiny_checkpoint(workdir / "tiny").weights.parent)
        frame = pd.read_csv(SAMPLE, parse_dates=["ds"])
        injected, labels = inject(frame, args.window, args.per_series, args.seed)
        panel = workdir / "injected.parquet"
        injected.to_parquet(panel)
        summary = detect(panel, checkpoint, args.window, args.threshold, workdir)
        scored = pd.read_parquet(summary["outputs"]["anomalies"])
        key = pd.MultiIndex.from_frame(labels[["unique_id", "ds"]])
        truth = pd.MultiIndex.from_frame(scored[["unique_id", "ds"]]).isin(key)
        z = z_scores(injected, scored, args.z_history).to_numpy()
        flagged = scored["is_anomaly"].to_numpy()
        k = int(truth.sum())
        result = {
            "checkpoint": checkpoint if not random_weights else "tiny random weights",
            "series": int(scored["unique_id"].nunique()), "points_scored": len(scored), "labelled": k,
            "labels_by_kind": labels["kind"].value_counts().to_dict(),
            "timesfm": scores(flagged, truth), "zscore_same_flags": scores(top(z, int(flagged.sum())), truth),
            "timesfm_precision_at_k": scores(top(scored["anomaly_probability"].to_numpy(), k), truth)["precision"],
            "zscore_precision_at_k": scores(top(z, k), truth)["precision"],
        }
    print(f"anomaly benchmark: {result['series']} series of the shipped sample, {result['points_scored']} points "
          f"scored (rolling, stride 1), {k} labelled {result['labels_by_kind']}, checkpoint {result['checkpoint']}")
    print(f"{'method':<28}{'flags':>7}{'hits':>6}{'precision':>11}{'recall':>8}{'F1':>7}")
    for name, row in ((f"TimesFM (threshold {args.threshold:.2f})", result["timesfm"]),
                      ("rolling z-score, same flags", result["zscore_same_flags"])):
        print(f"{name:<28}{row['flags']:>7}{row['hits']:>6}{row['precision']:>11.3f}{row['recall']:>8.3f}"
              f"{row['f1']:>7.3f}")
    print(f"precision at k={k} (ranked by score): TimesFM {result['timesfm_precision_at_k']:.3f}, "
          f"rolling z-score {result['zscore_precision_at_k']:.3f}")
    if random_weights:
        print("RANDOM WEIGHTS: these figures check the plumbing only and say nothing about TimesFM; run with "
              "--checkpoint google/timesfm-2.0-500m-pytorch (or a local copy) for the real comparison.")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
