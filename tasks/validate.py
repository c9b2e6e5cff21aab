"""The validate task: the great-expectations suite, then per-series checks; stages what a forecast reads.

Schema problems fail the run; series with row-level problems or failing a check are rejected with a reason,
and the run fails only when too many are (see ``pipeline.accounting``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from pipeline.accounting import SeriesCounts, check_rejected_fraction, rejection_report
from pipeline.allocator import release_freed_memory
from pipeline.canonical import sorted_by_series_and_time
from pipeline.contracts import INPUT_SCHEMA, STATUS_SCHEMA
from pipeline.covariate_data import check_covariates
from pipeline.errors import DataValidationError
from pipeline.expectations import (
    build_covariate_suite,
    duplicate_series,
    row_rejections,
    run_suite,
    schema_failures,
)
from pipeline.report import validation_html
from pipeline.run import ResolvedRun
from pipeline.series_checks import check_series, regularize
from pipeline.tables import hand_over, read_staged, write_table

__all__ = ["ValidationOutcome", "validate_series"]


class ValidationOutcome(BaseModel):
    """What validation decided, small enough to pass between tasks."""

    model_config = ConfigDict(frozen=True)

    counts: SeriesCounts
    regular_path: Path
    status_path: Path
    report_path: Path
    summary_path: Path
    docs_path: Path | None
    covariates_path: Path | None = None  # with covariates: each accepted series' values at the steps it uses
    covariates_report_path: Path | None = None  # with covariates: their great-expectations result


@task(name="validate-series", cache_policy=NO_CACHE)
def validate_series(input_path: Path, staging: Path, run: ResolvedRun, *, whole_job: bool = True,
                    covariates_path: Path | None = None,
                    covariate_steps: tuple[int, int] | None = None) -> ValidationOutcome:
    """Runs the suite and the per-series checks; stages the status table and the regularised series.

    With ``covariates_path`` (the load's covariate frame), each accepted series' covariates are checked too
    (``pipeline.covariate_data.check_covariates``) and lined up with the steps the forecast uses:
    ``covariate_steps`` (context, horizon), by default the run's context length and horizon.

    Raises:
        DataValidationError: a schema problem, or (for a whole job, not a shard) more than
            ``max_rejected_fraction`` of series rejected.
    """
    frame = read_staged(input_path)
    result, docs = run_suite(frame, docs_to=staging / "data_docs")
    report, summary = staging / "validation.json", staging / "validation.html"
    outcome = result.to_json_dict()
    report.write_text(json.dumps(outcome, indent=2, default=str))
    summary.write_text(validation_html(outcome, "Input validation (great-expectations)"))
    if problems := schema_failures(result):
        raise DataValidationError("Input breaks the data contract: " + "; ".join(problems) + ".")
    ordered = sorted_by_series_and_time(frame)  # one pass over 20M rows, asked by two steps
    status = check_series(frame, row_rejections(result, duplicate_series(frame, ordered=ordered)), run.checks,
                          run.freq, run.as_of)
    aligned_path = covariates_report = None
    if covariates_path is not None:
        values = pd.read_parquet(covariates_path)
        covariates_report = _check_covariate_schema(values, run, staging)
        context_len, horizon = covariate_steps or (run.context_len, run.horizon)
        status, aligned = check_covariates(frame, status, values, run.covariates, horizon=horizon,
                                           context_len=context_len)
        aligned_path = staging / "covariates.parquet"
        aligned.to_parquet(aligned_path, index=False)
    release_freed_memory()  # the checks' shard-sized temporaries: see pipeline.allocator
    counts = SeriesCounts.from_status(status)
    rows = rejection_report(status)
    if whole_job:
        check_rejected_fraction(counts, run.checks.max_rejected_fraction, {r["reason"]: r["examples"] for r in rows})
    if rows:
        create_table_artifact(key="rejected-series", table=rows, description="Series left out of this run")
    regular = regularize(frame, status, ordered=ordered)
    if regular is frame:  # a regular input is staged already: no copy of it (20M rows: ~1 s)
        regular_path = input_path
        hand_over(input_path, frame)  # the forecast takes it from memory
    else:
        regular_path = write_table(regular, INPUT_SCHEMA, staging / "regular.parquet", hand_over=True)
    get_run_logger().info("Validated %d series: %d rejected %s", counts.total(), counts.rejected, counts.by_reason)
    return ValidationOutcome(counts=counts, regular_path=regular_path,
                             status_path=write_table(status, STATUS_SCHEMA, staging / "series_status.parquet"),
                             report_path=report, summary_path=summary, docs_path=docs,
                             covariates_path=aligned_path, covariates_report_path=covariates_report)


def _check_covariate_schema(values: pd.DataFrame, run: ResolvedRun, staging: Path) -> Path:
    """Runs the covariate frame's great-expectations suite; stages its result; fails on a schema problem."""
    params = run.covariates
    suite = build_covariate_suite((*params.dynamic_numerical, *params.static_numerical),
                                  (*params.dynamic_categorical, *params.static_categorical))
    result, _ = run_suite(values, suite=suite)
    report = staging / "validation_covariates.json"
    report.write_text(json.dumps(result.to_json_dict(), indent=2, default=str))
    if problems := schema_failures(result):
        raise DataValidationError("Covariates break the data contract: " + "; ".join(problems) + ".")
    return report
