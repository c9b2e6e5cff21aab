"""The publish task: move a run's staged tables into the output tree."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.publish import publish_tables

__all__ = ["publish_outputs"]


@task(name="publish-outputs", cache_policy=NO_CACHE)
def publish_outputs(staging: Path, output_root: Path, job: str, as_of: str, files: dict[str, str]) -> dict[str, Path]:
    """Publishes the staged tables (see :func:`pipeline.publish.publish_tables`) and logs where they went."""
    published = publish_tables(staging, output_root, job, as_of, files)
    get_run_logger().info("Published %s", ", ".join(str(p) for p in published.values()))
    return published
