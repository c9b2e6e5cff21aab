"""Flow parameters: job names that are safe directory names, names derived from sources, checked aliases and
output roots, the engine from parameters and settings, and models that refuse unknown or changed fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from forecast_model import DEFAULT_CHECKPOINT, EngineConfig
from pipeline.params import (
    CovariateParams,
    FreqAlias,
    JobName,
    ModelParams,
    OutputRoot,
    RunSummary,
    Sharding,
    default_job_name,
    engine_config,
    validate_job_name,
)
from pipeline.settings import Settings
from pipeline.sources import DuckDBSource, FileSource, UrlSource


@pytest.mark.parametrize("job", ["sales", "us_macro.v2", "0-day", "A", "a" * 64, "x.-_9"])
def test_valid_job_names(job: str) -> None:
    assert validate_job_name(job) == job
    assert TypeAdapter(JobName).validate_python(job) == job


@pytest.mark.parametrize("job", ["", "-sales", ".hidden", "_x", "a/b", "../etc", "a b", "sales!", "a" * 65, "ünï",
                                 "sales\n"])
def test_invalid_job_names_say_what_a_job_name_is(job: str) -> None:
    with pytest.raises(ValueError, match=r"Invalid job name .*use 1-64 letters, digits, '_', '\.', '-', starting"):
        validate_job_name(job)
    with pytest.raises(ValidationError, match="Invalid job name"):
        TypeAdapter(JobName).validate_python(job)


def test_a_huge_job_name_is_quoted_short() -> None:
    with pytest.raises(ValueError, match="more characters") as raised:
        validate_job_name("x" * 100_000)
    assert len(str(raised.value)) < 300


def test_job_name_schema_carries_the_pattern_for_the_ui_form() -> None:
    schema = TypeAdapter(JobName).json_schema()
    assert schema["type"] == "string" and schema["maxLength"] == 64
    assert schema["pattern"].startswith("^[A-Za-z0-9]")


@pytest.mark.parametrize(("source", "expected"), [
    (FileSource(path="data/us_macro_quarterly.csv"), "us_macro_quarterly"),
    (FileSource(path="/srv/data/sales.v2.parquet"), "sales.v2"),
    (FileSource(path="data/sales/*.parquet"), "sales"),
    (FileSource(path="data/sales/2024-??.csv"), "sales"),
    (FileSource(path="data/eu/[ab]*.csv"), "eu"),
    (FileSource(path="data/my sales (2024).csv"), "my-sales-2024"),
    (FileSource(path="data/-x-.csv"), "x"),
    (FileSource(path="data/_sales.csv"), "sales"),
    (DuckDBSource(database="/data/w.duckdb", table="_tmp"), "tmp"),
    (FileSource(path="data/日本.csv"), "job"),
    (FileSource(path="data/" + "a" * 100 + ".csv"), "a" * 64),
    (UrlSource(url="https://example.com/exports/daily%20sales.csv?day=1"), "daily-20sales"),
    (UrlSource(url="https://example.com/"), "job"),
    (UrlSource(url_secret="env:SALES_URL"), "SALES_URL"),
    (UrlSource(url_secret="sales-url"), "sales-url"),
    (DuckDBSource(database="/data/warehouse.duckdb", table="main.sales"), "main.sales"),
    (DuckDBSource(database="/data/ware house.duckdb", query="SELECT * FROM t"), "ware-house"),
], ids=lambda value: value if isinstance(value, str) else value.describe()[:40])
def test_default_job_name_of_each_source_kind(source: FileSource | UrlSource | DuckDBSource, expected: str) -> None:
    name = default_job_name(source)
    assert name == expected
    assert validate_job_name(name) == name, "a derived job name must itself be a valid job name"


@pytest.mark.parametrize(("freq", "ok"), [("D", True), ("QS", True), ("2h", True), ("W-SUN", True),
                                          ("-1D", False), ("0D", False), ("fortnightly", False)])
def test_freq_alias_takes_forward_pandas_aliases(freq: str, ok: bool) -> None:
    adapter = TypeAdapter(FreqAlias)
    if ok:
        assert adapter.validate_python(freq) == freq
        return
    with pytest.raises(ValidationError, match=r"Unknown frequency|steps (back|nowhere) in time"):
        adapter.validate_python(freq)


@pytest.mark.parametrize("root", ["", "   ", "\t"])
def test_an_empty_output_root_names_the_fix(root: str) -> None:
    with pytest.raises(ValidationError, match="output_root is empty. Fix: leave it out to use FORECAST_OUTPUT_ROOT"):
        TypeAdapter(OutputRoot).validate_python(root)


def test_an_output_root_is_taken_as_given() -> None:
    assert TypeAdapter(OutputRoot).validate_python("relative/out") == "relative/out"


def settings(**fields: Any) -> Settings:
    return Settings(_env_file=None, **{"checkpoint": "env/ckpt", "backend": "cpu", "batch_size": 64, **fields})


def test_engine_config_fills_only_the_empty_parameters_from_the_settings() -> None:
    assert engine_config(ModelParams(), settings()) == EngineConfig(checkpoint="env/ckpt", device="cpu",
                                                                    batch_size=64)
    given = ModelParams(checkpoint="/models/mine", device="gpu", batch_size=8, precision="bf16",
                        expected_sha256="A" * 64)
    assert engine_config(given, settings()) == EngineConfig(checkpoint="/models/mine", device="gpu", batch_size=8,
                                                            expected_sha256="A" * 64, precision="bf16")
    partly = engine_config(ModelParams(device="auto"), settings(batch_size=None))
    assert (partly.checkpoint, partly.device, partly.batch_size) == ("env/ckpt", "auto", None)
    assert engine_config(ModelParams(), settings(checkpoint=DEFAULT_CHECKPOINT)).checkpoint == DEFAULT_CHECKPOINT


@pytest.mark.parametrize(("model", "fields"), [
    (ModelParams, {"device": "tpu"}),
    (ModelParams, {"batch_size": 0}),
    (ModelParams, {"context_len": 16_385}),
    (ModelParams, {"precision": "fp16"}),
    (ModelParams, {"expected_sha256": "abc"}),
    (Sharding, {"series_per_shard": 0}),
    (Sharding, {"max_attempts": 11}),
    (Sharding, {"deployment": "no-slash"}),
    (Sharding, {"poll_seconds": 0}),
])
def test_out_of_range_parameters_are_refused(model: type[BaseModel], fields: dict[str, Any]) -> None:
    (name,) = fields
    with pytest.raises(ValidationError) as raised:
        model(**fields)
    assert [error["loc"] for error in raised.value.errors()] == [(name,)]


@pytest.mark.parametrize("model", [ModelParams, Sharding])
def test_parameter_models_are_frozen_and_refuse_unknown_fields(model: type[BaseModel]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model(horizon=12)
    instance = model()
    field = next(iter(model.model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(instance, field, None)
    assert all(info.description for info in model.model_fields.values()), "every field becomes a UI form label"


def test_sharding_defaults() -> None:
    assert Sharding() == Sharding(series_per_shard=20000, shards=None, deployment=None, max_attempts=3,
                                  poll_seconds=2.0)
    assert Sharding(deployment="forecast-shard/gpu").deployment == "forecast-shard/gpu"


def test_run_summary_refuses_an_invalid_job() -> None:
    fields = {"run_id": "r", "job": "ok", "as_of": "2026-01-01", "series_in": 1, "series_ok": 1,
              "series_rejected": 0, "checkpoint_sha256": "s", "input_fingerprint": "f", "outputs": {},
              "mlflow_run_id": None, "tracking_status": "ok", "series_failed": 0, "forecast_rows": 8,
              "inference_seconds": 0.1, "series_per_second": 10.0, "device": "cpu", "precision": "fp32",
              "batch_size": 4, "checkpoint": "c"}
    assert RunSummary(**fields).warnings == []
    with pytest.raises(ValidationError, match="Invalid job name"):
        RunSummary(**{**fields, "job": "../escape"})


def test_engine_config_is_a_hashable_cache_key() -> None:
    config = engine_config(ModelParams(), settings())
    assert {config: 1}[dataclasses.replace(config)] == 1, "equal configs must find the same cached engine"


def test_covariate_parameters_name_each_column_once_and_check_the_calendar() -> None:
    params = CovariateParams(dynamic_numerical=["price"], static_categorical=["region"], calendar=["holiday:de/by"])
    assert params.enabled and params.columns() == {"price": "numerical", "region": "categorical"}
    assert params.calendar == ("holiday:DE/BY",) and params.dynamic() == ("price",) and params.static() == ("region",)
    assert not CovariateParams().enabled and CovariateParams().describe() is None
    with pytest.raises(ValidationError, match=r"Covariates \['price'\] are named more than once"):
        CovariateParams(dynamic_numerical=["price"], dynamic_categorical=["price"])
    with pytest.raises(ValidationError, match=r"Covariates \['month'\] are named more than once"):
        CovariateParams(dynamic_categorical=["month"], calendar=["month"])
    with pytest.raises(ValidationError, match="Unknown calendar covariate 'weekday'"):
        CovariateParams(calendar=["weekday"])
    with pytest.raises(ValidationError, match="future_source gives future values of dynamic covariates, but none"):
        CovariateParams(static_numerical=["size"], future_source=FileSource(path="f.csv"))
    with pytest.raises(ValidationError, match="ridge"):
        CovariateParams(dynamic_numerical=["price"], ridge=-1)
    record = CovariateParams(dynamic_numerical=["price"], future_source=FileSource(path="f.csv")).describe()
    assert record is not None and record["future_source"] == FileSource(path="f.csv").describe()
