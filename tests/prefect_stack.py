"""Real Prefect processes for end-to-end tests: a server on PostgreSQL, a process worker.

The server requires an API password (``PREFECT_SERVER_API_AUTH_STRING``), as ``./setup.sh serve`` and
compose run it; every client here sends it. Every process gets its own process group and is stopped by its
PID; databases are created per test run and dropped afterwards.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import REPO, postgres_reachable, require
from tests.processes import Process, free_port

PREFECT = str(REPO / ".venv" / "bin" / "prefect")

# For the end-to-end tests' stacks (the benchmarks' keep Prefect's defaults): workers look for runs every second,
# not every 10 s, so a run starts about when a test (or a parent flow) creates it, not up to 10 s later. Nothing a
# test asserts depends on how often workers poll.
QUICK_POLLING = {"PREFECT_WORKER_QUERY_SECONDS": "1"}


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True, capture_output=True, timeout=60)


class PrefectStack:
    """A Prefect server on a fresh PostgreSQL database, and the environment its clients need."""

    def __init__(self, directory: Path, env: dict[str, str], database_password: str | None = None) -> None:
        self.directory = directory
        self.database = f"prefect_e2e_{uuid.uuid4().hex[:8]}"
        # A password-protected database owner, as in production (PostgreSQL here trusts 127.0.0.1, so the
        # password is not checked, but it is in the server's connection URL like a real one).
        self.database_password = database_password or secrets.token_urlsafe(12)
        self.database_url = (f"postgresql+asyncpg://{self.database}:{self.database_password}"
                             f"@127.0.0.1:5432/{self.database}")
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.auth = f"e2e:{secrets.token_urlsafe(16)}"
        self.env = {**env, "PREFECT_API_URL": self.api, "PREFECT_HOME": str(directory / "prefect-home"),
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_AUTH_STRING": self.auth}
        self.processes: list[Process] = []

    def start_server(self, timeout: float = 180) -> None:
        require(postgres_reachable(), "PostgreSQL is not reachable at 127.0.0.1:5432 (the Prefect server of the "
                                      "end-to-end tests runs on it)")
        psql(f"CREATE ROLE {self.database} LOGIN PASSWORD '{self.database_password}'")
        psql(f"CREATE DATABASE {self.database} OWNER {self.database}")
        self.server = self._server()
        self._wait_healthy(timeout)

    def restart_server(self, down_seconds: float = 0, timeout: float = 180) -> float:
        """Kills the server (SIGKILL: a crash or a lost host, no graceful shutdown), waits ``down_seconds``,
        starts it again on the same port and database; returns the outage in seconds."""
        started = time.monotonic()
        self.server.kill()
        self.processes.remove(self.server)
        time.sleep(down_seconds)
        self.server = self._server()
        self._wait_healthy(timeout)
        return time.monotonic() - started

    def _server(self) -> Process:
        server_env = {**self.env, "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url,
                      "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_API_AUTH_STRING": self.auth}
        server = Process([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                         server_env, self.directory / "server.log", self.directory)
        self.processes.append(server)
        return server

    def _wait_healthy(self, timeout: float) -> None:
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

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, auth: str | None = "") -> Any:
        """One API call, authenticated with the stack's password unless ``auth`` says otherwise (None: none)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", **basic_auth(self.auth if auth == "" else auth)}
        request = urllib.request.Request(self.api + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def wait_for(self, flow_run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.request("GET", f"/flow_runs/{flow_run_id}")
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(0.5)
        raise TimeoutError(f"flow run {flow_run_id} did not finish; worker log: "
                           f"{sorted(self.directory.glob('worker-*.log'))[-1].read_text()[-3000:]}")

    def stop(self) -> None:
        """Stops the workers (and any other process) all at once, then the server, also after
        :meth:`restart_server` put it last: a worker whose server went first waits for it until killed."""
        server = getattr(self, "server", None)
        others = [process for process in reversed(self.processes) if process is not server]
        for process in others:
            process.terminate()
        for process in [*others, *([server] if server else [])]:
            process.stop()
        try:
            psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            psql(f"DROP ROLE IF EXISTS {self.database}")
        except subprocess.CalledProcessError:
            pass

    def dump(self) -> str:
        """Everything the server stored, as SQL text (pg_dump of its database)."""
        return subprocess.run(["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "--data-only", self.database],
                              check=True, capture_output=True, text=True, timeout=120).stdout


def basic_auth(user_password: str | None) -> dict[str, str]:
    """The Authorization header the Prefect server's API password wants (none for None)."""
    if user_password is None:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(user_password.encode()).decode()}


def http_error(call: Any) -> tuple[int, str]:
    """Status and body of an HTTPError raised by ``call()``."""
    try:
        call()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    raise AssertionError("the request was accepted")
