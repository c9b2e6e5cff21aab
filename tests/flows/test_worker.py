"""`forecast worker`: checks that the host can serve before it polls a pool, and pins its runs to one GPU.

These run the console script as an operator does, on this CPU-only machine: a worker pinned to a GPU must
refuse to start with the health report and the fix, and never reach Prefect.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

FORECAST = REPO / ".venv" / "bin" / "forecast"


def forecast(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST", "FORECAST_"))}
    # An API nobody answers: a worker that got past its checks would fail to reach it, not run.
    env.update({"FORECAST_DATA_DIR": str(cwd / "data"), "PREFECT_API_URL": "http://127.0.0.1:9/api",
                "CUDA_VISIBLE_DEVICES": ""})  # no GPU, also where the tests run on a GPU host
    return subprocess.run([str(FORECAST), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_a_worker_pinned_to_gpu_1_on_a_cpu_host_exits_2_with_no_such_gpu_in_its_report(tmp_path: Path) -> None:
    done = forecast("worker", "--pool", "gpu", "--device-index", "1", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "unhealthy"
    assert set(report["checks"]) == {"device", "output_root"}
    device = report["checks"]["device"]
    assert not device["ok"] and device["detail"].startswith("No such GPU: device index 1 was requested")
    assert "Fix: pin each worker to an index below" in device["detail"]
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error == [f"error: This worker cannot serve, so it did not start. [device] {device['detail']}"]
    assert "worker start" not in done.stderr and "Traceback" not in done.stderr, "no Prefect worker was started"


@pytest.mark.slow
def test_a_cpu_worker_passes_its_checks_and_a_pin_on_cpu_is_refused(tmp_path: Path) -> None:
    checked = forecast("worker", "--pool", "cpu", "--check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["status"] == "healthy" and report["checks"]["device"]["detail"].startswith("cpu")
    refused = forecast("worker", "--pool", "cpu", "--device", "cpu", "--device-index", "0", cwd=tmp_path)
    assert refused.returncode == 2
    assert "error: --device-index pins a GPU; it cannot go with --device cpu. Fix: drop one." in refused.stderr


@pytest.mark.slow
def test_health_on_gpu_on_a_cpu_host_is_unhealthy_with_the_fix(tmp_path: Path) -> None:
    done = forecast("health", "--no-model", "--device", "gpu", cwd=tmp_path)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["status"] == "unhealthy"
    assert "install a CUDA build of torch on a GPU host" in report["checks"]["device"]["detail"]
    pinned = json.loads(forecast("health", "--no-model", "--device", "gpu", "--device-index", "1",
                                 cwd=tmp_path).stdout)
    assert pinned["checks"]["device"]["detail"].startswith("No such GPU: device index 1")
