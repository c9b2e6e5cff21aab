"""Great-expectations checks of the canonical frame (the input data contract)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.core import ExpectationValidationResult
from great_expectations.data_context.types.base import ProgressBarsConfig
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.contracts import DS, ID, Y
from tasks.errors import DataValidationError

__all__ = ["build_suite", "run_suite", "validate_series"]

# What each failed expectation means for the user, and how to fix it.
_FIXES = {
    "expect_column_to_exist": "Column {column!r} is missing from the canonical frame.",
    "expect_column_values_to_not_be_null": (
        "Column {column!r} has {count} empty values (series {series}). Fix: fill or remove those rows."
    ),
    "expect_column_values_to_be_of_type": "Column {column!r} holds values of the wrong type (series {series}).",
    "expect_column_values_to_be_in_type_list": "Column {column!r} has type {observed}, expected one of {types}.",
    "expect_compound_columns_to_be_unique": (
        "Duplicate ({id}, {ds}) rows: {count} rows share a timestamp with another row of the same series "
        "(series {series}). Fix: aggregate or drop the duplicates so each series has one value per timestamp."
    ),
}


def build_suite() -> gx.ExpectationSuite:
    """The canonical-frame suite: schema, types, non-null timestamps, unique (unique_id, ds)."""
    expectations = [
        *[gx.expectations.ExpectColumnToExist(column=name) for name in (ID, DS, Y)],
        gx.expectations.ExpectColumnValuesToNotBeNull(column=ID),
        gx.expectations.ExpectColumnValuesToNotBeNull(column=DS),
        gx.expectations.ExpectColumnValuesToBeOfType(column=ID, type_="str"),
        gx.expectations.ExpectColumnValuesToBeInTypeList(column=DS, type_list=["datetime64[us]", "datetime64[ns]"]),
        gx.expectations.ExpectColumnValuesToBeInTypeList(column=Y, type_list=["float64"]),
        gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=[ID, DS]),
    ]
    return gx.ExpectationSuite(name="canonical_input", expectations=expectations)


def run_suite(frame: pd.DataFrame) -> Any:
    """Validates ``frame`` with an ephemeral great-expectations context; returns the validation result."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("input").add_dataframe_asset("canonical")
    definition = batch.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(build_suite())
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="canonical", data=definition,
                                                                            suite=suite))
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": [ID],
                     "partial_unexpected_count": 20}
    return validation.run(batch_parameters={"dataframe": frame}, result_format=result_format)


def describe_failure(result: ExpectationValidationResult) -> str:
    """One sentence naming the column or series that failed an expectation and the fix."""
    config = result.expectation_config
    kwargs = config.kwargs if config else {}
    detail = result.result or {}
    rows = detail.get("unexpected_index_list") or []
    series = sorted({str(row.get(ID)) for row in rows if isinstance(row, dict)})
    shown = ", ".join(repr(s) for s in series[:5]) + (f" and {len(series) - 5} more" if len(series) > 5 else "")
    template = _FIXES.get(config.type if config else "", "Expectation {kind} failed on {column!r}.")
    return template.format(column=kwargs.get("column"), count=detail.get("unexpected_count"), series=shown or "?",
                           observed=detail.get("observed_value"), types=kwargs.get("type_list"), id=ID, ds=DS,
                           kind=config.type if config else "?")


@task(name="validate-series", cache_policy=NO_CACHE)
def validate_series(input_path: Path, staging: Path) -> Path:
    """Runs the suite, saves its result as JSON beside the staged input, and fails on any violation."""
    result = run_suite(pd.read_parquet(input_path))
    report = staging / "validation.json"
    report.write_text(json.dumps(result.to_json_dict(), indent=2, default=str))
    if not result.success:
        problems = [describe_failure(r) for r in result.results if not r.success]
        raise DataValidationError("Input failed validation: " + " ".join(problems))
    get_run_logger().info("Input passed %d expectations", len(result.results))
    return report
