"""The metrics exporter over real published files, scraped over HTTP on 127.0.0.1 and parsed as Prometheus
parses them; and the alert rules, checked and unit-tested by Prometheus' own promtool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.contracts import EVALUATION_SCHEMA
from pipeline.manifest import write_manifest
from pipeline.metrics import serve_metrics
from pipeline.tables import write_table
from tests.pipeline.test_manifest import manifest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deployments" / "prometheus"
NOW = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)


def publish_run(root: Path, job: str, as_of: str, created: datetime, **fields: object) -> None:
    """A run's row where the publish step puts it: runs/job=<job>/as_of=<day>/<flow>.parquet."""
    staging = root / "_staging" / f"{job}-{as_of}"
    staging.mkdir(parents=True)
    run = manifest(**fields).model_copy(update={"job": job, "as_of": as_of, "created_at": created})
    target = root / "runs" / f"job={job}" / f"as_of={as_of}"
    target.mkdir(parents=True)
    write_manifest(run, staging).rename(target / f"{run.flow_name}.parquet")


def publish_backtest(root: Path, job: str, as_of: str, created: datetime, mase: float) -> None:
    target = root / "evaluations" / f"job={job}" / f"as_of={as_of}"
    target.mkdir(parents=True)
    rows = [{"unique_id": uid, "model": model, "n_windows": 3, "n_points": 36, "mae": 1.0, "rmse": 1.0,
             "smape": 0.1, "mase": value, "scaled_crps": 0.2, "coverage_80": 0.8, "beats_seasonal_naive": True,
             "season_length": 4, "run_id": "r", "created_at": created}
            for uid, model, value in (("__all__", "timesfm", mase), ("__all__", "seasonal_naive", 1.0),
                                      ("a", "timesfm", 9.9))]
    write_table(pd.DataFrame(rows), EVALUATION_SCHEMA, target / "data.parquet")


def health(root: Path, status: str, model: str) -> None:
    (root / "_health").mkdir(parents=True, exist_ok=True)
    (root / "_health" / "health.json").write_text(json.dumps({
        "status": status, "timestamp": NOW.isoformat(), "models": {"timesfm20": {"status": model}},
        "checks": {"model": {"ok": model == "ready"}, "output_root": {"ok": True}}}))


def scrape(root: Path) -> str:
    server, thread = serve_metrics(root, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as answer:
            return answer.read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=10)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_latest_run_of_each_job_its_backtest_and_health_are_served(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    publish_run(root, "sales", "2026-11-25", NOW - timedelta(days=2), timings={"load": 1.0, "total": 4.0})
    publish_run(root, "sales", "2026-11-26", NOW - timedelta(hours=5), timings={"total": 2.0})  # the latest
    publish_run(root, "macro", "2026-11-26", NOW - timedelta(hours=7), timings={"load": 0.5})
    publish_backtest(root, "sales", "2026-11-20", NOW - timedelta(days=7), mase=0.5)
    publish_backtest(root, "sales", "2026-11-26", NOW - timedelta(hours=6), mase=0.75)  # the latest
    health(root, "unhealthy", "error")
    text = scrape(root)
    got = samples(text)
    sales = (("flow", "batch-forecast"), ("job", "sales"))
    assert got[("forecast_last_success_timestamp_seconds", sales)] == (NOW - timedelta(hours=5)).timestamp()
    assert got[("forecast_last_success_as_of_timestamp_seconds", sales)] == \
        datetime(2026, 11, 26, tzinfo=timezone.utc).timestamp()
    assert got[("forecast_published_partitions", sales)] == 2
    assert got[("forecast_last_run_duration_seconds", sales)] == 2.0
    assert got[("forecast_last_run_series_per_second", sales)] == 10 / 2.0, "series_ok of the manifest: 10"
    assert got[("forecast_last_run_series", (*sales, ("outcome", "rejected")))] == 1
    assert got[("forecast_last_run_left_out_series", (*sales, ("reason", "non_finite_forecast")))] == 1
    age = got[("forecast_last_success_age_seconds", sales)]
    assert age >= (datetime.now(timezone.utc) - (NOW - timedelta(hours=5))).total_seconds() - 60
    macro = (("flow", "batch-forecast"), ("job", "macro"))
    assert ("forecast_last_run_duration_seconds", macro) not in got, "no total recorded: no duration claimed"
    assert got[("forecast_backtest_accuracy", (("job", "sales"), ("metric", "mase"), ("model", "timesfm")))] == 0.75
    assert ("forecast_backtest_accuracy", (("job", "sales"), ("metric", "mase"), ("model", "a"))) not in got
    assert got[("forecast_health_ok", ())] == 0 and got[("forecast_model_status", (("status", "error"),))] == 1
    assert got[("forecast_model_status", (("status", "ready"),))] == 0
    assert got[("forecast_health_check_ok", (("check", "model"),))] == 0
    assert all(got[("forecast_exporter_read_ok", (("part", part),))] == 1 for part in ("runs", "evaluations",
                                                                                        "health"))
    promtool = promtool_or_none()
    if promtool:  # Prometheus' own linter of the exposition format
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_missing_or_broken_parts_are_reported_not_raised(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    got = samples(scrape(root))
    assert {name for name, _ in got} == {"forecast_exporter_read_ok"}, "an empty root: nothing but the read status"
    assert all(value == 0 for value in got.values())
    publish_run(root, "sales", "2026-11-26", NOW)
    (root / "_health").mkdir()
    (root / "_health" / "health.json").write_text("{not json")
    got = samples(scrape(root))
    assert got[("forecast_exporter_read_ok", (("part", "runs"),))] == 1
    assert got[("forecast_exporter_read_ok", (("part", "health"),))] == 0
    assert ("forecast_health_ok", ()) not in got


def promtool_or_none() -> str | None:
    found = shutil.which("promtool", path=str(Path(sys.executable).parent)) or shutil.which("promtool")
    if found is None and os.environ.get("CI"):
        pytest.fail("promtool is missing in CI: ./setup.sh installs it from Debian's prometheus package")
    return found


def test_the_alert_rules_are_valid_and_fire_on_what_they_are_about() -> None:
    promtool = promtool_or_none()
    if promtool is None:  # a machine without apt: at least the structure Prometheus requires
        import yaml

        rules = yaml.safe_load((RULES / "forecast-alerts.yml").read_text())["groups"][0]["rules"]
        assert all({"alert", "expr", "labels", "annotations"} <= set(rule) for rule in rules)
        return
    checked = subprocess.run([promtool, "check", "rules", "forecast-alerts.yml"], cwd=RULES, capture_output=True,
                             text=True)
    assert checked.returncode == 0 and "SUCCESS: 7 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "forecast-alerts.test.yml"], cwd=RULES,
                            capture_output=True, text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
