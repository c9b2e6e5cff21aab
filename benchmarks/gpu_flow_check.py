"""One-shot device check of the whole batch-forecast flow (run by benchmarks/gpu_flow_check.sh).

    python benchmarks/gpu_flow_check.py --device gpu --series 20000 --arch 500m --out "$OUT"
    python benchmarks/gpu_flow_check.py --device cpu --series 300 --arch tiny          # CPU smoke test

Runs ``batch_forecast`` (ephemeral Prefect server, SQLite MLflow store, Parquet outputs, all under a temp
directory) on the sample data, then on a seeded panel (benchmarks/panel.py, daily, 200 points) in the
device's default precision and again with ``ModelParams(precision="fp32")``. A 256-series subset of each
published panel forecast is compared with the same series forecast by the engine on this machine's CPU in
fp32: relative error is ``max|device - cpu| / max|cpu|`` per series over the point forecast and the nine
quantiles, worst series shown. Stage timings come from each run's published manifest (the ``runs`` table).

``--arch 500m``: the TimesFM-2.0-500m architecture (50 layers, 1280 dims, 16 heads, context 2048) with the
seeded random weights of engine_benchmark.py (RMSNorm scales 1, default init elsewhere: sane activation
scales, the weights docs/PERFORMANCE.md measured tf32 on), marked as random so every run records it.
``--arch tiny``: make_tiny_checkpoint's 2-layer model. Random weights: nothing here is about accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.panel import write_panel  # noqa: E402

AS_OF = date(2026, 11, 20)  # the panel ends on 2026-11-01
SAMPLE = REPO / "data" / "samples" / "us_macro_quarterly.csv"
DEFAULT_BOUND, FP32_BOUND = 5e-3, 1e-4  # docs/PERFORMANCE.md: tf32 measured 8.2e-4, fp32 2.6e-6
_STARTED = time.perf_counter()


def log(message: str) -> None:
    """A progress line with the wall-clock time and the seconds since the start."""
    print(f"[{datetime.now():%H:%M:%S} +{time.perf_counter() - _STARTED:6.1f}s] {message}", flush=True)


@dataclass
class FlowRun:
    """One flow run as the check saw it: its summary and published manifest, or the error it raised."""

    name: str
    series: int
    wall_seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def make_checkpoint(directory: Path, arch: str) -> Path:
    """Writes the random-weight checkpoint (marked as random, so runs record it) and returns its directory."""
    from forecast_model import ModelHparams, make_tiny_checkpoint
    from forecast_model.checkpoint import RANDOM_WEIGHTS_MARKER

    if arch == "tiny":
        return make_tiny_checkpoint(directory).weights.parent
    from benchmarks.engine_benchmark import random_checkpoint

    random_checkpoint(directory, ModelHparams(num_layers=50, model_dims=1280, num_heads=16, context_len=2048))
    (directory / RANDOM_WEIGHTS_MARKER).write_text("Seeded random weights (benchmarks/gpu_flow_check.py).\n")
    return directory


def flow_environment(workdir: Path, checkpoint: Path) -> None:
    """Points Prefect, MLflow and the settings at the work directory; call before Prefect is imported."""
    os.environ.pop("PREFECT_API_URL", None)  # always the ephemeral server
    os.environ.update({
        "PREFECT_HOME": str(workdir / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",  # a fresh database migrates first
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db", "MLFLOW_DISABLE_TELEMETRY": "true",
        "FORECAST_DATA_DIR": str(workdir / "data"), "FORECAST_DATA_ROOTS": os.pathsep.join([str(REPO), str(workdir)]),
        "HF_HUB_OFFLINE": "1", "TIMESFM20_DEFAULT_CHECKPOINT": str(checkpoint),
    })


def run_flow(name: str, path: Path, series: int, args: argparse.Namespace, precision: str = "auto") -> FlowRun:
    """Runs batch_forecast on one file; a failure is recorded, not raised (the other checks still run)."""
    from flows.batch_forecast import batch_forecast
    from pipeline.params import ModelParams
    from pipeline.sources import FileSource

    run = FlowRun(name, series)
    log(f"flow {name}: {series:,} series from {path.name}, device {args.device}, precision {precision}")
    started = time.perf_counter()
    try:
        summary = batch_forecast(source=FileSource(path=str(path)), horizon=args.horizon, job=name, as_of=AS_OF,
                                 model=ModelParams(device=args.device, precision=precision),  # type: ignore[arg-type]
                                 output_root=str(args.workdir / "outputs"))
    except Exception as exc:  # noqa: BLE001 - reported in the table; device time is too scarce to stop here
        traceback.print_exc()
        run.error = f"{type(exc).__name__}: {str(exc)[:500]}"
        log(f"flow {name}: FAILED ({run.error})")
        return run
    run.wall_seconds = time.perf_counter() - started
    run.summary = summary.model_dump(mode="json")
    record = pd.read_parquet(summary.outputs["runs"]).iloc[0].to_dict()
    run.manifest = {k: json.loads(v) if k in ("timings", "parameters", "versions") else v
                    for k, v in record.items() if k in ("timings", "device", "precision", "random_weights",
                                                        "versions", "series_ok", "series_failed")}
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in run.manifest["timings"].items())
    log(f"flow {name}: {summary.series_ok:,} of {summary.series_in:,} ok on {summary.device} ({summary.precision}, "
        f"batch {summary.batch_size}) in {run.wall_seconds:.1f}s = {summary.series_ok / run.wall_seconds:,.1f} "
        f"series/s end to end, {summary.series_per_second:,.1f} series/s inference; stages: {timings}")
    return run


def cpu_reference(run: FlowRun, panel: Path, ids: list[str], args: argparse.Namespace) -> pd.DataFrame:
    """The forecast table of ``ids`` from the engine on this machine's CPU in fp32, built as the flow builds it."""
    from forecast_model import EngineConfig, load_engine
    from pipeline.forecasting import build_forecast_table, run_engine, series_values
    from pipeline.settings import load_settings

    status = pd.read_parquet(run.summary["outputs"]["series_status"], filters=[("unique_id", "in", ids)])
    accepted = status[status["status"] == "ok"].reset_index(drop=True)
    frame = pd.read_parquet(panel, filters=[("unique_id", "in", ids)]).sort_values(["unique_id", "ds"])
    engine = load_engine(EngineConfig(checkpoint=str(args.checkpoint), device="cpu", precision="fp32"))
    result = run_engine(engine, frame, accepted, args.horizon, load_settings().context_len)
    return build_forecast_table(accepted, result, history=series_values(frame, accepted["unique_id"]),
                                model="cpu-reference", run_id="cpu-reference", created_at=datetime.now(timezone.utc))


def compare(run: FlowRun, reference: pd.DataFrame, ids: list[str]) -> dict[str, Any]:
    """Worst per-series relative error of a run's published forecasts against the CPU reference."""
    from pipeline.contracts import QUANTILE_COLUMNS

    columns = ["forecast", *QUANTILE_COLUMNS]
    published = pd.read_parquet(run.summary["outputs"]["forecasts"], filters=[("unique_id", "in", ids)])
    both = reference.merge(published, on=["unique_id", "step"], suffixes=("_cpu", ""), validate="one_to_one")
    cpu = both[[f"{c}_cpu" for c in columns]].to_numpy()
    device = both[columns].to_numpy()
    frame = pd.DataFrame({"unique_id": both["unique_id"], "diff": np.abs(device - cpu).max(axis=1),
                          "scale": np.abs(cpu).max(axis=1)}).groupby("unique_id").max()
    errors = frame["diff"] / frame["scale"].clip(lower=1e-12)
    worst = str(errors.idxmax()) if len(errors) else ""
    return {"series": len(errors), "missing": len(ids) - len(errors),
            "rel_error": float(errors.max()) if len(errors) else float("nan"), "worst_series": worst,
            "non_finite": int((~np.isfinite(device)).sum())}


def checks(runs: dict[str, FlowRun], errors: dict[str, dict[str, Any]], args: argparse.Namespace
           ) -> list[tuple[str, str, bool]]:
    """(check, observed, passed) rows of the final table."""
    expected_device, default_precision = ("cuda", "tf32") if args.device == "gpu" else ("cpu", "fp32")
    rows = []
    for run in runs.values():
        ok = run.error is None and run.summary["series_ok"] == run.series and run.summary["series_failed"] == 0
        observed = run.error or f"{run.summary['series_ok']:,}/{run.series:,} ok, {run.summary['series_failed']} failed"
        rows.append((f"flow {run.name}: every series forecast", observed, ok))
        if run.error is None:
            manifest = run.manifest
            rows.append((f"flow {run.name}: manifest device/precision/random weights",
                         f"{manifest['device']} / {manifest['precision']} / {manifest['random_weights']}",
                         manifest["device"].startswith(expected_device) and manifest["random_weights"] and
                         manifest["precision"] == (default_precision if run.name != "panel-fp32" else "fp32")))
            rows.append((f"flow {run.name}: stage timings in the manifest", ", ".join(manifest["timings"]),
                         "forecast" in manifest["timings"]))
            rows.append((f"flow {run.name}: recorded in MLflow, no warnings",
                         f"{run.summary['tracking_status']}, {len(run.summary['warnings'])} warning(s)",
                         run.summary["tracking_status"] == "ok" and not run.summary["warnings"]))
    for name, bound in (("panel", DEFAULT_BOUND), ("panel-fp32", FP32_BOUND)):
        found = errors.get(name)
        observed = (f"{found['rel_error']:.2e} (worst {found['worst_series']}; {found['series']} series, "
                    f"{found['missing']} missing)") if found else "not compared"
        rows.append((f"{name} vs CPU fp32 <= {bound:.0e}", observed,
                     bool(found) and found["missing"] == 0 and found["non_finite"] == 0 and
                     found["rel_error"] <= bound))
    return rows


def describe_device(args: argparse.Namespace) -> dict[str, Any]:
    """Versions and the accelerator, for the log and the JSON summary."""
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "cpu_threads": torch.get_num_threads(), "host": platform.node()}
    if args.device == "gpu" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--series", type=int, default=20_000, help="panel series (200 daily points each)")
    parser.add_argument("--arch", choices=["500m", "tiny"], default="500m")
    parser.add_argument("--subset", type=int, default=256, help="series compared with the CPU reference")
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--out", type=Path, help="where the JSON summary goes (default: the work directory)")
    args = parser.parse_args()
    args.workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="gpu-flow-check-"))).resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    info = describe_device(args)
    log(f"work directory {args.workdir}; " + "; ".join(f"{k} {v}" for k, v in info.items()))
    args.checkpoint = make_checkpoint(args.workdir / "checkpoint", args.arch)
    log(f"checkpoint ({args.arch}, random weights) at {args.checkpoint}")
    panel = write_panel(args.workdir / "panel" / "panel.parquet", args.series, 200, seed=0)
    log(f"panel: {args.series:,} series x 200 daily points")
    flow_environment(args.workdir, args.checkpoint)
    runs = {"sample": run_flow("sample", SAMPLE, 12, args)}
    for name, precision in (("panel", "auto"), ("panel-fp32", "fp32")):
        runs[name] = run_flow(name, panel, args.series, args, precision)
    errors = reference_errors(runs, panel, args)
    return report(runs, errors, info, args)


def reference_errors(runs: dict[str, FlowRun], panel: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Compares each successful panel run with the CPU fp32 forecasts of a seeded subset of its series."""
    rng = np.random.default_rng(1)
    ids = sorted(rng.choice(pd.read_parquet(panel, columns=["unique_id"])["unique_id"].unique(),
                            size=min(args.subset, args.series), replace=False).tolist())
    done = [r for r in runs.values() if r.name.startswith("panel") and r.error is None]
    if not done:
        return {}
    log(f"CPU fp32 reference: {len(ids)} series")
    started = time.perf_counter()
    reference = cpu_reference(done[0], panel, ids, args)
    log(f"CPU fp32 reference done in {time.perf_counter() - started:.1f}s")
    errors = {run.name: compare(run, reference, ids) for run in done}
    for name, found in errors.items():
        log(f"{name} vs CPU fp32: rel. error {found['rel_error']:.2e}, worst series {found['worst_series']}")
    return errors


def report(runs: dict[str, FlowRun], errors: dict[str, dict[str, Any]], info: dict[str, Any],
           args: argparse.Namespace) -> int:
    """Prints the timings and the PASS/FAIL table, writes the JSON summary; 0 when every check passed."""
    print("\nflow runs: stage timings from each run's manifest (total: load start to publish end); other = "
          "process start, Prefect (the first run also starts Prefect's server)")
    for run in runs.values():
        if run.error is None:
            timings = run.manifest["timings"]
            stages = "  ".join(f"{k}={v:.2f}s" for k, v in timings.items())
            staged = sum(v for k, v in timings.items() if k != "total" and "." not in k)  # sub-stages: "forecast.x"
            stages += f"  other={run.wall_seconds - staged:.2f}s"
            print(f"  {run.name:<11} {run.series:>7,} series  {run.wall_seconds:7.1f}s  "
                  f"{run.summary['series_ok'] / run.wall_seconds:>9,.1f} series/s  "
                  f"(inference {run.summary['series_per_second']:,.1f} series/s)  {stages}")
    rows = checks(runs, errors, args)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'check':<{width}}  result  observed")
    for name, observed, passed in rows:
        print(f"{name:<{width}}  {'PASS' if passed else 'FAIL':<6}  {observed}")
    verdict = all(r[2] for r in rows)
    print(f"\n{'PASS' if verdict else 'FAIL'}: {sum(r[2] for r in rows)} of {len(rows)} checks passed "
          f"(random weights: no accuracy is measured)")
    summary = {"passed": verdict, "device": args.device, "arch": args.arch, "series": args.series,
               "horizon": args.horizon, "environment": info, "peak_gpu_memory_mb": peak_gpu_memory_mb(),
               "checks": [{"check": n, "observed": o, "passed": p} for n, o, p in rows],
               "runs": {name: {"series": r.series, "wall_seconds": r.wall_seconds, "error": r.error,
                               "summary": r.summary, "manifest": r.manifest} for name, r in runs.items()},
               "rel_errors": errors}
    out = args.out or args.workdir
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_flow_check.json").write_text(json.dumps(summary, indent=2, default=str))
    log(f"summary written to {out / 'gpu_flow_check.json'}")
    return 0 if verdict else 1


def peak_gpu_memory_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


if __name__ == "__main__":
    sys.exit(main())
