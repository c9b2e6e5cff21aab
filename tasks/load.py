"""The load task: read any source into the canonical frame and stage it as Parquet."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from pydantic import BaseModel, ConfigDict

from pipeline.canonical import to_canonical
from pipeline.contracts import INPUT_SCHEMA
from pipeline.covariate_data import covariate_fingerprint, future_covariates, split_future
from pipeline.manifest import input_fingerprint
from pipeline.params import CovariateParams
from pipeline.sources import DuckDBSource, FileSource, SourcePolicy, TransientSourceError, UrlSource, read_source
from pipeline.tables import write_table
from tasks.secrets import with_secret_blocks

__all__ = ["LoadResult", "load_series", "stage_input", "stage_series"]


class LoadResult(BaseModel):
    """The staged canonical frame and its fingerprint."""

    model_config = ConfigDict(frozen=True)

    path: Path
    fingerprint: str
    rows: int
    covariates_path: Path | None = None  # with covariates: their values, history and future rows


def _is_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry timeouts, refused connections and 5xx answers; never bad input or a 4xx."""
    return isinstance(state.result(raise_on_failure=False), TransientSourceError)


@task(name="load-series", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1,
      retry_condition_fn=_is_transient)
def load_series(source: FileSource | UrlSource | DuckDBSource, policy: SourcePolicy, staging: Path,
                covariates: CovariateParams | None = None) -> LoadResult:
    """Reads the source, maps it to the canonical frame and stages it with its fingerprint.

    With ``covariates``, their columns are read too, the future rows (and ``covariates.future_source``) are split
    off the target, and the covariate frame is staged beside it; the fingerprint covers both.
    """
    policy = with_secret_blocks(policy)
    wanted = covariates if covariates is not None and covariates.enabled else None
    frame = to_canonical(read_source(source, policy), source.format, source.columns,
                         covariates=wanted.columns() if wanted else None)
    loaded = stage_series(frame, staging, wanted, policy)
    # The series are counted by validation, which groups them anyway: a count here costs a pass over every id.
    get_run_logger().info("Loaded %d rows from %s", len(frame), source.describe())
    return loaded


def stage_series(frame: pd.DataFrame, directory: Path, covariates: CovariateParams | None,
                 policy: SourcePolicy) -> LoadResult:
    """Stages a canonical frame with its fingerprint. With ``covariates`` (and their columns in ``frame``), the
    future rows and ``covariates.future_source`` (read under ``policy``, its rows for ``frame``'s series only)
    are split off the target, and the covariate frame is staged beside it; the fingerprint covers both."""
    if covariates is None or not covariates.enabled:
        staged, fingerprint = stage_input(frame, directory)
        return LoadResult(path=staged, fingerprint=fingerprint, rows=len(frame))
    future = None
    if covariates.future_source is not None:
        future = future_covariates(read_source(covariates.future_source, policy), covariates.future_source.columns,
                                   covariates)
    target, values = split_future(frame, covariates, future)
    staged, fingerprint = stage_input(target, directory)
    values_path = directory / "covariates_input.parquet"
    values.to_parquet(values_path, index=False)
    return LoadResult(path=staged, fingerprint=covariate_fingerprint(fingerprint, values), rows=len(target),
                      covariates_path=values_path)


def stage_input(frame: pd.DataFrame, directory: Path) -> tuple[Path, str]:
    """Writes the canonical frame to ``<directory>/input.parquet`` and fingerprints it, both at once (hashing
    and Parquet writing release the GIL); returns the path and the fingerprint."""
    with ThreadPoolExecutor(1, thread_name_prefix="fingerprint") as pool:
        fingerprint = pool.submit(input_fingerprint, frame)
        staged = write_table(frame, INPUT_SCHEMA, directory / "input.parquet", hand_over=True)  # validation's
    return staged, fingerprint.result()
