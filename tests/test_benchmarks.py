"""The engine benchmark's quick mode: correctness of every precision against the timesfm API (CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_quick_benchmark_checks_correctness(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "engine_benchmark.py"), "--quick", "--precisions",
               "fp32,tf32,bf16", "--batch-sizes", "4,16", "--json", str(tmp_path / "r.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["timesfm API"] + ["engine"] * 6
    fp32 = [r for r in rows if r["method"] == "engine" and r["precision"] == "fp32"]
    assert all(r["rel_error"] <= 1e-5 and r["nan"] == 0 for r in fp32), fp32
    assert "series/s" in done.stdout and "device:" in done.stdout
