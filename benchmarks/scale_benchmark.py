"""Scale-out benchmarks of the sharded-forecast flow: wall time, peak memory, and 1 versus 2 workers.

    python benchmarks/scale_benchmark.py memory --series 1000000        # one process, shards in turn
    python benchmarks/scale_benchmark.py memory --series 1000000 --local-concurrency 2   # two at a time
    python benchmarks/scale_benchmark.py memory --series 100000         # the CI-sized variant
    python benchmarks/scale_benchmark.py workers --series 8000 --shards 8   # 1 vs 2 Prefect process workers
    python benchmarks/scale_benchmark.py monitor --series 1000000 --local-concurrency 2   # #21's overhead

``monitor`` runs the job on consecutive nights (``--nights``, default 2), each night's input one day longer
(the panel cut at its last day minus ``nights - k``), all in one child process and one output root, so from
the second night on each run compares with the one before and scores its earlier forecasts. It reports,
per night, the ``monitor`` stage's seconds and its share of the rest of the run (the manifest's timings),
and with ``--baseline`` re-runs the last night with ``monitor.enabled = false`` for the same job.

``memory`` runs the whole flow (plan, read each shard through DuckDB, validate, forecast, combine, publish,
MLflow) in one child process on the embedded defaults and reports its peak RSS (``ru_maxrss``) and that of
its largest child (Prefect's ephemeral server). ``workers`` starts a Prefect server on the local
PostgreSQL, deploys ``forecast-shard/shard``, starts one and then two process workers (one torch thread
each, standing for one core or machine each) and times the same job on both. Data: benchmarks/panel.py
(synthetic, seeded); model: the tiny random checkpoint, so every number here is about the pipeline, not
about TimesFM-2.0's own cost (see engine_benchmark.py for that) or its accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.panel import write_panel  # noqa: E402

HORIZON = 28


def _env(workdir: Path, checkpoint: Path, panel: Path, threads: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "FORECAST_"))}
    roots = os.pathsep.join([str(workdir), str(panel.resolve().parent)])
    env.update({"FORECAST_DATA_DIR": str(workdir / "data"), "FORECAST_DATA_ROOTS": roots,
                "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db", "HF_HUB_OFFLINE": "1",
                "TIMESFM20_DEFAULT_CHECKPOINT": str(checkpoint), "TIMESFM20_DEFAULT_BACKEND": "cpu",
                "PREFECT_HOME": str(workdir / "prefect-home"), "PREFECT_LOGGING_LEVEL": "WARNING",
                "PYTHONPATH": str(REPO),
                # a fresh PREFECT_HOME migrates its database first: slow on a busy 2-core machine
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"})
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _setup(workdir: Path, series: int, length: int, panel: Path | None) -> tuple[Path, Path]:
    from forecast_model import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(workdir / "tiny").weights.parent
    if panel is None or not panel.is_file():
        panel = panel or workdir / "panel.parquet"
        started = time.perf_counter()
        write_panel(panel, series, length)
        print(f"wrote {series:,} series x {length} points to {panel} in {time.perf_counter() - started:.0f} s")
    return checkpoint, panel


def run_flow(panel: str, series_per_shard: int, concurrency: int, as_of: str) -> None:
    """Child process: run the sharded flow in this process and print its figures as JSON."""
    from flows.sharded_forecast import sharded_forecast
    from pipeline.params import Sharding
    from pipeline.sources import FileSource

    started = time.perf_counter()
    summary = sharded_forecast(source=FileSource(path=panel), horizon=HORIZON, as_of=date.fromisoformat(as_of),
                               sharding=Sharding(series_per_shard=series_per_shard, local_concurrency=concurrency),
                               job="scale")
    print(json.dumps({"seconds": time.perf_counter() - started, "series_ok": summary.series_ok,
                      "shards": summary.shards, "forecast_rows": summary.forecast_rows,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "largest_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def run_nights(panel: str, series_per_shard: int, concurrency: int, nights: int, baseline: bool) -> None:
    """Child process: the sharded flow on ``nights`` consecutive as_of days (inputs cut from ``panel``), then,
    with ``baseline``, the last night again without monitoring; one JSON line of timings per run."""
    import duckdb
    import pandas as pd

    from flows.sharded_forecast import sharded_forecast
    from pipeline.params import MonitorParams, Sharding
    from pipeline.sources import FileSource

    source = Path(panel)
    [(end,)] = duckdb.sql(f"SELECT max(ds) FROM read_parquet('{source}')").fetchall()
    plan = [(night, True) for night in range(1, nights + 1)] + ([(nights, False)] if baseline else [])
    for night, enabled in plan:
        cut = end - pd.Timedelta(days=nights - night)
        path = source.with_name(f"night-{night}.parquet")
        if not path.is_file():
            duckdb.sql(f"COPY (SELECT * FROM read_parquet('{source}') WHERE ds <= TIMESTAMP '{cut}') TO '{path}' "
                       "(FORMAT parquet)")
        started = time.perf_counter()
        summary = sharded_forecast(source=FileSource(path=str(path)), horizon=HORIZON, job="scale",
                                   as_of=(cut + pd.Timedelta(days=1)).date(), monitor=MonitorParams(enabled=enabled),
                                   sharding=Sharding(series_per_shard=series_per_shard, local_concurrency=concurrency))
        seconds = time.perf_counter() - started
        [(timings,)] = duckdb.sql(f"SELECT timings FROM read_parquet('{summary.outputs['runs']}')").fetchall()
        print(json.dumps({"night": night, "monitor": enabled, "seconds": seconds, "timings": json.loads(timings),
                          "monitoring": summary.monitoring,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


def monitor(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="monitor-", dir=args.workdir)).resolve()
    checkpoint, panel = _setup(workdir, args.series, args.length, args.panel)
    command = [sys.executable, __file__, "_nights", str(panel), str(args.series_per_shard),
               str(args.local_concurrency), str(args.nights), str(int(args.baseline))]
    done = subprocess.run(command, env=_env(workdir, checkpoint, panel), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"flow failed: {done.stdout[-3000:]}{done.stderr[-3000:]}")
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"night"')]
    for run in runs:
        timings = run["timings"]
        spent = timings.get("monitor", 0.0)
        rest = timings["total"] - spent
        print(f"night {run['night']} ({'monitor' if run['monitor'] else 'no monitor'}): total {timings['total']:.1f} s"
              f" in the flow, monitor {spent:.2f} s = {100 * spent / max(rest, 1e-9):.1f}% of the rest; "
              f"{run['monitoring'].get('points_scored', 0):,} points scored, "
              f"{run['monitoring'].get('series_compared', 0):,} series compared; peak RSS {run['peak_rss_mb']:,.0f} MB")
    return {"series": args.series, "length": args.length, "nights": args.nights, "horizon": HORIZON,
            "series_per_shard": args.series_per_shard, "local_concurrency": args.local_concurrency, "runs": runs,
            "workdir": str(workdir)}


def memory(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="scale-", dir=args.workdir)).resolve()
    checkpoint, panel = _setup(workdir, args.series, args.length, args.panel)
    command = [sys.executable, __file__, "_run", str(panel), str(args.series_per_shard), str(args.local_concurrency),
               "2026-11-20"]
    started = time.perf_counter()
    done = subprocess.run(command, env=_env(workdir, checkpoint, panel), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"flow failed: {done.stdout[-3000:]}{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(wall_seconds=time.perf_counter() - started, series=args.series, length=args.length,
                  series_per_shard=args.series_per_shard, local_concurrency=args.local_concurrency, horizon=HORIZON,
                  workdir=str(workdir))
    print(f"{args.series:,} series x {args.length} points, {result['shards']} shards of ~{args.series_per_shard:,}"
          f" ({args.local_concurrency} at a time),"
          f" horizon {HORIZON}: {result['seconds']:.0f} s in the flow ({result['series_ok'] / result['seconds']:,.0f}"
          f" series/s), peak RSS {result['peak_rss_mb']:,.0f} MB (largest child {result['largest_child_rss_mb']:,.0f}"
          f" MB)")
    return result


def workers(args: argparse.Namespace) -> dict:
    from tests.prefect_stack import PrefectStack

    workdir = Path(tempfile.mkdtemp(prefix="workers-", dir=args.workdir)).resolve()
    checkpoint, panel = _setup(workdir, args.series, args.length, args.panel)
    timings = {}
    for count in (1, 2):
        stack = PrefectStack(workdir / f"stack-{count}", {**_env(workdir, checkpoint, panel, threads=1),
                                                          "FORECAST_REPO_DIR": str(REPO)})
        stack.directory.mkdir()
        try:
            stack.start_server()
            stack.cli("work-pool", "create", "cpu", "--type", "process")
            stack.cli("--no-prompt", "deploy", "--name", "shard", "--name", "sharded-on-demand")
            for i in range(count):
                stack.start_worker("cpu", "--work-queue", "shards", "--limit", "1", "--name", f"w{i}")
            stack.start_worker("cpu", "--work-queue", "control", "--name", "control")
            deployment = stack.request("GET", "/deployments/name/sharded-forecast/sharded-on-demand")
            started = time.perf_counter()
            run = stack.request("POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {
                "source": {"kind": "file", "path": str(panel)}, "horizon": HORIZON, "job": f"w{count}",
                "sharding": {"shards": args.shards, "deployment": "forecast-shard/shard", "poll_seconds": 1}}})
            final = stack.wait_for(run["id"], timeout=3600)
            timings[count] = time.perf_counter() - started
            if final["state_type"] != "COMPLETED":
                raise SystemExit(f"{count} worker(s): run ended {final['state_type']}: {final['state']}")
            print(f"{count} worker(s): {args.series:,} series in {args.shards} shards: {timings[count]:.1f} s "
                  f"({args.series / timings[count]:,.0f} series/s)")
        finally:
            stack.stop()
    print(f"speed-up with 2 workers: {timings[1] / timings[2]:.2f}x")
    return {"series": args.series, "shards": args.shards, "seconds_1_worker": timings[1],
            "seconds_2_workers": timings[2], "speedup": timings[1] / timings[2]}


def main() -> None:
    if sys.argv[1:2] == ["_run"]:
        run_flow(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    if sys.argv[1:2] == ["_nights"]:
        run_nights(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["memory", "workers", "monitor"])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--series-per-shard", type=int, default=20_000)
    parser.add_argument("--local-concurrency", type=int, default=1, help="memory mode: shards at once")
    parser.add_argument("--shards", type=int, default=8, help="workers mode: shards of the job")
    parser.add_argument("--nights", type=int, default=2, help="monitor mode: consecutive as_of runs of the job")
    parser.add_argument("--baseline", action="store_true",
                        help="monitor mode: re-run the last night without monitoring, for comparison")
    parser.add_argument("--panel", type=Path, help="reuse a panel written by an earlier run")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temporary working directory")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    print(f"host: {platform.node()} ({os.cpu_count()} cores), python {platform.python_version()}")
    result = {"memory": memory, "workers": workers, "monitor": monitor}[args.mode](args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
