"""The health-check flow under a real Prefect API, and `forecast health` for container health checks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from flows.health_check import health_check
from forecast_model import ResolvedCheckpoint
from pipeline.params import ModelParams
from tasks.health import UnhealthyError
from tests.conftest import REPO


@pytest.mark.usefixtures("prefect_api")
def test_healthy_flow_writes_the_report(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    report = health_check(model=ModelParams(checkpoint=str(tiny_checkpoint.weights.parent)), min_free_gb=0.001)
    assert report["status"] == "healthy" and report["models"]["timesfm20"]["status"] == "ready"
    saved = json.loads((workspace / "data" / "outputs" / "_health" / "health.json").read_text())
    assert saved["timestamp"] == report["timestamp"] and "prefect_api" in saved["checks"]


@pytest.mark.usefixtures("prefect_api")
def test_unhealthy_flow_fails_naming_the_check(workspace: Path) -> None:
    with pytest.raises(UnhealthyError, match=r"Unhealthy: \{'model'"):
        health_check(model=ModelParams(checkpoint=str(workspace / "nowhere")), min_free_gb=0.001)
    saved = json.loads((workspace / "data" / "outputs" / "_health" / "health.json").read_text())
    assert saved["status"] == "unhealthy" and saved["models"]["timesfm20"]["status"] == "error"


@pytest.mark.slow
@pytest.mark.parametrize(("checkpoint_ok", "code"), [(True, 0), (False, 1)])
def test_forecast_health_exit_code(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint, checkpoint_ok: bool,
                                   code: int) -> None:
    checkpoint = str(tiny_checkpoint.weights.parent) if checkpoint_ok else str(tmp_path / "missing")
    env = {**os.environ, "FORECAST_DATA_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([str(REPO / ".venv" / "bin" / "forecast"), "health", "--checkpoint", checkpoint,
                           "--min-free-gb", "0.001"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == code, done.stdout + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["status"] == ("healthy" if checkpoint_ok else "unhealthy")
