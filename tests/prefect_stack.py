"""Real Prefect processes for end-to-end tests: a server on PostgreSQL, a process worker.

Every process gets its own process group and is stopped by its PID; databases are created per test run
and dropped afterwards.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.processes import Process, free_port

PREFECT = str(REPO / ".venv" / "bin" / "prefect")


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True, capture_output=True, timeout=60)


class PrefectStack:
    """A Prefect server on a fresh PostgreSQL database, and the environment its clients need."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.database = f"prefect_e2e_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {**env, "PREFECT_API_URL": self.api, "PREFECT_HOME": str(directory / "prefect-home"),
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        self.processes: list[Process] = []

    def start_server(self, timeout: float = 180) -> None:
        psql(f"CREATE DATABASE {self.database}")
        server_env = {**self.env, "PREFECT_API_DATABASE_CONNECTION_URL":
                      f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.database}", "PREFECT_UI_ENABLED": "false"}
        self.processes.append(Process([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                      server_env, self.directory / "server.log", self.directory))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health") is True:
                    return
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"Prefect server did not start: {(self.directory / 'server.log').read_text()[-3000:]}")

    def cli(self, *args: str, cwd: Path = REPO) -> str:
        done = subprocess.run([PREFECT, *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"prefect {' '.join(args)} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        return done.stdout

    def python(self, *args: str) -> str:
        """Runs this repository's Python against the stack's API; returns its output."""
        done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"python {' '.join(args)} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        return done.stdout

    def start_worker(self, pool: str, *options: str) -> Process:
        worker = Process([PREFECT, "worker", "start", "--pool", pool, "--type", "process", *options], self.env,
                         self.directory / f"worker-{len(self.processes)}.log", REPO)
        self.processes.append(worker)
        return worker

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def wait_for(self, flow_run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.request("GET", f"/flow_runs/{flow_run_id}")
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(2)
        raise TimeoutError(f"flow run {flow_run_id} did not finish; worker log: "
                           f"{sorted(self.directory.glob('worker-*.log'))[-1].read_text()[-3000:]}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        try:
            psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        except subprocess.CalledProcessError:
            pass


def http_error(call: Any) -> tuple[int, str]:
    """Status and body of an HTTPError raised by ``call()``."""
    try:
        call()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    raise AssertionError("the request was accepted")
