"""The great-expectations suite: schema failures, and row-level failures mapped to their series."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.canonical import to_canonical
from pipeline.expectations import duplicate_series, row_rejections, run_suite, schema_failures


@pytest.fixture(scope="module")
def canonical(sample_frame: pd.DataFrame) -> pd.DataFrame:
    return to_canonical(sample_frame)


def test_sample_passes_and_builds_data_docs_leaving_no_temporary_directory(canonical: pd.DataFrame,
                                                                            tmp_path: Path) -> None:
    before = set(Path(tempfile.gettempdir()).iterdir())
    result, docs = run_suite(canonical, docs_to=tmp_path / "docs")
    assert result.success and schema_failures(result) == [] and row_rejections(result) == {}
    assert docs == tmp_path / "docs" and (docs / "index.html").is_file(), "Data Docs were not built"
    leaked = [p for p in set(Path(tempfile.gettempdir()).iterdir()) - before if (p / "index.html").exists()]
    assert leaked == [], f"the ephemeral context's Data Docs were left behind: {leaked}"


def test_row_failures_map_to_series(canonical: pd.DataFrame) -> None:
    frame = canonical.copy()
    frame.loc[frame["unique_id"] == "pop", "ds"] = pd.NaT
    frame.loc[frame.index[frame["unique_id"] == "cpi"][3], "y"] = np.inf
    frame = pd.concat([frame, frame[frame["unique_id"] == "m1"].head(2)], ignore_index=True)
    result, _ = run_suite(frame)
    assert row_rejections(result, duplicate_series(frame)) == {"pop": "null_timestamp", "cpi": "non_finite_value",
                                                               "m1": "duplicate_timestamp"}
    assert row_rejections(result) == {"pop": "null_timestamp", "cpi": "non_finite_value"}
    assert schema_failures(result) == []


def test_a_series_with_several_row_problems_gets_the_first_reason(canonical: pd.DataFrame) -> None:
    frame = canonical.copy()
    for name in ("pop", "cpi"):  # each: a duplicated row and an infinite value
        frame.loc[frame.index[frame["unique_id"] == name][3], "y"] = np.inf
        frame = pd.concat([frame, frame[frame["unique_id"] == name].head(1)], ignore_index=True)
    frame.loc[frame.index[frame["unique_id"] == "pop"][0], "ds"] = pd.NaT  # and an empty timestamp
    result, _ = run_suite(frame)
    assert row_rejections(result, duplicate_series(frame)) == {"pop": "null_timestamp", "cpi": "duplicate_timestamp"}


def test_duplicate_series_finds_what_pandas_duplicated_finds(canonical: pd.DataFrame) -> None:
    assert duplicate_series(canonical) == set(), "the sorted sample has none"
    twice = pd.concat([canonical, canonical[canonical["unique_id"].isin(["m1", "pop"])].tail(3)], ignore_index=True)
    assert duplicate_series(twice) == {"pop"} and duplicate_series(twice.sample(frac=1, random_state=0)) == {"pop"}
    assert duplicate_series(twice, ordered=False) == {"pop"}, "a caller's order check that failed: hashed"
    assert duplicate_series(twice, ordered=True) == set(), "a caller's passed order check is trusted, not redone"
    empty_stamps = canonical.copy()
    empty_stamps.loc[empty_stamps.index[empty_stamps["unique_id"] == "cpi"][:2], "ds"] = pd.NaT
    empty_stamps.loc[empty_stamps.index[empty_stamps["unique_id"] == "m1"][0], "ds"] = pd.NaT
    assert duplicate_series(empty_stamps) == {"cpi"}, "two empty timestamps are one timestamp twice; one is not"


def test_missing_values_are_allowed(canonical: pd.DataFrame) -> None:
    frame = canonical.copy()
    frame.loc[5:9, "y"] = np.nan
    result, _ = run_suite(frame)
    assert result.success


@pytest.mark.parametrize("column", ["unique_id", "ds", "y"])
def test_a_missing_column_is_a_schema_failure(canonical: pd.DataFrame, column: str) -> None:
    result, _ = run_suite(canonical.drop(columns=column))
    assert any(f"expect_column_to_exist failed on column {column!r}" in p for p in schema_failures(result))


def test_a_wrong_type_is_a_schema_failure(canonical: pd.DataFrame) -> None:
    result, _ = run_suite(canonical.assign(y=canonical["y"].astype("float32")))
    assert any("column 'y'" in p for p in schema_failures(result)), schema_failures(result)


def test_the_suite_does_not_fingerprint_the_frame_a_second_time(canonical: pd.DataFrame,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """GX would hash every row for a batch marker (3 s at 20M rows); the manifest has its own fingerprint."""
    from great_expectations.execution_engine import pandas_execution_engine

    calls: list[int] = []
    monkeypatch.setattr(pandas_execution_engine, "hash_pandas_dataframe", lambda df: calls.append(len(df)) or "h")
    result, _ = run_suite(canonical)
    assert result.success and calls == [], "GX hashed the frame: is HASH_THRESHOLD still what GX reads?"
    assert "pandas_data_fingerprint" not in result.meta.get("batch_markers", {})


def test_the_covariate_suite_checks_columns_and_types_and_leaves_values_to_the_series_checks() -> None:
    from pipeline.expectations import build_covariate_suite

    frame = pd.DataFrame({"unique_id": pd.Series(["a", "b"], dtype="str"),
                          "ds": pd.to_datetime(["2024-01-01", "2024-01-01"]).astype("datetime64[us]"),
                          "price": [np.inf, np.nan], "promo": pd.Series(["1", None], dtype="string")})
    suite = build_covariate_suite(["price"], ["promo"])
    result, _ = run_suite(frame, suite=suite)
    assert result.success and schema_failures(result) == [], "missing and infinite values are judged per series"
    result, _ = run_suite(frame.assign(promo=[1, 2]).drop(columns="price"), suite=suite)
    assert schema_failures(result) == ["expect_column_to_exist failed on column 'price'",
                                       "expect_column_values_to_be_in_type_list failed on column 'price'",
                                       "expect_column_values_to_be_of_type failed on column 'promo' (observed int64)"]
