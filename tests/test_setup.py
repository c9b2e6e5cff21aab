"""The first commands a user types: `./setup.sh init` shows progress, not pip's every line, and `./setup.sh run`
says what it is about to run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow  # a `forecast` process with an ephemeral Prefect server
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


def fake_checkout(tmp_path: Path, install_exit: int) -> Path:
    """setup.sh and a pyproject in a directory whose install script is noisy pip stand-in."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "setup.sh").write_bytes((REPO / "setup.sh").read_bytes())
    (tmp_path / "setup.sh").chmod(0o755)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "scripts" / "install.sh").write_text(
        'for i in $(seq 300); do echo "Collecting package-$i"; done\n'
        'echo "==> torch 2.13.0"\n'
        'for i in $(seq 300); do echo "Downloading package-$i" >&2; done\n'
        'echo "==> the package"\n'
        f'[ {install_exit} = 0 ] || echo "ERROR: No matching distribution found for nothing-such==1" >&2\n'
        f"exit {install_exit}\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return tmp_path


@pytest.mark.parametrize("install_exit", [0, 1])
def test_init_shows_progress_and_keeps_pips_output_in_a_log(tmp_path: Path, install_exit: int) -> None:
    checkout = fake_checkout(tmp_path, install_exit)
    done = subprocess.run(["bash", "setup.sh", "init"], cwd=checkout, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": sys.executable})
    log = checkout / ".venv" / "install.log"
    assert log.read_text().count("package-") == 600, "the log keeps everything pip said"
    shown = done.stderr.splitlines()
    assert "==> torch 2.13.0" in shown and "==> the package" in shown
    assert done.returncode == install_exit and (checkout / ".venv" / ".installed").exists() == (install_exit == 0)
    if install_exit == 0:
        assert len(shown) == 4 and shown[-1].startswith("Installed in "), shown
        return
    assert len(shown) < 40, "a failure shows the end of the log, not all of it"
    assert "ERROR: No matching distribution found for nothing-such==1" in done.stderr
    assert shown[-1] == ("error: installing failed (whole log: .venv/install.log). Fix the cause above and run "
                         "./setup.sh init again.")
