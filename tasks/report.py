"""Tell the people who open a run what it did: a summary, the status counts and a link to its MLflow run,
as Prefect artifacts on the flow run."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

__all__ = ["report_run"]


@task(name="report-run", cache_policy=NO_CACHE)
def report_run(summary: str, counts: list[dict[str, Any]], mlflow_url: str | None, *, key_prefix: str) -> None:
    """Creates the run's artifacts: ``<key_prefix>-summary`` (Markdown), ``-series-counts`` (table) and, when
    the MLflow run has a UI address, ``-mlflow-run`` (link)."""
    create_markdown_artifact(summary, key=f"{key_prefix}-summary",
                             description="What this run did, and where its outputs are")
    create_table_artifact(counts, key=f"{key_prefix}-series-counts", description="Series forecast, rejected and failed")
    if mlflow_url:
        create_link_artifact(mlflow_url, link_text="MLflow run", key=f"{key_prefix}-mlflow-run",
                             description="This run in MLflow: parameters, metrics, dataset, artifacts")
