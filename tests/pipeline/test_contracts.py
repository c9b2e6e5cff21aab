"""The data contracts: bounds on horizon and context, column order and names of every published table."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from pydantic import TypeAdapter, ValidationError

from pipeline.accounting import SeriesCounts
from pipeline.contracts import (
    EVALUATION_SCHEMA,
    FORECAST_SCHEMA,
    INPUT_SCHEMA,
    MAX_CONTEXT,
    MAX_HORIZON,
    QUANTILE_COLUMNS,
    RUNS_SCHEMA,
    STATUS_SCHEMA,
    ContextLength,
    Horizon,
    SeriesStatus,
)
from pipeline.manifest import RunManifest

SCHEMAS = {"input": INPUT_SCHEMA, "forecast": FORECAST_SCHEMA, "status": STATUS_SCHEMA, "runs": RUNS_SCHEMA,
           "evaluation": EVALUATION_SCHEMA}
PUBLISHED_COUNTS = ["series_in", "series_ok", "series_rejected", "series_failed", "output_rows"]


@pytest.mark.parametrize(("bound", "maximum"), [(Horizon, MAX_HORIZON), (ContextLength, MAX_CONTEXT)],
                         ids=["horizon", "context_len"])
def test_bounds_accept_one_to_the_maximum(bound: Any, maximum: int) -> None:
    adapter: TypeAdapter[int] = TypeAdapter(bound)
    assert adapter.validate_python(1) == 1 and adapter.validate_python(maximum) == maximum
    for bad in (0, -1, maximum + 1):
        with pytest.raises(ValidationError, match="greater than 0|less than or equal to"):
            adapter.validate_python(bad)


def test_forecast_schema_holds_the_quantiles_in_order_after_the_point_forecast() -> None:
    assert QUANTILE_COLUMNS == [f"q{level}" for level in range(10, 100, 10)]
    names = FORECAST_SCHEMA.names
    start = names.index("forecast") + 1
    assert names[start:start + len(QUANTILE_COLUMNS)] == QUANTILE_COLUMNS, names
    assert all(FORECAST_SCHEMA.field(name).type == pa.float64() for name in ["forecast", *QUANTILE_COLUMNS])
    assert names[:3] == ["unique_id", "ds", "step"]


@pytest.mark.parametrize("name", SCHEMAS)
def test_column_names_are_unique(name: str) -> None:
    names = SCHEMAS[name].names
    assert len(names) == len(set(names)), f"{name} schema repeats {[n for n in names if names.count(n) > 1]}"


def test_series_status_values_are_ok_rejected_failed() -> None:
    assert {status.value for status in SeriesStatus} == {"ok", "rejected", "failed"}
    assert SeriesStatus("rejected") is SeriesStatus.REJECTED and SeriesStatus.OK == "ok", "a str enum"
    with pytest.raises(ValueError, match="'skipped' is not a valid SeriesStatus"):
        SeriesStatus("skipped")


def test_runs_schema_keeps_its_published_columns() -> None:
    for name in [*PUBLISHED_COUNTS, "checkpoint_sha256", "input_fingerprint", "run_id"]:
        assert name in RUNS_SCHEMA.names, f"runs table lost its published column {name!r}"
    assert all(RUNS_SCHEMA.field(name).type == pa.int64() for name in PUBLISHED_COUNTS)
    assert RUNS_SCHEMA.field("checkpoint_sha256").type == pa.string()


def test_published_counts_and_the_manifest_fill_every_runs_column() -> None:
    fields = SeriesCounts(ok=3, rejected=2, failed=1).published_fields()
    assert set(fields) <= set(RUNS_SCHEMA.names), f"not runs columns: {set(fields) - set(RUNS_SCHEMA.names)}"
    missing = set(RUNS_SCHEMA.names) - set(RunManifest.model_fields)
    assert not missing, f"runs columns the manifest has no field for (they would be written empty): {missing}"
