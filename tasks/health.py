"""The health task: run the checks, save the report, show it in Prefect."""

from __future__ import annotations

import dataclasses
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.health import Check, HealthConfig, build_report, check_http, run_checks, write_report
from pipeline.sources import redact_url
from tasks.secrets import with_secret_blocks

__all__ = ["UnhealthyError", "check_tracking", "health_report", "report_health"]


class UnhealthyError(RuntimeError):
    """At least one health check failed; the message names them."""


def check_tracking(uri: str) -> Check:
    """An MLflow server answers /health, or a database store can be opened and queried."""
    if uri.startswith(("http://", "https://")):
        return check_http(uri.rstrip("/") + "/health")
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except (MlflowException, OSError) as exc:
        return False, f"MLflow store {redact_url(uri)} cannot be read: {str(exc).splitlines()[0]}"
    return True, f"{redact_url(uri)} readable"


def health_report(config: HealthConfig) -> dict[str, Any]:
    """Runs every check, Secret blocks and the MLflow store included, and builds the report."""
    return build_report(run_checks(dataclasses.replace(config, policy=with_secret_blocks(config.policy)),
                                   check_tracking))


@task(name="report-health", cache_policy=NO_CACHE)
def report_health(config: HealthConfig) -> dict[str, Any]:
    """Runs every check, writes ``<output_root>/_health/health.json`` and a Markdown artifact."""
    report = health_report(config)
    path = write_report(report, config.output_root)
    rows = "\n".join(f"| {name} | {'ok' if c['ok'] else '**failed**'} | {c['detail']} | {c['seconds']} |"
                     for name, c in report["checks"].items())
    table = f"| check | result | detail | s |\n|---|---|---|---|\n{rows}"
    create_markdown_artifact(key="health", description=f"Health: {report['status']}",
                             markdown=f"# {report['status']}\n\n{table}")
    get_run_logger().info("Health %s (report at %s)", report["status"], path)
    return report
