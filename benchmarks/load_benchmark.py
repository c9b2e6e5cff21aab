"""Load: many API-triggered runs at once against one deployment with a concurrency limit.

    python benchmarks/load_benchmark.py --runs 20          # the figure docs/RELIABILITY.md records

Starts a Prefect server on the local PostgreSQL (API password on), deploys ``on-demand`` from prefect.yaml
(concurrency limit 4, collision strategy ENQUEUE), starts one process worker, then POSTs ``--runs``
``create_flow_run`` requests from as many threads at the same moment, each for its own job, and waits for
all of them. Prints the wall time from the first POST to the last completion, runs per minute, the most runs
that were ever Running at once, and checks that every run completed and wrote its own partition. Model: the
tiny random checkpoint; data: the shipped sample. The figure is about orchestration, not TimesFM's cost.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["LoadResult", "max_running_at_once", "submit_at_once"]

SAMPLE = REPO / "data" / "samples" / "us_macro_quarterly.csv"


class LoadResult:
    """What a burst of runs did: final runs, seconds from the first POST to the last completion."""

    def __init__(self, runs: list[dict[str, Any]], seconds: float) -> None:
        self.runs = runs
        self.seconds = seconds

    def report(self) -> str:
        states = sorted({r["state_type"] for r in self.runs})
        return (f"{len(self.runs)} runs submitted at once: {self.seconds:.1f} s to the last completion "
                f"({len(self.runs) / self.seconds * 60:.1f} runs/min); final states {states}; "
                f"at most {max_running_at_once(self.runs)} running at once")


def submit_at_once(stack: Any, deployment_id: str, parameter_sets: list[dict[str, Any]],
                   timeout: float = 900) -> LoadResult:
    """POSTs one create_flow_run per parameter set, all from their own thread at once, then waits for all."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(parameter_sets)) as pool:
        created = list(pool.map(lambda p: stack.request("POST", f"/deployments/{deployment_id}/create_flow_run",
                                                        {"parameters": p}), parameter_sets))
    deadline = time.monotonic() + timeout
    final = [stack.wait_for(run["id"], timeout=max(1.0, deadline - time.monotonic())) for run in created]
    return LoadResult(final, time.perf_counter() - started)


def max_running_at_once(runs: list[dict[str, Any]]) -> int:
    """The largest number of runs whose [start, end] intervals overlap."""
    edges = []
    for run in runs:
        if run.get("start_time") and run.get("end_time"):
            edges += [(datetime.fromisoformat(run["start_time"]), 1), (datetime.fromisoformat(run["end_time"]), -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def main() -> None:
    from forecast_model import make_tiny_checkpoint
    from tests.prefect_stack import PrefectStack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temporary working directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="load-", dir=args.workdir)).resolve()
    checkpoint = make_tiny_checkpoint(workdir / "tiny").weights.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "FORECAST_"))}
    env.update({"FORECAST_REPO_DIR": str(REPO), "FORECAST_DATA_DIR": str(workdir / "data"),
                "FORECAST_DATA_ROOTS": os.pathsep.join([str(workdir), str(SAMPLE.parent)]),
                "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db", "HF_HUB_OFFLINE": "1",
                "TIMESFM20_DEFAULT_CHECKPOINT": str(checkpoint), "OMP_NUM_THREADS": "1"})
    stack = PrefectStack(workdir / "stack", env)
    stack.directory.mkdir()
    print(f"host: {platform.node()} ({os.cpu_count()} cores), python {platform.python_version()}")
    try:
        stack.start_server()
        stack.cli("work-pool", "create", "cpu", "--type", "process")
        stack.cli("--no-prompt", "deploy", "--name", "on-demand")
        stack.start_worker("cpu", "--name", "load-worker")
        deployment = stack.request("GET", "/deployments/name/batch-forecast/on-demand")
        result = submit_at_once(stack, deployment["id"], [
            {"source": {"kind": "file", "path": str(SAMPLE)}, "horizon": 8, "job": f"load-{i:02d}"}
            for i in range(args.runs)])
        print(result.report())
        partitions = sorted((workdir / "data" / "outputs" / "forecasts").glob("job=load-*/as_of=*/data.parquet"))
        print(f"partitions written: {len(partitions)} (expected {args.runs})")
        if len(partitions) != args.runs or any(r["state_type"] != "COMPLETED" for r in result.runs):
            raise SystemExit("FAILED: a run was lost, failed or wrote no output")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
