"""Job and as_of for the log file's lines that Prefect writes before a flow's body has resolved them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import TypeAdapter

__all__ = ["run_log_fields"]


def run_log_fields(flow_run_id: str) -> tuple[str, str] | None:
    """(job, as_of) of this process's flow run ``flow_run_id``, from its parameters as the flow will resolve
    them; None outside that run, or for a flow with no job (the health check).

    Asked by ``pipeline.logfile`` for a line of a run it has no tags for yet (``Beginning flow run``); once
    the flow starts, it registers the resolved values itself.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or str(context.flow_run.id) != flow_run_id:
        return None
    return _from_parameters(dict(context.parameters or {}), context.flow_run.expected_start_time)


def _from_parameters(parameters: dict[str, Any], scheduled: datetime | None) -> tuple[str, str] | None:
    from pipeline.run import ResolvedRun, resolve_job, scheduled_date
    from pipeline.sources import Source

    if "run" in parameters:  # a shard: its parent's resolved run
        run = TypeAdapter(ResolvedRun).validate_python(parameters["run"])
        return run.job, run.as_of.isoformat()
    if "source" not in parameters:
        return None
    job = resolve_job(TypeAdapter(Source).validate_python(parameters["source"]), parameters.get("job"))
    as_of = TypeAdapter(date | None).validate_python(parameters.get("as_of")) or scheduled_date(scheduled)
    return job, as_of.isoformat()
