"""Shared fixtures, built in layers: environment -> tiny checkpoint -> Prefect API -> per-test stores."""

from __future__ import annotations

import os

# Before anything imports Prefect, MLflow or huggingface_hub: they read these at import.
os.environ.update({
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
})

import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecast_model import EngineConfig, ResolvedCheckpoint, make_tiny_checkpoint, reproducible_cpu_math
from pipeline.run import ResolvedRun

# As a worker's engine load does, but before any test multiplies a matrix: MKL fixes its mode at the first one.
reproducible_cpu_math()

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "us_macro_quarterly.csv"


def require(condition: bool, reason: str) -> None:
    """Skips the test when ``condition`` fails, except in CI (``CI=true``), where it fails instead: CI has
    PostgreSQL and runs as root, so nothing may be skipped there without anyone noticing."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}, and CI=true: in CI this test must run, not be skipped")
    pytest.skip(reason)


def postgres_reachable(host: str = "127.0.0.1", port: int = 5432) -> bool:
    """Whether a PostgreSQL server listens where the end-to-end tests put their Prefect databases."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def make_run(**fields: Any) -> ResolvedRun:
    """A resolved run for task-level tests: ``fields`` override a small CPU run of job ``test``."""
    defaults: dict[str, Any] = {"run_id": "run-1", "job": "test", "as_of": date(2027, 1, 1),
                                "output_root": Path("/nonexistent/outputs"), "horizon": 8, "context_len": 512,
                                "engine": EngineConfig(device="cpu"), "checks": {}}
    return ResolvedRun.model_validate({**defaults, **fields})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> ResolvedCheckpoint:
    """A 2-layer TimesFM checkpoint with seeded random weights and its config.json."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint"))


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real, temporary Prefect API server for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data directory and MLflow SQLite store; no test sees the repository's data/."""
    monkeypatch.chdir(tmp_path)
    for name in ("FORECAST_OUTPUT_ROOT", "TIMESFM20_DEFAULT_CHECKPOINT", "TIMESFM20_DEFAULT_BACKEND",
                 "TIMESFM20_DEFAULT_CONTEXT_LEN", "TIMESFM20_DEFAULT_HORIZON_LEN", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FORECAST_DATA_ROOTS", os.pathsep.join([str(tmp_path), str(SAMPLE.parent)]))
    monkeypatch.setenv("FORECAST_URL_ALLOWLIST", "127.0.0.1/32")
    monkeypatch.setenv("FORECAST_URL_READ_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "data").mkdir()
    return tmp_path


@pytest.fixture(scope="session")
def sample_frame() -> pd.DataFrame:
    """The shipped real sample (US macro, quarterly, long format)."""
    return pd.read_csv(SAMPLE)
