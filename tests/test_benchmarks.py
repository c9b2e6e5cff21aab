"""The engine benchmark's quick mode: correctness of every precision against the timesfm API (CI)."""

from __future__ import annotations

import json
import os
import re
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


def test_gpu_flow_check_runs_on_cpu(tmp_path: Path) -> None:
    """The device flow check's CPU variant (tiny model, small panel): every flow completes and it reports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "FORECAST_"))}
    env.update({"DEVICE": "cpu", "SERIES": "300", "ARCH": "tiny", "WORKDIR": str(tmp_path / "work"),
                "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_flow_check.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert re.search(r"^PASS: (\d+) of \1 checks passed", done.stdout, re.M), done.stdout[-4000:]
    assert "FAIL" not in done.stdout.split("flow runs:")[-1], done.stdout[-4000:]
    for run in ("sample", "panel", "panel-fp32"):
        line = next((x for x in done.stdout.splitlines() if x.strip().startswith(run + " ")), "")
        assert "series/s" in line and "forecast=" in line and "validate=" in line, f"no timings for {run}: {line!r}"
    summary = json.loads((tmp_path / "out" / "gpu_flow_check.json").read_text())
    assert summary["passed"] and summary["rel_errors"]["panel"]["series"] == 256, summary["rel_errors"]
    assert (tmp_path / "out" / "gpu_flow_check.log").is_file(), "the log was not written to $OUT"


def test_pipeline_benchmark_prints_the_baseline_and_the_flow_stages(tmp_path: Path) -> None:
    """The throughput benchmark at a small size: every baseline piece and flow stage is measured (no speed
    is asserted: speed targets live in the benchmark's figures, docs/PERFORMANCE.md)."""
    command = [sys.executable, str(REPO / "benchmarks" / "pipeline_benchmark.py"), "--series", "600", "--length",
               "60", "--workdir", str(tmp_path), "--json", str(tmp_path / "figures.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert set(figures["baseline"]) == {"read", "forecast", "write", "total"}
    stages = figures["flow_stages"]
    assert {"load", "validate", "forecast", "forecast.engine", "tracking", "publish", "catalog", "total"} <= set(stages)
    assert len(figures["flow_walls"]) == 3 and figures["flow_wall_seconds"] == figures["flow_walls"][-1]
    assert figures["flow_wall_seconds"] > stages["total"] >= stages["load"] + stages["validate"] + stages["forecast"]
    for line in ("| baseline total", "| flow stage: validate", "|   of which forecast.engine",
                 "| flow total (load start to publish end)", "| flow wall, run 1 (fresh stores)",
                 "| flow wall, run 2 (same stores)", "| flow wall, a running Prefect server"):
        assert line in done.stdout, done.stdout


def test_anomaly_benchmark_scores_injected_anomalies_against_a_z_score(tmp_path: Path) -> None:
    """The plumbing (tiny random weights): labels land in the scored windows, both methods are compared at
    the same number of flags, and the output says the figures mean nothing about TimesFM."""
    command = [sys.executable, str(REPO / "benchmarks" / "anomaly_benchmark.py"), "--window", "8",
               "--per-series", "2", "--json", str(tmp_path / "r.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["points_scored"] == 12 * 8 and 12 <= result["labelled"] <= 24, result
    assert sum(result["labels_by_kind"].values()) == result["labelled"], "every label is a scored point"
    assert result["zscore_same_flags"]["flags"] == result["timesfm"]["flags"]
    assert 0 <= result["timesfm_precision_at_k"] <= 1 and 0 <= result["zscore_precision_at_k"] <= 1
    assert "RANDOM WEIGHTS: these figures check the plumbing only" in done.stdout
