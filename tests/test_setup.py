"""`./setup.sh run`, the first command a user types, says what it is about to run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # a `forecast` process with an ephemeral Prefect server


@pytest.mark.parametrize("given", [["--checkpoint", "/nowhere/ckpt"], ["--checkpoint=/nowhere/ckpt"]])
def test_run_names_the_checkpoint_it_was_given(tmp_path: Path, given: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST", "TIMESFM20_"))}
    env.update({"FORECAST_DATA_DIR": str(tmp_path), "PREFECT_HOME": str(tmp_path / "prefect"),
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "HF_HUB_OFFLINE": "1"})
    done = subprocess.run([str(REPO / "setup.sh"), "run", *given], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Forecasting data/samples/us_macro_quarterly.csv with /nowhere/ckpt ..." in done.stderr, done.stderr[:500]
    assert "google/timesfm" not in done.stderr.split("\n", 1)[0]
    assert "'/nowhere/ckpt' is neither an existing path" in done.stderr
