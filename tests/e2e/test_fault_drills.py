"""Fault drills and load against the real control plane: a Prefect server on PostgreSQL with its API
password on, two process workers, a real MLflow server, the deployments of prefect.yaml and the
crash-silent-flow-runs automation. Every drill ends in exactly one complete published output, or in a clean
failure that publishes nothing; the last test scans everything the runs wrote for the secrets they used.

The tests share one stack and run in file order (the secret scan covers every run before it).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from benchmarks.load_benchmark import max_running_at_once, submit_at_once
from benchmarks.panel import write_panel
from forecast_model import ResolvedCheckpoint
from tests.conftest import REPO, SAMPLE
from tests.http_server import Route, http_server
from tests.mlflow_server import MlflowServer
from tests.prefect_stack import QUICK_POLLING, PrefectStack, http_error
from tests.processes import Process, children

pytestmark = pytest.mark.e2e

SERIES, HORIZON, AS_OF = 10_000, 6, "2026-11-20"
SECRETS = {"database": "pg-s3cr3t-9f1", "mlflow": "ml-s3cr3t-4c2", "hf": "hf_s3cr3tT0k3n7a", "url": "url-s3cr3t-5d8",
           "header": "hdr-s3cr3t-2b6"}


@dataclass
class Drill:
    stack: PrefectStack
    mlflow: MlflowServer
    workers: dict[str, Process]
    panel: Path
    deployment: str

    @property
    def root(self) -> Path:
        return self.stack.directory / "data" / "outputs"

    def trigger(self, job: str, source: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.stack.request("POST", f"/deployments/{self.deployment}/create_flow_run", {"parameters": {
            "source": source or {"kind": "file", "path": str(self.panel)}, "horizon": HORIZON, "job": job,
            "as_of": AS_OF}})

    def forecasts(self, job: str) -> pd.DataFrame:
        files = sorted(self.root.glob(f"forecasts/job={job}/**/*.parquet"))
        assert files == [self.root / "forecasts" / f"job={job}" / f"as_of={AS_OF}" / "data.parquet"], files
        return pd.read_parquet(files[0])


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: ResolvedCheckpoint) -> Iterator[Drill]:
    directory = tmp_path_factory.mktemp("drills")
    mlflow = MlflowServer(directory / "mlflow-server")
    (directory / "mlflow-server").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST", "MLFLOW_", "FORECAST_"))}
    env.update({"FORECAST_REPO_DIR": str(REPO), "FORECAST_DATA_DIR": str(directory / "data"),
                "FORECAST_DATA_ROOTS": os.pathsep.join([str(directory), str(SAMPLE.parent)]),
                "FORECAST_URL_ALLOWLIST": "127.0.0.1/32", "MLFLOW_TRACKING_URI": mlflow.url,
                "MLFLOW_TRACKING_USERNAME": "svc", "MLFLOW_TRACKING_PASSWORD": SECRETS["mlflow"],
                "HF_TOKEN": SECRETS["hf"], "TIMESFM20_DEFAULT_CHECKPOINT": str(tiny_checkpoint.weights.parent),
                "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "PREFECT_LOGGING_SETTINGS_PATH": str(REPO / "flows" / "logging.yml")})  # the shared log file too
    env.update(QUICK_POLLING)
    stack = PrefectStack(directory, env, database_password=SECRETS["database"])
    try:
        mlflow.start()
        stack.start_server()
        stack.cli("work-pool", "create", "cpu", "--type", "process")
        stack.cli("--no-prompt", "deploy", "--name", "on-demand")
        assert "is active" in stack.python("-m", "deployments.automations", "--within", "60")
        workers = {name: stack.start_worker("cpu", "--name", name) for name in ("worker-a", "worker-b")}
        deployment = stack.request("GET", "/deployments/name/batch-forecast/on-demand")["id"]
        yield Drill(stack, mlflow, workers, write_panel(directory / "panel.parquet", SERIES, length=120), deployment)
    finally:
        stack.stop()
        mlflow.stop()


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def test_requests_without_the_api_password_are_refused(drill: Drill) -> None:
    stack = drill.stack
    assert http_error(lambda: stack.request("POST", "/deployments/filter", {}, auth=None))[0] == 401
    assert http_error(lambda: stack.request("POST", "/deployments/filter", {}, auth="e2e:guess"))[0] == 401
    assert http_error(lambda: stack.request("POST", f"/deployments/{drill.deployment}/create_flow_run",
                                            {"parameters": {}}, auth=None))[0] == 401
    assert stack.request("GET", "/health", auth=None) is True, "health probes stay open"
    assert [d["name"] for d in stack.request("POST", "/deployments/filter", {})] == ["on-demand"]


def in_inference(drill: Drill, run_id: str) -> bool:
    """The forecast stage is writing its table (renamed to forecasts.parquet once every series is done)."""
    return (drill.root / "_staging" / run_id / "forecasts.parquet.partial").is_file()


def test_worker_killed_during_inference_then_retried(drill: Drill) -> None:
    run = drill.trigger("killed")
    wait_until(lambda: in_inference(drill, run["id"]), 300, "the run to reach inference")
    name, worker = next((n, w) for n, w in drill.workers.items() if children(w.handle.pid))
    for pid in [*children(worker.handle.pid), worker.handle.pid]:
        os.kill(pid, signal.SIGKILL)
    worker.handle.wait(timeout=30)
    assert not list(drill.root.glob("forecasts/job=killed")), "nothing may be published by a killed run"

    crashed = drill.stack.wait_for(run["id"], timeout=240)  # the automation notices the missing heartbeats
    assert crashed["state_type"] == "CRASHED", crashed["state"]
    # What the UI's Retry button does; the run keeps its id, parameters and logical date.
    drill.stack.request("POST", f"/flow_runs/{run['id']}/set_state", {
        "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "retried after a lost worker"},
        "force": True})
    retried = drill.stack.wait_for(run["id"], timeout=300)
    assert retried["state_type"] == "COMPLETED", retried["state"]
    assert retried["run_count"] >= 2
    forecasts = drill.forecasts("killed")
    assert forecasts["unique_id"].nunique() == SERIES and len(forecasts) == SERIES * HORIZON
    assert (forecasts["run_id"] == run["id"]).all() and not forecasts.duplicated(["unique_id", "step"]).any()
    assert not (drill.root / "_staging" / run["id"]).exists(), "the retry must clean up after both attempts"
    drill.workers[name] = drill.stack.start_worker("cpu", "--name", name)  # back to two workers


def test_server_restarted_in_the_middle_of_a_run(drill: Drill) -> None:
    run = drill.trigger("restart")
    staging = drill.root / "_staging" / run["id"]
    wait_until(lambda: (staging / "input.parquet").is_file(), 300, "the run to load its input")
    killed_at = datetime.now(timezone.utc)
    outage = drill.stack.restart_server(down_seconds=3)
    final = drill.stack.wait_for(run["id"], timeout=300)
    assert final["state_type"] == "COMPLETED", final["state"]
    assert datetime.fromisoformat(final["end_time"]) > killed_at, "the run must have outlived the server"
    forecasts = drill.forecasts("restart")
    assert forecasts["unique_id"].nunique() == SERIES and (forecasts["run_id"] == run["id"]).all()
    print(f"server down for {outage:.1f} s in the middle of the run; the run completed")


def test_twenty_runs_at_once_against_a_limited_deployment(drill: Drill) -> None:
    deployment = drill.stack.request("GET", f"/deployments/{drill.deployment}")
    limit = deployment["global_concurrency_limit"]["limit"]
    assert limit == 4 and deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE", deployment
    source = {"kind": "file", "path": str(SAMPLE)}
    result = submit_at_once(drill.stack, drill.deployment,
                            [{"source": source, "horizon": 4, "job": f"load-{i:02d}", "as_of": AS_OF}
                             for i in range(20)])
    print(result.report())
    assert [r["state_type"] for r in result.runs] == ["COMPLETED"] * 20, [r["state"] for r in result.runs]
    assert len({r["id"] for r in result.runs}) == 20
    assert max_running_at_once(result.runs) <= limit
    for i, run in enumerate(result.runs):
        forecasts = drill.forecasts(f"load-{i:02d}")
        assert (forecasts["run_id"] == run["id"]).all(), "each run writes its own output, once"
        assert forecasts["unique_id"].nunique() == 12


def readable(path: Path) -> str:
    """A file's content as text a substring search can see into (Parquet pages are compressed)."""
    raw = path.read_bytes().decode("latin-1")
    if path.suffix == ".parquet":
        return raw + pd.read_parquet(path).to_csv()
    return raw


def test_secrets_of_a_run_never_reach_what_it_wrote(drill: Drill) -> None:
    with http_server() as server:
        server.routes["/private/macro.csv"] = Route(body=SAMPLE.read_bytes(), require=("X-Api-Token",
                                                                                       SECRETS["header"]))
        url = server.url("/private/macro.csv") + f"?api_key={SECRETS['url']}"
        # Created the way an operator would, by a client of the stack's API (not through this process, whose
        # Prefect settings point at the session's test API).
        drill.stack.python("-c", "import json, sys; from prefect.blocks.system import Secret; "
                           "Secret(value=sys.argv[1]).save('sales-url', overwrite=True); "
                           "Secret(value=json.loads(sys.argv[2])).save('sales-headers', overwrite=True)",
                           url, json.dumps({"X-Api-Token": SECRETS["header"]}))
        run = drill.trigger("secrets", {"kind": "url", "url_secret": "sales-url", "headers_secret": "sales-headers"})
        final = drill.stack.wait_for(run["id"], timeout=300)
    assert final["state_type"] == "COMPLETED", final["state"]
    assert server.hits["/private/macro.csv"] == 1 and drill.forecasts("secrets")["unique_id"].nunique() == 12
    assert final["parameters"]["source"]["url_secret"] == "sales-url"

    written = {"prefect database (pg_dump)": drill.stack.dump()}
    for directory in (drill.stack.directory, drill.mlflow.directory):
        written.update({str(path): readable(path) for path in directory.rglob("*") if path.is_file()})
    assert "sales-url" in written["prefect database (pg_dump)"], "the scan must see the Prefect database"
    # Prefect stores Secret block values encrypted, so even they must not show in the dump in clear.
    leaks = [(name, where) for where, text in written.items() for name, secret in SECRETS.items() if secret in text]
    assert not leaks, f"secrets found in what the runs wrote: {leaks}"
    scanned = {Path(where).name for where in written}
    assert {"batch-forecast.parquet", "_manifest.json", "store.db", "server.log", "worker-1.log",
            "catalog.duckdb", "forecast.log"} <= scanned, f"the scan missed what runs write: {sorted(scanned)}"
