"""The load task stages the canonical frame with its fingerprint, and retries only transient source failures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect.client.schemas.objects import TaskRun
from prefect.logging import disable_run_logger
from prefect.states import Failed, State

from pipeline.canonical import to_canonical
from pipeline.contracts import INPUT_SCHEMA
from pipeline.errors import DataValidationError, InputDataError
from pipeline.manifest import input_fingerprint
from pipeline.sources import FileSource, SourcePolicy, TransientSourceError
from tasks.load import LoadResult, _is_transient, load_series
from tests.conftest import SAMPLE

TASK_RUN = TaskRun(task_key="load-series", dynamic_key="0")


def test_load_stages_the_canonical_frame_and_its_fingerprint(tmp_path: Path, sample_frame: pd.DataFrame) -> None:
    policy = SourcePolicy(data_roots=(SAMPLE.parent,))
    with disable_run_logger():
        loaded = load_series.fn(FileSource(path=str(SAMPLE)), policy, tmp_path)
    assert isinstance(loaded, LoadResult) and loaded.path == tmp_path / "input.parquet"
    canonical = to_canonical(sample_frame)
    assert loaded.rows == len(canonical) == len(sample_frame)
    assert loaded.fingerprint == input_fingerprint(canonical)
    table = pq.read_table(loaded.path)
    assert table.schema == INPUT_SCHEMA
    assert sorted(set(table.column("unique_id").to_pylist())) == sorted(sample_frame["unique_id"].unique())


def test_the_same_data_in_another_layout_has_the_same_fingerprint(tmp_path: Path, sample_frame: pd.DataFrame) -> None:
    wide = sample_frame.pivot(index="ds", columns="unique_id", values="y").reset_index()
    wide.to_csv(tmp_path / "wide.csv", index=False)
    policy = SourcePolicy(data_roots=(tmp_path, SAMPLE.parent))
    (tmp_path / "long").mkdir()
    (tmp_path / "wide").mkdir()
    with disable_run_logger():
        long = load_series.fn(FileSource(path=str(SAMPLE)), policy, tmp_path / "long")
        pivoted = load_series.fn(FileSource(path=str(tmp_path / "wide.csv"), format="wide"), policy, tmp_path / "wide")
    assert pivoted.rows == long.rows and pivoted.fingerprint == long.fingerprint, \
        "the fingerprint is of the canonical rows, not of the file"


def test_a_source_outside_the_data_roots_fails_without_staging(tmp_path: Path) -> None:
    with disable_run_logger(), pytest.raises(InputDataError, match="outside the data roots"):
        load_series.fn(FileSource(path=str(SAMPLE)), SourcePolicy(data_roots=(tmp_path,)), tmp_path)
    assert not (tmp_path / "input.parquet").exists()


def state_of(error: BaseException) -> State:
    return Failed(data=error, message=str(error))


@pytest.mark.parametrize(("state", "retried"), [
    (state_of(TransientSourceError("HTTP 503 from http://host/x.csv")), True),
    (state_of(type("Timeout", (TransientSourceError,), {})("read timed out")), True),
    (state_of(InputDataError("HTTP 404 ... TransientSourceError")), False),
    (state_of(DataValidationError("bad rows")), False),
    (state_of(ConnectionError("refused")), False),
    (state_of(TimeoutError("slow")), False),
    (state_of(RuntimeError("TransientSourceError: in the message only")), False),
], ids=["transient", "transient subclass", "input error naming it", "validation", "connection", "timeout",
        "runtime"])
def test_only_transient_source_errors_are_retried(state: State, retried: bool) -> None:
    assert _is_transient(load_series, TASK_RUN, state) is retried


def test_load_task_retries_twice_on_its_condition() -> None:
    assert load_series.retries == 2 and load_series.retry_condition_fn is _is_transient
