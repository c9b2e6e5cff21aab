"""Prometheus metrics of what the pipeline published and of the last health report: what an operator alerts on.

Read at every scrape from the output root (the ``runs`` and ``evaluations`` tables, ``_health/health.json``),
so the exporter holds no state and any number of them can serve one root. Flow-run states (running,
failed, crashed) are Prefect's: its own exporter, ``prometheus-prefect-exporter``, serves them beside this
one (docs/DEPLOYMENT.md). A failed run publishes nothing, so here it shows as a job that got stale.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forecast_model import ModelState
from pipeline.errors import InputDataError
from pipeline.sources.database import time_limit

__all__ = ["OutputsCollector", "serve_metrics"]

MODEL_STATUSES = tuple(state.value for state in ModelState)
_BACKTEST_METRICS = ("mase", "smape", "scaled_crps", "coverage_80")
_QUERY_SECONDS = 20.0  # a scrape must answer well within Prometheus' own timeout

_LATEST_RUNS = """
SELECT job, flow_name, CAST(as_of AS VARCHAR) AS as_of, created_at, series_ok, series_rejected, series_failed,
       rejected_by_reason, timings, count(*) OVER (PARTITION BY job, flow_name) AS partitions
FROM read_parquet({files}, hive_partitioning = true, union_by_name = true)
QUALIFY row_number() OVER (PARTITION BY job, flow_name ORDER BY created_at DESC) = 1
ORDER BY job, flow_name
"""

_LATEST_BACKTESTS = f"""
SELECT job, model, {", ".join(_BACKTEST_METRICS)}
FROM read_parquet({{files}}, hive_partitioning = true, union_by_name = true)
WHERE unique_id = '__all__'
QUALIFY rank() OVER (PARTITION BY job ORDER BY created_at DESC) = 1
ORDER BY job, model
"""


_RUN_GAUGES: dict[str, tuple[str, str, list[str]]] = {
    "success": ("forecast_last_success_timestamp_seconds",
                "When the latest published run of the job was created (Unix time)", []),
    "as_of": ("forecast_last_success_as_of_timestamp_seconds",
              "The logical date (as_of, midnight UTC) of the latest published run", []),
    "age": ("forecast_last_success_age_seconds", "Seconds since the latest published run of the job was created", []),
    "duration": ("forecast_last_run_duration_seconds",
                 "Seconds from the first data stage to publish of the latest run", []),
    "rate": ("forecast_last_run_series_per_second", "Series forecast per second of the latest run's stages", []),
    "series": ("forecast_last_run_series", "Series of the latest run by outcome", ["outcome"]),
    "reasons": ("forecast_last_run_left_out_series", "Series of the latest run left out, by reason", ["reason"]),
    "partitions": ("forecast_published_partitions",
                   "Published runs (one per job, flow and as_of) under the output root", []),
}


class OutputsCollector(Collector):
    """Gauges of the latest published run of each job and flow, the latest backtest's accuracy of each job,
    and the last health report under ``output_root``; ``forecast_exporter_read_ok`` says which of the three
    could be read at this scrape."""

    def __init__(self, output_root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root, self.clock = output_root, clock

    def collect(self) -> Iterator[Metric]:
        read_ok = GaugeMetricFamily("forecast_exporter_read_ok", "1 if this part of the outputs could be read at "
                                    "this scrape (0: missing or unreadable)", labels=["part"])
        for part, metrics in (("runs", self._runs), ("evaluations", self._backtests), ("health", self._health)):
            try:
                families = list(metrics())
            except (duckdb.Error, InputDataError, OSError, ValueError, KeyError, TypeError):
                families = []
            read_ok.add_metric([part], 1.0 if families else 0.0)
            yield from families
        yield read_ok

    def _runs(self) -> Iterator[Metric]:
        rows = _query(_LATEST_RUNS, self.root / "runs")
        now = self.clock()
        families = {key: GaugeMetricFamily(name, text, labels=["job", "flow", *extra])
                    for key, (name, text, extra) in _RUN_GAUGES.items()}
        for row in rows:
            key = [str(row["job"]), str(row["flow_name"])]
            created = row["created_at"].timestamp()
            timings = json.loads(row["timings"] or "{}")
            families["success"].add_metric(key, created)
            families["as_of"].add_metric(key, datetime.fromisoformat(row["as_of"]).replace(
                tzinfo=timezone.utc).timestamp())
            families["age"].add_metric(key, max(now - created, 0.0))
            families["partitions"].add_metric(key, float(row["partitions"]))
            if "total" in timings:
                families["duration"].add_metric(key, float(timings["total"]))
                families["rate"].add_metric(key, row["series_ok"] / max(float(timings["total"]), 1e-9))
            for outcome in ("ok", "rejected", "failed"):
                families["series"].add_metric([*key, outcome], float(row[f"series_{outcome}"]))
            for reason, count in sorted(json.loads(row["rejected_by_reason"] or "{}").items()):
                families["reasons"].add_metric([*key, str(reason)], float(count))
        if rows:
            yield from families.values()

    def _backtests(self) -> Iterator[Metric]:
        rows = _query(_LATEST_BACKTESTS, self.root / "evaluations")
        family = GaugeMetricFamily("forecast_backtest_accuracy", "Accuracy of the latest backtest of the job over "
                                   "all its series (mase, smape, scaled_crps: lower is better; coverage_80: share "
                                   "of actuals inside q10-q90)", labels=["job", "model", "metric"])
        for row in rows:
            for metric in _BACKTEST_METRICS:
                if row[metric] is not None:
                    family.add_metric([str(row["job"]), str(row["model"]), metric], float(row[metric]))
        if rows:
            yield family

    def _health(self) -> Iterator[Metric]:
        report = json.loads((self.root / "_health" / "health.json").read_text())
        model = report["models"]["timesfm20"]
        healthy = GaugeMetricFamily("forecast_health_ok", "1 if the last health report was healthy")
        healthy.add_metric([], 1.0 if report["status"] == "healthy" else 0.0)
        stamp = GaugeMetricFamily("forecast_health_report_timestamp_seconds", "When the last health report ran")
        stamp.add_metric([], datetime.fromisoformat(report["timestamp"]).timestamp())
        status = GaugeMetricFamily("forecast_model_status", "1 for the model status of the last health report",
                                   labels=["status"])
        for name in MODEL_STATUSES:
            status.add_metric([name], 1.0 if model["status"] == name else 0.0)
        checks = GaugeMetricFamily("forecast_health_check_ok", "1 if the check passed in the last health report",
                                   labels=["check"])
        for name, check in sorted(report.get("checks", {}).items()):
            checks.add_metric([str(name)], 1.0 if check.get("ok") else 0.0)
        yield from (healthy, stamp, status, checks)


def _query(sql: str, table: Path) -> list[dict[str, Any]]:
    """Rows of ``sql`` over a published table's files (none: an empty list), read under a time limit."""
    if not table.is_dir() or not any(table.glob("*/*/*.parquet")):
        return []
    files = "'" + str(table / "*" / "*" / "*.parquet").replace("'", "''") + "'"
    with duckdb.connect() as con, time_limit(con, _QUERY_SECONDS):
        cursor = con.execute(sql.replace("{files}", files))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def serve_metrics(output_root: Path, host: str = "127.0.0.1", port: int = 9108) -> tuple[Any, Any]:
    """Serves ``/metrics`` for ``output_root`` on ``host:port`` in a background thread; returns Prometheus'
    (server, thread): ``server.shutdown()`` stops it. Port 0 picks a free port (``server.server_port``)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(OutputsCollector(output_root))
    return start_http_server(port, addr=host, registry=registry)
