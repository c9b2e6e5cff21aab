"""The validate task: what it stages for the forecast, what it rejects and why, and when it fails the run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.logging import disable_run_logger

from pipeline.accounting import SeriesCounts
from pipeline.canonical import to_canonical
from pipeline.contracts import INPUT_SCHEMA, STATUS_SCHEMA
from pipeline.errors import DataValidationError
from pipeline.series_checks import SeriesChecks
from pipeline.tables import write_table
from tasks.validate import ValidationOutcome, validate_series
from tests.conftest import make_run


@pytest.fixture
def canonical(sample_frame: pd.DataFrame) -> pd.DataFrame:
    return to_canonical(sample_frame)


def stage_input(frame: pd.DataFrame, tmp_path: Path) -> tuple[Path, Path]:
    """The loaded input (written as the load task writes it) and an empty staging directory."""
    (tmp_path / "staging").mkdir()
    return write_table(frame, INPUT_SCHEMA, tmp_path / "input.parquet"), tmp_path / "staging"


def validate(frame: pd.DataFrame, tmp_path: Path, checks: SeriesChecks | None = None,
             whole_job: bool = True) -> ValidationOutcome:
    input_path, staging = stage_input(frame, tmp_path)
    with disable_run_logger():
        return validate_series.fn(input_path, staging, make_run(checks=(checks or SeriesChecks()).model_dump()),
                                  whole_job=whole_job)


def test_clean_input_stages_status_regular_series_report_and_docs(tmp_path: Path, canonical: pd.DataFrame) -> None:
    outcome = validate(canonical, tmp_path)
    staging = tmp_path / "staging"
    assert outcome.counts == SeriesCounts(ok=12)
    assert sorted(p.name for p in staging.iterdir()) == ["data_docs", "series_status.parquet", "validation.html",
                                                         "validation.json"], "a regular input is not copied"
    assert (outcome.regular_path, outcome.status_path, outcome.report_path, outcome.docs_path) == \
        (tmp_path / "input.parquet", staging / "series_status.parquet", staging / "validation.json",
         staging / "data_docs"), "the forecast reads the staged input itself"
    assert json.loads(outcome.report_path.read_text())["success"] is True
    assert outcome.summary_path == staging / "validation.html"
    assert "The suite passed" in outcome.summary_path.read_text(), "a page MLflow shows as it is, beside the JSON"
    assert outcome.docs_path is not None and (outcome.docs_path / "index.html").is_file(), \
        "the Data Docs site is staged for MLflow"
    status = pq.read_table(outcome.status_path)
    assert status.schema == STATUS_SCHEMA
    assert set(status.column("status").to_pylist()) == {"ok"}
    assert all(f.startswith("QS") for f in status.column("freq").to_pylist()), "the sample is quarterly"
    regular = pd.read_parquet(outcome.regular_path)
    pd.testing.assert_frame_equal(regular, canonical, check_dtype=False)


def test_gaps_become_missing_rows_on_the_series_grid(tmp_path: Path, canonical: pd.DataFrame) -> None:
    cpi = canonical.index[canonical["unique_id"] == "cpi"]
    outcome = validate(canonical.drop(index=cpi[[10, 11, 50]]), tmp_path)
    assert outcome.counts.ok == 12
    regular = pd.read_parquet(outcome.regular_path)
    series = regular[regular["unique_id"] == "cpi"]
    assert len(series) == len(cpi) and series["y"].isna().sum() == 3
    assert series["ds"].tolist() == canonical.loc[cpi, "ds"].tolist(), "every quarter is back, in order"
    status = pd.read_parquet(outcome.status_path).set_index("unique_id")
    assert status.loc["cpi", "missing_fraction"] == pytest.approx(3 / len(cpi))
    assert status.loc["cpi", "n_obs"] == len(cpi) - 3


def test_a_schema_problem_fails_the_run_and_keeps_the_report(tmp_path: Path, canonical: pd.DataFrame) -> None:
    input_path = tmp_path / "input.parquet"
    pq.write_table(pa.Table.from_pandas(canonical.assign(y=canonical["y"].astype(str)), preserve_index=False),
                   input_path)
    (tmp_path / "staging").mkdir()
    with disable_run_logger(), pytest.raises(DataValidationError, match=r"Input breaks the data contract: .*'y'"):
        validate_series.fn(input_path, tmp_path / "staging", make_run())
    assert json.loads((tmp_path / "staging" / "validation.json").read_text())["success"] is False
    assert not (tmp_path / "staging" / "series_status.parquet").exists(), "nothing for a forecast to read"


def with_bad_series(canonical: pd.DataFrame) -> pd.DataFrame:
    """Three of twelve series broken: a duplicate quarter, an infinite value, a constant series."""
    frame = canonical.copy()
    frame.loc[frame["unique_id"] == "realint", "y"] = 1.5
    frame.loc[frame.index[frame["unique_id"] == "m1"][5], "y"] = np.inf
    duplicate = frame[frame["unique_id"] == "pop"].iloc[[7]]
    return pd.concat([frame, duplicate]).sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)


def test_too_many_rejections_fail_a_whole_job(tmp_path: Path, canonical: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match=r"3 of 12 series cannot be forecast .*max_rejected_fraction=20%"):
        validate(with_bad_series(canonical), tmp_path)
    assert not (tmp_path / "staging" / "regular.parquet").exists()


@pytest.mark.usefixtures("prefect_api")
def test_a_shard_records_its_rejections_and_leaves_the_limit_to_its_parent(tmp_path: Path,
                                                                           canonical: pd.DataFrame) -> None:
    outcome = validate(with_bad_series(canonical), tmp_path, whole_job=False)
    assert outcome.counts == SeriesCounts(ok=9, rejected=3, by_reason={"constant": 1, "duplicate_timestamp": 1,
                                                                        "non_finite_value": 1})
    status = pd.read_parquet(outcome.status_path).set_index("unique_id")
    assert status.loc[["m1", "pop", "realint"], "reason"].tolist() == ["non_finite_value", "duplicate_timestamp",
                                                                       "constant"]
    assert outcome.regular_path == tmp_path / "staging" / "regular.parquet", "rejections: a copy without them"
    regular = pd.read_parquet(outcome.regular_path)
    assert set(regular["unique_id"]) == set(status.index[status["status"] == "ok"]), "only accepted series staged"
    assert rejection_rows() >= {("constant", "'realint'"), ("duplicate_timestamp", "'pop'"),
                                ("non_finite_value", "'m1'")}, "the rejected-series artifact names them"


def rejection_rows() -> set[tuple[str, str]]:
    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["rejected-series"])))
    rows: set[tuple[str, str]] = set()
    for artifact in asyncio.run(read()):
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        rows |= {(row["reason"], row["examples"]) for row in data}
    return rows

