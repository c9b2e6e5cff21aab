"""The health task: run the checks, save the report, show it in Prefect."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.health import HealthConfig, build_report, run_checks, write_report

__all__ = ["UnhealthyError", "report_health"]


class UnhealthyError(RuntimeError):
    """At least one health check failed; the message names them."""


@task(name="report-health", cache_policy=NO_CACHE)
def report_health(config: HealthConfig) -> dict[str, Any]:
    """Runs every check, writes ``<output_root>/_health/health.json`` and a Markdown artifact."""
    report = build_report(run_checks(config))
    path = write_report(report, config.output_root)
    rows = "\n".join(f"| {name} | {'ok' if c['ok'] else '**failed**'} | {c['detail']} | {c['seconds']} |"
                     for name, c in report["checks"].items())
    table = f"| check | result | detail | s |\n|---|---|---|---|\n{rows}"
    create_markdown_artifact(key="health", description=f"Health: {report['status']}",
                             markdown=f"# {report['status']}\n\n{table}")
    get_run_logger().info("Health %s (report at %s)", report["status"], path)
    return report
