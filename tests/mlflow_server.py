"""A real `mlflow server` process on 127.0.0.1, in its own process group so it can be stopped cleanly."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.processes import Process, free_port


class MlflowServer:
    """Start, stop and restart one tracking server with its own SQLite store and artifact directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Process | None = None

    def start(self, timeout: float = 90) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                   str(self.port), "--workers", "1", "--backend-store-uri", f"sqlite:///{self.directory / 'store.db'}",
                   "--artifacts-destination", str(self.directory / "artifacts")]
        self.process = Process(command, env, self.directory / "server.log", self.directory)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"mlflow server exited: {(self.directory / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"mlflow server did not answer within {timeout} s")

    def stop(self) -> None:
        if self.process:
            self.process.stop()
        self.process = None


@contextmanager
def mlflow_server(directory: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
