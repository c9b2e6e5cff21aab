"""flows/logging.yml: Prefect's own logging config, extended with the shared log file, not a replacement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import prefect.logging.configuration
import yaml

from tests.conftest import REPO

OURS = REPO / "flows" / "logging.yml"


def without_our_additions(config: dict[str, Any]) -> dict[str, Any]:
    config = yaml.safe_load(yaml.safe_dump(config))  # a copy
    del config["handlers"]["forecast_file"]
    for name in ("forecast_model", "pipeline"):
        del config["loggers"][name]
    for holder in [config["root"], *config["loggers"].values()]:
        if "handlers" in holder:
            holder["handlers"] = [h for h in holder["handlers"] if h != "forecast_file"]
    return config


def test_it_is_prefects_default_plus_the_log_file() -> None:
    """Fails when a Prefect upgrade changes its default: take the new one and add the marked lines again."""
    prefects = yaml.safe_load(prefect.logging.configuration.DEFAULT_LOGGING_SETTINGS_PATH.read_text())
    ours = yaml.safe_load(OURS.read_text())
    assert without_our_additions(ours) == prefects
    assert ours["handlers"]["forecast_file"] == {"()": "pipeline.logfile.file_handler"}
    assert "forecast_file" in ours["root"]["handlers"] and "forecast_file" in ours["loggers"]["uvicorn"]["handlers"]


def run_python(code: str, tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST", "FORECAST_", "LOG_"))}
    env.update({"PREFECT_LOGGING_SETTINGS_PATH": str(OURS), "PREFECT_HOME": str(tmp_path / ".prefect"),
                "FORECAST_LOG_FILE": str(tmp_path / "forecast.log"), **variables})
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_any_process_importing_prefect_with_it_writes_the_file(tmp_path: Path) -> None:
    """What the server, a worker and its flow-run processes do: Prefect loads the config at import."""
    code = ("import logging\nfrom prefect import flow  # as every flow module does; Prefect configures logging\n"
            "logging.getLogger('pipeline.sources').info('from the pipeline')\n"
            "logging.getLogger('forecast_model.engine').info('from the engine')\n"
            "logging.getLogger('prefect.workers').warning('from a worker')\n"
            "logging.getLogger('some.library').info('library chatter')\n")
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "forecast.log").read_text()
    for message in ("pipeline.sources: from the pipeline", "forecast_model.engine: from the engine",
                    "prefect.workers: from a worker"):
        assert message in text, text
    assert "library chatter" not in text, "other libraries log warnings and up, as under Prefect's default"
    assert "from the engine" in done.stderr, "the terminal keeps Prefect's console output"


def test_a_bad_log_setting_never_breaks_prefect(tmp_path: Path) -> None:
    done = run_python("from prefect import flow; print('imported')", tmp_path, FORECAST_LOG_BACKUP_COUNT="many")
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr[-3000:]
    assert "warning: no log file (FORECAST_LOG_BACKUP_COUNT: Input should be a valid integer" in done.stderr
    assert not (tmp_path / "forecast.log").exists()
