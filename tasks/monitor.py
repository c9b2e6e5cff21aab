"""The monitoring task: revisions and realized accuracy of a forecast run's job, never failing the run."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.monitoring import MonitorInputs, MonitorSummary, monitor_job
from pipeline.report import monitoring_markdown

__all__ = ["monitor_forecasts"]


@task(name="monitor-forecasts", cache_policy=NO_CACHE)
def monitor_forecasts(inputs: MonitorInputs, *, key_prefix: str) -> MonitorSummary:
    """Stages the run's ``revisions`` and ``realized_accuracy`` tables and creates the ``<key_prefix>-monitoring``
    Markdown artifact (headline numbers, most revised series).

    The flow calls it with ``return_state=True``: a failure here is a warning of the run, never its failure.
    """
    summary = monitor_job(inputs)
    get_run_logger().info("Monitoring: %d of %d series revised since %s; %d points of %d earlier forecast runs "
                          "scored", summary.series_revised, summary.series_compared, summary.previous_as_of or "-",
                          summary.points_scored, summary.forecast_runs_scored)
    create_markdown_artifact(monitoring_markdown(inputs.job, inputs.as_of.isoformat(), summary.model_dump(mode="json"),
                                                 inputs.revision_threshold),
                             key=f"{key_prefix}-monitoring",
                             description="How this run's forecasts moved, and how the earlier ones did")
    return summary
