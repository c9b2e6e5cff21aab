"""Pipeline throughput: the plain batch-forecast flow against the irreducible work around the engine.

    python benchmarks/pipeline_benchmark.py                              # 100,000 series x 200 points
    python benchmarks/pipeline_benchmark.py --series 2000 --length 60    # the slow tier's smoke size

One run measures, on the same seeded panel (benchmarks/panel.py, one Parquet file, 3 columns) and the tiny
random checkpoint (so the figures are about the pipeline, never about TimesFM-2.0's cost or accuracy):

- the **baseline**, in this process: DuckDB reads the file into one float array per series; the engine
  (``TimesFmEngine.forecast``, loaded and warmed beforehand) forecasts every series; pyarrow writes the
  forecasts (id, step, point, 9 quantiles) to Parquet. Their sum is the work no pipeline can skip.
- the **flow**: ``forecast run`` as a user starts it (a new process, an ephemeral Prefect server, a SQLite
  MLflow store), its wall time, and the stage timings its manifest records (the ``runs`` table). It runs
  ``--runs`` times (default 2) with the same Prefect home and MLflow store: the first run also creates both,
  as a user's first run does; later runs are the everyday case. A last run goes to a Prefect server
  started beforehand (``PREFECT_API_URL``), as flow runs on a worker do: no ephemeral server to start and
  stop. The stages shown are that run's.

It prints one table (stage, seconds, series/s, x baseline) and, with ``--json``, the same figures as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.panel import write_panel  # noqa: E402

AS_OF = date(2026, 11, 20)  # the panel ends on 2026-11-01
JOB = "throughput"


def read_arrays(panel: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """The panel's ids and one float array per series, through DuckDB and Arrow (no per-row Python)."""
    with duckdb.connect() as con:
        table = con.sql("SELECT unique_id, y FROM read_parquet($panel) ORDER BY unique_id, ds",
                        params={"panel": str(panel)}).to_arrow_table()
    codes = table.column("unique_id").combine_chunks().dictionary_encode()
    indices = codes.indices.to_numpy()
    starts = np.flatnonzero(np.diff(indices)) + 1
    ids = codes.dictionary.to_numpy(zero_copy_only=False)[indices[np.r_[0, starts]]]
    return ids, np.split(table.column("y").to_numpy(), starts)


def write_forecasts(path: Path, ids: np.ndarray, point: np.ndarray, quantiles: np.ndarray) -> None:
    """The forecasts as a table built with repeats and tiles, written by pyarrow."""
    n, horizon = point.shape
    columns: dict[str, Any] = {"unique_id": np.repeat(ids, horizon),
                               "step": np.tile(np.arange(1, horizon + 1, dtype=np.int32), n),
                               "forecast": point.ravel().astype(np.float64)}
    for k in range(quantiles.shape[2]):
        columns[f"q{k + 1}0"] = quantiles[:, :, k].ravel().astype(np.float64)
    pq.write_table(pa.table(columns), path)


def baseline(panel: Path, checkpoint: Path, horizon: int, workdir: Path) -> dict[str, float]:
    """Seconds of each irreducible piece, measured apart in this process."""
    from forecast_model import EngineConfig, load_engine

    engine = load_engine(EngineConfig(checkpoint=str(checkpoint), device="cpu"))
    engine.forecast([np.sin(np.arange(200) / 7)] * 8, horizon)  # warm-up: the flow's model is loaded too
    started = time.perf_counter()
    ids, series = read_arrays(panel)
    read = time.perf_counter() - started
    started = time.perf_counter()
    result = engine.forecast(series, horizon)
    forecast = time.perf_counter() - started
    started = time.perf_counter()
    write_forecasts(workdir / "baseline-forecasts.parquet", ids, result.point, result.quantiles)
    write = time.perf_counter() - started
    return {"read": read, "forecast": forecast, "write": write, "total": read + forecast + write}


def flow_env(workdir: Path) -> dict[str, str]:
    """The environment of the flow's process: this one's, less Prefect, MLflow and forecast settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "FORECAST_"))}
    env.update({"FORECAST_DATA_DIR": str(workdir / "data"), "HF_HUB_OFFLINE": "1",
                "PREFECT_HOME": str(workdir / "prefect-home"), "PREFECT_LOGGING_LEVEL": "WARNING",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"})
    return env


@contextlib.contextmanager
def prefect_server(workdir: Path) -> Iterator[str]:
    """A Prefect server on 127.0.0.1 (its own home and SQLite database) for as long as the block runs; its API URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**flow_env(workdir), "PREFECT_HOME": str(workdir / "prefect-server-home")}
    log = (workdir / "prefect-server.log").open("w")
    server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                               "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Prefect server did not start; see {workdir / 'prefect-server.log'}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own process group: the server and its children
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def run_flow(panel: Path, checkpoint: Path, horizon: int, workdir: Path,
             api_url: str | None = None) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``forecast run`` and the stage timings of its manifest; with ``api_url``, against that
    Prefect server instead of an ephemeral one."""
    env = {**flow_env(workdir), **({"PREFECT_API_URL": api_url} if api_url else {})}
    forecast = Path(sys.executable).with_name("forecast")
    command = [str(forecast), "run", "--source", str(panel), "--horizon", str(horizon), "--checkpoint",
               str(checkpoint), "--device", "cpu", "--freq", "D", "--job", JOB, "--as-of", AS_OF.isoformat()]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"the flow failed ({done.returncode}): {done.stdout[-3000:]}{done.stderr[-3000:]}")
    runs = workdir / "data" / "outputs" / "runs" / f"job={JOB}" / f"as_of={AS_OF}"
    (manifest,) = pq.read_table(runs).to_pylist()
    return wall, json.loads(manifest["timings"])


def table(series: int, base: dict[str, float], walls: list[float], stages: dict[str, float]) -> list[dict[str, Any]]:
    """Rows of the printed table: every baseline piece, every flow stage of the last run, its total and
    the wall time of each run."""
    rows = [("baseline: read (DuckDB -> arrays)", base["read"]), ("baseline: engine forecast", base["forecast"]),
            ("baseline: write forecasts (pyarrow)", base["write"]), ("baseline total", base["total"])]
    order = ["prepare_model", "load", "validate", "forecast", "forecast.engine", "forecast.host",
             "forecast.overlapped", "tracking", "publish", "catalog"]
    named = [n for n in order if n in stages] + sorted(n for n in stages if n not in order and n != "total")
    rows += [(f"flow stage: {name}" if "." not in name else f"  of which {name}", stages[name]) for name in named]
    rows += [("flow total (load start to publish end)", stages.get("total", sum(stages.values())))]
    rows += [(f"flow wall, run {k} ({'fresh' if k == 1 else 'same'} stores)", wall)
             for k, wall in enumerate(walls[:-1], start=1)]
    rows += [("flow wall, a running Prefect server", walls[-1])]
    return [{"stage": name, "seconds": round(seconds, 3), "series_per_s": round(series / seconds) if seconds else None,
             "x_baseline": round(seconds / base["total"], 2)} for name, seconds in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temporary working directory")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--runs", type=int, default=2, help="flow runs with an ephemeral Prefect server, one after "
                        "the other with the same Prefect home and MLflow store (the first also creates both); a "
                        "last run goes to a running Prefect server")
    args = parser.parse_args()
    from forecast_model import make_tiny_checkpoint

    workdir = Path(tempfile.mkdtemp(prefix="pipeline-", dir=args.workdir)).resolve()
    checkpoint = make_tiny_checkpoint(workdir / "tiny").weights.parent
    panel = write_panel(workdir / "panel.parquet", args.series, args.length)
    print(f"host: {platform.node()} ({os.cpu_count()} cores), python {platform.python_version()}; "
          f"{args.series:,} series x {args.length} points, horizon {args.horizon}, tiny random checkpoint")
    base = baseline(panel, checkpoint, args.horizon, workdir)
    runs = [run_flow(panel, checkpoint, args.horizon, workdir) for _ in range(max(1, args.runs))]
    with prefect_server(workdir) as api_url:  # as on a worker, or with PREFECT_API_URL set for CLI runs
        runs.append(run_flow(panel, checkpoint, args.horizon, workdir, api_url))
    walls, stages = [wall for wall, _ in runs], runs[-1][1]
    rows = table(args.series, base, walls, stages)
    print(f"\n| {'stage':<40} | {'seconds':>8} | {'series/s':>10} | {'x baseline':>10} |")
    print(f"|{'-' * 42}|{'-' * 9}:|{'-' * 11}:|{'-' * 11}:|")
    for row in rows:
        rate = f"{row['series_per_s']:,}" if row["series_per_s"] is not None else "-"
        print(f"| {row['stage']:<40} | {row['seconds']:>8.2f} | {rate:>10} | {row['x_baseline']:>10.2f} |")
    result = {"series": args.series, "length": args.length, "horizon": args.horizon, "rows": rows,
              "baseline": base, "flow_wall_seconds": walls[-1], "flow_walls": walls, "flow_stages": stages,
              "flow_stages_per_run": [figures for _, figures in runs]}
    print("\n" + json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
