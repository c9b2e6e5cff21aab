"""End to end: a real Prefect server on PostgreSQL, pools and deployments from prefect.yaml, a process
worker, and flow runs triggered through the REST API as another system would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from forecast_model import ResolvedCheckpoint
from tests.conftest import REPO, SAMPLE
from tests.prefect_stack import QUICK_POLLING, PrefectStack, http_error

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: ResolvedCheckpoint) -> Iterator[PrefectStack]:
    directory = tmp_path_factory.mktemp("prefect-e2e")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST"))}
    env.update({"FORECAST_REPO_DIR": str(REPO), "FORECAST_DATA_DIR": str(directory / "data"),
                "FORECAST_DATA_ROOTS": str(SAMPLE.parent), "MLFLOW_TRACKING_URI": f"sqlite:///{directory}/mlflow.db",
                "TIMESFM20_DEFAULT_CHECKPOINT": str(tiny_checkpoint.weights.parent), "HF_HUB_OFFLINE": "1",
                # as ./setup.sh serve and the images run them: server, worker and flow runs share one log file
                "PREFECT_LOGGING_SETTINGS_PATH": str(REPO / "flows" / "logging.yml"), "LOG_FORMAT": "json"})
    env.update(QUICK_POLLING)
    running = PrefectStack(directory, env)
    try:
        running.start_server()
        running.cli("work-pool", "create", "cpu", "--type", "process")
        running.cli("--no-prompt", "deploy", "--name", "on-demand", "--name", "anomalies-nightly")
        running.python("-m", "deployments.parameters")  # as ./setup.sh serve does after deploying
        running.start_worker("cpu")
        yield running
    finally:
        running.stop()


def create_run(stack: PrefectStack, parameters: dict, key: str | None = None, scheduled: str | None = None) -> dict:
    deployment = stack.request("GET", "/deployments/name/batch-forecast/on-demand")
    body: dict = {"parameters": parameters}
    if key:
        body["idempotency_key"] = key
    if scheduled:  # as the scheduler creates them: a Scheduled state with its time
        body["state"] = {"type": "SCHEDULED", "state_details": {"scheduled_time": scheduled}}
    return stack.request("POST", f"/deployments/{deployment['id']}/create_flow_run", body)


def test_rest_triggered_run_completes(stack: PrefectStack) -> None:
    params = {"horizon": 3, "as_of": "2026-11-20"}
    first = create_run(stack, params, key="nightly-2026-11-20")
    duplicate = create_run(stack, params, key="nightly-2026-11-20")
    assert duplicate["id"] == first["id"], "the idempotency key must not create a second run"
    run = stack.wait_for(first["id"])
    assert run["state_type"] == "COMPLETED", run["state"]
    root = stack.directory / "data" / "outputs"
    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT run_id, count(*) FROM forecasts WHERE as_of = DATE '2026-11-20' "
                           "GROUP BY run_id").fetchall()
        mlflow_run = con.execute("SELECT mlflow_run_id, deployment FROM runs").fetchone()
    assert rows == [(first["id"], 36)]
    assert mlflow_run is not None and mlflow_run[1] == "on-demand"
    recorded = MlflowClient(f"sqlite:///{stack.directory}/mlflow.db").get_run(mlflow_run[0])
    assert recorded.data.tags["prefect.flow_run_id"] == first["id"]
    assert_logged_by_worker_and_run(stack.directory / "data" / "logs" / "forecast.log", first["id"], "2026-11-20")


def assert_logged_by_worker_and_run(log: Path, run_id: str, as_of: str) -> None:
    """The worker and the flow-run process it started both wrote the run's lines to the one log file; each
    line of the run's process from Prefect's `Beginning flow run` on names its job and as_of (before it,
    only the deployment's pull steps, run before the flow's code is loaded)."""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    ours = [line for line in lines if line["flow_run_id"] == run_id]
    worker = {line["process"] for line in ours if line["logger"].startswith("prefect.flow_runs.worker")}
    engine = {line["process"] for line in ours if line["logger"] == "prefect.task_runs"}
    assert len(worker) == 1 and len(engine) == 1 and worker != engine, (worker, engine)
    run_lines = [line for line in ours if line["process"] in engine]
    begins = next(i for i, line in enumerate(run_lines) if line["message"].startswith("Beginning flow run"))
    assert all("step" in line["message"] for line in run_lines[:begins]), run_lines[:begins]
    assert {(line["job"], line["as_of"]) for line in run_lines[begins:]} == {("us_macro_quarterly", as_of)}



def test_the_nightly_anomaly_deployment_runs_as_its_schedule_would(stack: PrefectStack) -> None:
    deployment = stack.request("GET", "/deployments/name/batch-detect-anomalies/anomalies-nightly")
    [schedule] = deployment["schedules"]
    assert schedule["schedule"]["cron"] == "30 2 * * *", "after the nightly forecast at 02:00"
    run = stack.request("POST", f"/deployments/{deployment['id']}/create_flow_run", {
        "parameters": schedule["parameters"],
        "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": "2026-11-21T02:30:00+00:00"}}})
    final = stack.wait_for(run["id"])
    assert final["state_type"] == "COMPLETED", final["state"]
    root = stack.directory / "data" / "outputs"
    table = pd.read_parquet(root / "anomalies" / "job=us_macro_quarterly" / "as_of=2026-11-21" / "data.parquet")
    assert len(table) == 12 * 4 and set(table["run_id"]) == {run["id"]}, "a season of quarters per series"
    assert table["anomaly_probability"].between(0, 1).all()


def test_scheduled_date_is_the_partition_and_a_second_trigger_replaces_it(stack: PrefectStack) -> None:
    runs = [stack.wait_for(create_run(stack, {"horizon": 2, "job": "sched"}, key=f"try-{i}",
                                      scheduled="2026-11-19T02:00:00+00:00")["id"]) for i in range(2)]
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    root = stack.directory / "data" / "outputs"
    files = sorted(p.relative_to(root) for p in (root / "forecasts" / "job=sched").rglob("*.parquet"))
    assert files == [Path("forecasts/job=sched/as_of=2026-11-19/data.parquet")], files
    run_ids = set(pd.read_parquet(root / files[0])["run_id"])
    assert run_ids == {runs[1]["id"]}, "the second run must replace the first one's partition"


def test_invalid_parameters_are_refused(stack: PrefectStack) -> None:
    status, body = http_error(lambda: create_run(stack, {"horizon": -5}))
    assert status in (409, 422) and "horizon" in body, body
    status, body = http_error(lambda: create_run(stack, {"horizn": 8}))
    assert status == 409 and "'horizn' was unexpected" in body, body


def test_forecast_worker_checks_then_becomes_a_pinned_prefect_worker(stack: PrefectStack) -> None:
    """`forecast worker` replaces itself with Prefect's worker, with FORECAST_DEVICE_INDEX for its runs to
    inherit (device auto: this CPU host passes its checks, a GPU host would run on GPU 0)."""
    import time

    from tests.processes import Process

    worker = Process([str(REPO / ".venv" / "bin" / "forecast"), "worker", "--pool", "cpu", "--device", "auto",
                      "--device-index", "0", "--name", "pinned-0"], stack.env, stack.directory / "worker-pinned.log",
                     REPO, background_job=True)  # as ./setup.sh serve starts it: SIGINT ignored
    stack.processes.append(worker)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker.alive():
        if "pinned-0" in {w["name"] for w in stack.request("POST", "/work_pools/cpu/workers/filter", {})}:
            break
        time.sleep(1)
    log = (stack.directory / "worker-pinned.log").read_text()
    assert worker.alive(), log[-3000:]
    environ = Path(f"/proc/{worker.handle.pid}/environ").read_bytes().split(b"\0")
    assert b"FORECAST_DEVICE_INDEX=0" in environ, "the worker's flow runs inherit its pin"
    command = Path(f"/proc/{worker.handle.pid}/cmdline").read_bytes().split(b"\0")
    assert command[1:4] == [str(REPO / ".venv" / "bin" / "prefect").encode(), b"worker", b"start"], \
        "the same process is now Prefect's worker: signals reach it, its exit status is the service's"
    # Fully started: Prefect's own signal handlers are in place (it sets them before it prints this).
    while time.monotonic() < deadline and worker.alive() and "Worker 'pinned-0' started!" not in \
            (stack.directory / "worker-pinned.log").read_text():
        time.sleep(0.2)
    os.kill(worker.handle.pid, signal.SIGTERM)
    try:
        worker.handle.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not stop on SIGTERM (Prefect stops it by SIGINT, which a shell's `&` ignores)")
    finally:
        worker.kill()
        stack.processes.remove(worker)
    assert "stopped!" in (stack.directory / "worker-pinned.log").read_text()[-2000:], "a graceful stop"
