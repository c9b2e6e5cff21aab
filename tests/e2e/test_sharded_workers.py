"""Scale-out end to end: a Prefect server on PostgreSQL, two shard workers and a control worker (real
processes), a sharded job triggered through the REST API, and one shard worker killed with SIGKILL, together
with the flow run it was executing, in the middle of the job."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.panel import write_panel
from forecast_model import ResolvedCheckpoint
from tests.conftest import REPO
from tests.prefect_stack import QUICK_POLLING, PrefectStack
from tests.processes import Process, children

pytestmark = pytest.mark.e2e

SERIES, SHARDS, HORIZON = 48, 8, 6


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: ResolvedCheckpoint) -> Iterator[PrefectStack]:
    directory = tmp_path_factory.mktemp("prefect-shards")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST"))}
    env.update({"FORECAST_REPO_DIR": str(REPO), "FORECAST_DATA_DIR": str(directory / "data"),
                "FORECAST_DATA_ROOTS": str(directory), "MLFLOW_TRACKING_URI": f"sqlite:///{directory}/mlflow.db",
                "TIMESFM20_DEFAULT_CHECKPOINT": str(tiny_checkpoint.weights.parent), "HF_HUB_OFFLINE": "1",
                "OMP_NUM_THREADS": "1"})
    env.update(QUICK_POLLING)
    running = PrefectStack(directory, env)
    try:
        running.start_server()
        running.cli("work-pool", "create", "cpu", "--type", "process")
        running.cli("--no-prompt", "deploy", "--name", "shard", "--name", "sharded-on-demand")
        done = running.python("-m", "deployments.automations", "--within", "60")
        assert "is active" in done
        yield running
    finally:
        running.stop()


def shard_records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in root.glob("_staging/*/shards/*/*/_SUCCESS.json")]


def kill_while_busy(worker: Process, name: str, root: Path, timeout: float = 240) -> int:
    """SIGKILLs ``worker`` and its flow run once it has committed a shard and is running another."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done_by_it = [r for r in shard_records(root) if r["worker"] == name]
        busy = [pid for pid in children(worker.handle.pid) if pid not in {r["pid"] for r in done_by_it}]
        if done_by_it and busy:
            for pid in [*busy, worker.handle.pid]:
                os.kill(pid, signal.SIGKILL)
            worker.handle.wait(timeout=30)
            return len(done_by_it)
        time.sleep(0.5)
    raise TimeoutError(f"{name} never had a second shard in flight")


def test_killed_worker_still_ends_in_one_complete_output(stack: PrefectStack) -> None:
    panel = write_panel(stack.directory / "panel.parquet", SERIES, length=120)
    workers = [stack.start_worker("cpu", "--work-queue", "shards", "--limit", "1", "--name", f"shard-worker-{i}")
               for i in (1, 2)]
    stack.start_worker("cpu", "--work-queue", "control", "--name", "control")
    deployment = stack.request("GET", "/deployments/name/sharded-forecast/sharded-on-demand")
    parent = stack.request("POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {
        "source": {"kind": "file", "path": str(panel)}, "horizon": HORIZON, "job": "sharded", "as_of": "2026-11-20",
        "sharding": {"shards": SHARDS, "deployment": "forecast-shard/shard", "poll_seconds": 1}}})
    root = stack.directory / "data" / "outputs"
    committed_before_kill = kill_while_busy(workers[0], "shard-worker-1", root)

    run = stack.wait_for(parent["id"], timeout=600)
    assert run["state_type"] == "COMPLETED", run["state"]
    files = sorted(p.relative_to(root) for p in root.glob("forecasts/job=sharded/**/*.parquet"))
    assert files == [Path("forecasts/job=sharded/as_of=2026-11-20/data.parquet")], "one partition, one file"
    forecasts = pd.read_parquet(root / files[0])
    assert forecasts["unique_id"].nunique() == SERIES and len(forecasts) == SERIES * HORIZON, "every series once"
    assert not forecasts.duplicated(["unique_id", "step"]).any()
    assert (forecasts["run_id"] == parent["id"]).all()
    manifest = pd.read_parquet(root / "runs" / "job=sharded" / "as_of=2026-11-20" / "sharded-forecast.parquet")
    shards = json.loads(manifest.loc[0, "shards"])
    assert sorted(s["shard"] for s in shards) == list(range(SHARDS))
    by_worker = {s["worker"] for s in shards}
    assert by_worker == {"shard-worker-1", "shard-worker-2"}, f"both workers must have run shards: {shards}"
    assert sum(s["worker"] == "shard-worker-1" for s in shards) == committed_before_kill
    children_runs = stack.request("POST", "/flow_runs/filter", {
        "flow_runs": {"parent_flow_run_id": {"any_": [parent["id"]]}}})
    states = sorted(r["state_type"] for r in children_runs)
    assert states.count("CRASHED") == 1 and states.count("COMPLETED") == SHARDS, states
    assert not any((root / "_staging").iterdir()), "staging must be cleaned up"
