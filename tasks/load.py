"""The load task: read any source into the canonical frame and stage it as Parquet."""

from __future__ import annotations

from pathlib import Path

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from tasks.canonical import to_canonical
from tasks.contracts import ID
from tasks.sources import DuckDBSource, FileSource, SourcePolicy, TransientSourceError, UrlSource, read_source

__all__ = ["load_series"]


def _is_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry timeouts, refused connections and 5xx answers; never bad input or a 4xx."""
    return isinstance(state.result(raise_on_failure=False), TransientSourceError)


@task(name="load-series", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1,
      retry_condition_fn=_is_transient)
def load_series(source: FileSource | UrlSource | DuckDBSource, policy: SourcePolicy, staging: Path) -> Path:
    """Reads the source, maps it to the canonical frame and stages it; returns the staged path."""
    frame = to_canonical(read_source(source, policy), source.format, source.columns)
    staged = staging / "input.parquet"
    frame.to_parquet(staged, index=False)
    get_run_logger().info("Loaded %d rows of %d series from %s", len(frame), frame[ID].nunique(), source.describe())
    return staged
