"""The layers hold: flows -> tasks -> pipeline -> forecast_model, no Prefect or MLflow below tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scripts.layering import check
from tests.conftest import REPO


def test_the_repository_keeps_its_layers() -> None:
    problems = check()
    assert problems == [], "\n".join(f"{p.relative_to(REPO)}:{line}: {what}" for p, line, what in problems)


def test_each_kind_of_breach_is_reported_with_its_line(tmp_path: Path) -> None:
    files = {
        "pipeline/a.py": "import os\n\ndef f():\n    from prefect import task\n",  # lazy imports count too
        "pipeline/b.py": "from tasks.load import load_series\n",
        "tasks/c.py": "import flows.common\n",
        "forecast_model/d.py": ("import duckdb\nfrom pipeline import contracts\nimport jax.numpy\n"
                                "from sklearn import svm\n"),
        "flows/e.py": "import tasks, pipeline, forecast_model, prefect, mlflow\nfrom . import sibling\n",
    }
    for name, code in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    found = {(p.relative_to(tmp_path).as_posix(), line, what.split(",")[0]) for p, line, what in check(tmp_path)}
    assert found == {
        ("pipeline/a.py", 4, "pipeline must not import prefect"),
        ("pipeline/b.py", 1, "pipeline may import only ['forecast_model']"),
        ("tasks/c.py", 1, "tasks may import only ['forecast_model'"),
        ("forecast_model/d.py", 1, "forecast_model must not import duckdb"),
        ("forecast_model/d.py", 2, "forecast_model must not import pipeline"),
        ("forecast_model/d.py", 3, "forecast_model must not import jax"),
        ("forecast_model/d.py", 4, "forecast_model must not import sklearn"),
    }, found


def test_the_core_runs_without_orchestration_or_tracking() -> None:
    modules = sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                     for p in (REPO / "pipeline").rglob("*.py"))
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print([m for m in ('prefect', 'mlflow', 'jax', 'sklearn') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                          cwd=REPO)
    assert done.stdout.strip() == "[]", f"importing pipeline pulled in {done.stdout.strip()}"
