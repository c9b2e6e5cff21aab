"""The great-expectations suite of the canonical frame, and what its result means for each series.

Schema problems (a column missing, a wrong type) fail the run. Row-level problems (an empty timestamp, a
duplicate (unique_id, ds), an infinite value) are mapped to their series, which are rejected with a
reason like those of the per-series checks; the run fails only when too many series are rejected.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import great_expectations as gx
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import pandas_execution_engine

from pipeline.canonical import sorted_by_series_and_time
from pipeline.contracts import DS, ID, Y

__all__ = ["build_covariate_suite", "build_suite", "duplicate_series", "row_rejections", "run_suite", "schema_failures"]

_LARGEST_FINITE = 1.7976931348623157e308
# GX fingerprints every pandas batch under 1 GB (an MD5 over hash_pandas_object): 3 s of a 20M-row
# validation, for a marker nothing reads. The run manifest holds this project's own SHA-256 fingerprint of the
# same frame, so GX's is turned off as GX itself does above that size (tests/pipeline/test_expectations.py).
pandas_execution_engine.HASH_THRESHOLD = 0
# Row-level expectations and the reason code a failing row gives its series.
# In order of precedence: a series with several problems is rejected for the first.
_ROW_REASONS = {
    ("expect_column_values_to_not_be_null", DS): "null_timestamp",
    ("expect_compound_columns_to_be_unique", None): "duplicate_timestamp",  # found by duplicate_series
    ("expect_column_values_to_be_between", Y): "non_finite_value",
}


def build_suite() -> gx.ExpectationSuite:
    """Schema, types, non-null ids and timestamps, finite values (nulls allowed); see
    :func:`duplicate_series` for unique (unique_id, ds)."""
    expectations = [
        *[gx.expectations.ExpectColumnToExist(column=name) for name in (ID, DS, Y)],
        gx.expectations.ExpectColumnValuesToBeOfType(column=ID, type_="str"),
        gx.expectations.ExpectColumnValuesToBeInTypeList(column=DS, type_list=["datetime64[us]", "datetime64[ns]"]),
        gx.expectations.ExpectColumnValuesToBeInTypeList(column=Y, type_list=["float64"]),
        gx.expectations.ExpectColumnValuesToNotBeNull(column=ID),
        gx.expectations.ExpectColumnValuesToNotBeNull(column=DS),
        gx.expectations.ExpectColumnValuesToBeBetween(column=Y, min_value=-_LARGEST_FINITE,
                                                      max_value=_LARGEST_FINITE),
    ]
    return gx.ExpectationSuite(name="canonical_input", expectations=expectations)


def build_covariate_suite(numerical: Iterable[str], categorical: Iterable[str]) -> gx.ExpectationSuite:
    """The covariate frame's schema: its columns, numbers as float64, levels as text.

    Missing and infinite values are not judged here: whether a series has every value it needs is decided per
    series, on the steps its forecast uses (``pipeline.covariate_data.check_covariates``), and a bad value
    rejects that series, not the run.
    """
    numerical, categorical = list(numerical), list(categorical)
    expectations = [
        *[gx.expectations.ExpectColumnToExist(column=name) for name in (ID, DS, *numerical, *categorical)],
        *[gx.expectations.ExpectColumnValuesToBeInTypeList(column=name, type_list=["float64"]) for name in numerical],
        *[gx.expectations.ExpectColumnValuesToBeOfType(column=name, type_="str") for name in categorical],
    ]
    return gx.ExpectationSuite(name="covariates", expectations=expectations)


def run_suite(frame: pd.DataFrame, docs_to: Path | None = None,
              suite: gx.ExpectationSuite | None = None) -> tuple[Any, Path | None]:
    """Validates ``frame`` against ``suite`` (default: the canonical frame's) in an ephemeral context; returns the
    result and its Data Docs, copied to ``docs_to`` (None without it). The temporary directory the ephemeral
    context builds them in is removed."""
    suite = suite or build_suite()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("input").add_dataframe_asset(suite.name)
    validation = context.validation_definitions.add(gx.ValidationDefinition(
        name=suite.name, data=batch.add_batch_definition_whole_dataframe("all"),
        suite=context.suites.add(suite)))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=suite.name, validation_definitions=[validation], actions=[UpdateDataDocsAction(name="data_docs")],
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ID]}))
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    (validation_result,) = result.run_results.values()
    sites = context.get_docs_sites_urls()
    docs = Path(url2pathname(str(urlsplit(sites[0]["site_url"]).path))).parent if sites else None
    if docs is None or not docs.is_dir():
        return validation_result, None
    try:
        return validation_result, Path(shutil.copytree(docs, docs_to)) if docs_to is not None else None
    finally:
        if docs.parent == Path(tempfile.gettempdir()):  # the ephemeral context's own directory, never a user's
            shutil.rmtree(docs, ignore_errors=True)


def schema_failures(result: Any) -> list[str]:
    """Failed expectations that are not row-level (a column missing, a wrong type), described."""
    problems = []
    for item in result.results:
        config = item.expectation_config
        if item.success or (config.type, config.kwargs.get("column")) in _ROW_REASONS or \
                (config.type, None) in _ROW_REASONS:
            continue
        observed = (item.result or {}).get("observed_value")
        problems.append(f"{config.type} failed on column {config.kwargs.get('column')!r}"
                        + (f" (observed {observed})" if observed is not None else ""))
    return problems


def row_rejections(result: Any, duplicated: Iterable[str] = ()) -> dict[str, str]:
    """Series id -> reason code, for every series with a row that failed a row-level expectation or, in
    ``duplicated``, two rows on one timestamp; a series with several problems gets the first reason of
    ``_ROW_REASONS``."""
    found: dict[str, dict[str, str]] = {reason: {} for reason in _ROW_REASONS.values()}
    found["duplicate_timestamp"] = dict.fromkeys(map(str, duplicated), "duplicate_timestamp")
    for item in result.results:
        config = item.expectation_config
        reason = _ROW_REASONS.get((config.type, config.kwargs.get("column"))) or _ROW_REASONS.get((config.type, None))
        if item.success or reason is None:
            continue
        for row in (item.result or {}).get("unexpected_index_list") or []:
            found[reason].setdefault(str(row.get(ID)), reason)
    rejected: dict[str, str] = {}
    for reasons in found.values():
        for series, reason in reasons.items():
            rejected.setdefault(series, reason)
    return rejected


def duplicate_series(frame: pd.DataFrame, *, ordered: bool | None = None) -> set[str]:
    """Ids of the series with two rows on one timestamp (two empty timestamps count as one timestamp).

    A frame in canonical order with strictly increasing timestamps has none, and checking that compares
    neighbours; only a frame that fails it (duplicates or empty timestamps, i.e. bad input) is hashed.
    """
    if ordered is None:
        ordered = sorted_by_series_and_time(frame)
    if ordered:
        return set()
    return set(frame.loc[frame.duplicated([ID, DS], keep=False), ID].astype(str))
