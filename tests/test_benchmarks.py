"""The engine benchmark's quick mode: correctness of every precision against the timesfm API (CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# Whole flow runs (or processes) per test: the full suite runs them, ./setup.sh test-fast does not.
pytestmark = pytest.mark.slow


def test_quick_benchmark_checks_correctness(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "engine_benchmark.py"), "--quick", "--precisions",
               "fp32,tf32,bf16", "--batch-sizes", "4,16", "--json", str(tmp_path / "r.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["timesfm API"] + ["engine packed"] * 6 + ["engine padded"] * 6
    fp32 = [r for r in rows if r["method"] != "timesfm API" and r["precision"] == "fp32"]
    assert len(fp32) == 4 and all(r["rel_error"] <= 1e-5 and r["nan"] == 0 for r in fp32), fp32
    assert "series/s" in done.stdout and "device:" in done.stdout


# The CI-sized scale run: 100k series x 200 points through the whole sharded flow in one process. Measured
# at about 2.2 GB peak RSS on the 2-core machine, and 1M series stay at about the same (docs/PERFORMANCE.md):
# memory follows the shard size. The bound leaves room for noise.
MEMORY_BOUND_MB = 3000


def test_scale_benchmark_100k_series_stays_under_its_memory_bound(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "scale_benchmark.py"), "memory", "--series", "100000",
               "--workdir", str(tmp_path), "--json", str(tmp_path / "r.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["series_ok"] == 100_000 and result["shards"] == 5
    assert result["forecast_rows"] == 100_000 * result["horizon"]
    assert result["peak_rss_mb"] < MEMORY_BOUND_MB, result
    assert "peak RSS" in done.stdout
