"""`./setup.sh serve` starts the whole local stack; `./setup.sh stop` leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from forecast_model import ResolvedCheckpoint
from tests.conftest import REPO
from tests.prefect_stack import basic_auth, http_error
from tests.processes import free_port

pytestmark = pytest.mark.e2e


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def post(env: dict[str, str], path: str, auth: str | None, method: str = "POST") -> Any:
    headers = {"Content-Type": "application/json", **basic_auth(auth)}
    request = urllib.request.Request(f"http://127.0.0.1:{env['PREFECT_PORT']}/api{path}",
                                     data=b"{}" if method == "POST" else None, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def run_health_check(env: dict[str, str], auth: str, deployment_id: str) -> str:
    """Triggers the CPU health check as the UI's "Quick run" does; returns the flow run's id once it completed."""
    run_id = post(env, f"/deployments/{deployment_id}/create_flow_run", auth)["id"]
    deadline = time.monotonic() + 180
    while (state := post(env, f"/flow_runs/{run_id}", auth, "GET")["state_type"]) not in \
            ("COMPLETED", "FAILED", "CRASHED") and time.monotonic() < deadline:
        time.sleep(1)
    assert state == "COMPLETED", state
    return str(run_id)


def test_serve_then_stop(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST", "MLFLOW_"))}
    env.update({"FORECAST_DATA_DIR": str(tmp_path), "PREFECT_PORT": str(free_port()),
                "MLFLOW_PORT": str(free_port()), "METRICS_PORT": str(free_port()),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "LOG_FORMAT": "json",
                "FORECAST_GPU_WORKERS": "1"})  # as on a host with one GPU; this one has none
    stack = tmp_path / "stack"
    try:
        checkpoint = str(tiny_checkpoint.weights.parent)
        served = subprocess.run([str(REPO / "setup.sh"), "serve", "--checkpoint", checkpoint], env=env,
                                capture_output=True, text=True, timeout=400)
        assert served.returncode == 0, served.stdout + served.stderr[-3000:]
        assert f"http://127.0.0.1:{env['PREFECT_PORT']}" in served.stdout
        assert f"http://127.0.0.1:{env['MLFLOW_PORT']}" in served.stdout
        exports = next(line for line in served.stdout.splitlines() if line.startswith("CLI/clients: export"))
        assert f"MLFLOW_TRACKING_URI=http://127.0.0.1:{env['MLFLOW_PORT']}" in exports, \
            "CLI runs after serve must track to the served MLflow, not data/mlflow.db"
        groups = {p.stem: int(p.read_text()) for p in stack.glob("*.pid")}
        assert set(groups) == {"prefect-server", "mlflow-server", "worker-cpu", "metrics-exporter"}
        metrics = f"http://127.0.0.1:{env['METRICS_PORT']}/metrics"
        assert metrics in served.stdout
        with urllib.request.urlopen(metrics, timeout=30) as answer:
            assert 'forecast_exporter_read_ok{part="runs"} 0.0' in answer.read().decode(), "served, nothing run yet"
        assert f"Model:       {checkpoint}, loaded by every run" in served.stdout
        # The GPU worker checks its device before it polls, so none starts here, and serve says why.
        assert "warning: no worker for GPU 0: error: This worker cannot serve" in served.stderr
        assert "No such GPU: device index 0" in served.stderr
        assert "gpu has none: no GPU here" in served.stdout
        worker_env = Path(f"/proc/{groups['worker-cpu']}/environ").read_bytes().split(b"\0")
        assert f"TIMESFM20_DEFAULT_CHECKPOINT={checkpoint}".encode() in worker_env, "the worker's runs load it"
        auth = (stack / "api-auth").read_text()
        assert (stack / "api-auth").stat().st_mode & 0o077 == 0, "the API password file must be private"
        assert http_error(lambda: post(env, "/deployments/filter", None))[0] == 401
        assert http_error(lambda: post(env, "/deployments/filter", "forecast:wrong"))[0] == 401
        deployments = {d["name"]: d for d in post(env, "/deployments/filter", auth)}
        cpu = {"on-demand", "nightly", "backtest-weekly", "anomalies-nightly", "health-check", "sharded-on-demand",
               "shard"}
        gpu = {"on-demand-gpu", "nightly-gpu", "shard-gpu", "health-check-gpu"}
        assert set(deployments) == cpu | gpu
        assert {d["work_pool_name"] for name, d in deployments.items() if name in gpu} == {"gpu"}
        # With no GPU worker, the GPU schedules stay paused: no late runs pile up for a worker to come.
        assert [s["active"] for s in deployments["health-check-gpu"]["schedules"]] == [False]
        assert [s["active"] for s in deployments["health-check"]["schedules"]] == [True]
        assert [a["name"] for a in post(env, "/automations/filter", auth)] == ["crash-silent-flow-runs"]
        # One log file for all: the worker and the flow-run process it starts both write the run's lines.
        run_id = run_health_check(env, auth, deployments["health-check"]["id"])
        log = tmp_path / "logs" / "forecast.log"
        assert f"Logs:        {log} (every process and run)" in served.stdout
        writers = {line["process"] for line in map(json.loads, log.read_text().splitlines())
                   if line["flow_run_id"] == run_id}
        assert groups["worker-cpu"] in writers and len(writers) == 2, (groups, writers)
    finally:
        stopped = subprocess.run([str(REPO / "setup.sh"), "stop"], env=env, capture_output=True, text=True,
                                 timeout=300)
    assert stopped.returncode == 0, stopped.stderr
    assert "killed" not in stopped.stderr, f"every process should stop on SIGTERM: {stopped.stderr}"
    deadline = time.monotonic() + 30
    while any(group_alive(g) for g in groups.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [name for name, g in groups.items() if group_alive(g)], "processes left behind"
    assert not list(stack.glob("*.pid"))
