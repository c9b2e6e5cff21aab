"""Every deployment definition loads its flow and its parameters validate against the flow's signature."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from deployments.automations import DEPLOYED_FLOWS
from flows.sharded_forecast import shard_parameters
from pipeline.sources import FileSource
from tests.conftest import REPO, SAMPLE, make_run

SPEC = yaml.safe_load((REPO / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_prefect_yaml_entrypoint_loads_with_its_parameters(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    spec = DEPLOYMENTS[name]
    flow = load_flow_from_entrypoint(spec["entrypoint"])
    base = spec.get("parameters") or {}
    if name in ("shard", "shard-gpu"):  # started by sharded-forecast runs only, with the parameters they send
        base = shard_parameters({"source": FileSource(path=str(SAMPLE)), "staging": "/shared/_staging/run",
                                 "shard": 3, "run": make_run(as_of=date(2026, 11, 26), output_root=Path("/shared"))})
    # A scheduled run gets the deployment's parameters overlaid with its schedule's, as Prefect merges them.
    parameter_sets = [{**base, **s.get("parameters", {})} for s in spec.get("schedules", [])] or [base]
    for parameters in parameter_sets:
        validated = flow.validate_parameters(parameters)
        if "source" in validated:
            assert Path(validated["source"].path).is_file(), f"{name}: source {validated['source'].path} missing"


def test_every_deployed_flow_is_watched_for_silent_crashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    deployed = {load_flow_from_entrypoint(d["entrypoint"]).name for d in DEPLOYMENTS.values()}
    assert deployed == set(DEPLOYED_FLOWS)
    assert all("PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in d["work_pool"]["job_variables"]["env"]
               for d in DEPLOYMENTS.values()), "a watched flow without heartbeats would be crashed while healthy"


def test_flow_parameter_schema_has_descriptions() -> None:
    flow = load_flow_from_entrypoint(str(REPO / "flows/batch_forecast.py") + ":batch_forecast")
    schema = flow.parameters.model_dump()
    for name in ("source", "horizon", "model", "freq", "job", "as_of", "output_root"):
        assert schema["properties"][name].get("description"), f"parameter {name} has no description for the UI"


def test_served_deployment_builds() -> None:
    from deployments.serve import build_deployments

    (deployment,) = build_deployments()
    assert deployment.name == "on-demand" and deployment.flow_name == "batch-forecast"


def test_source_is_a_discriminated_union_in_the_ui_form() -> None:
    flow = load_flow_from_entrypoint(str(REPO / "flows/batch_forecast.py") + ":batch_forecast")
    source = flow.parameters.model_dump()["properties"]["source"]
    assert source["discriminator"]["propertyName"] == "kind"
    assert set(source["discriminator"]["mapping"]) == {"file", "url", "duckdb"}


def test_schedules_and_pools() -> None:
    assert DEPLOYMENTS["nightly"]["schedules"][0]["cron"] == "0 2 * * *"
    assert DEPLOYMENTS["health-check"]["schedules"][0]["interval"] == 300
    assert "schedules" not in DEPLOYMENTS["on-demand"]
    pools = SPEC["definitions"]["work_pools"]
    assert pools["gpu"]["job_variables"]["env"]["TIMESFM20_DEFAULT_BACKEND"] == "gpu"
    assert pools["cpu"]["job_variables"]["env"]["TIMESFM20_DEFAULT_BACKEND"] == "cpu"
    # Each GPU worker pins its own device (forecast worker --device-index); a pool-wide pin would override it.
    assert not {"CUDA_VISIBLE_DEVICES", "FORECAST_DEVICE_INDEX"} & set(pools["gpu"]["job_variables"]["env"])


GPU_TWINS = {"on-demand-gpu": "on-demand", "nightly-gpu": "nightly", "shard-gpu": "shard",
             "health-check-gpu": "health-check"}


@pytest.mark.parametrize(("gpu", "cpu"), sorted(GPU_TWINS.items()))
def test_gpu_deployments_are_their_cpu_twins_on_the_gpu_pool(gpu: str, cpu: str) -> None:
    twin, original = DEPLOYMENTS[gpu], DEPLOYMENTS[cpu]
    assert twin["work_pool"]["name"] == "gpu" and original["work_pool"]["name"] == "cpu"
    assert twin["work_pool"].get("work_queue_name") == original["work_pool"].get("work_queue_name")
    assert twin["tags"] == [t.replace("pool:cpu", "pool:gpu") for t in original["tags"]]
    same = ("entrypoint", "parameters", "concurrency_limit")
    assert {k: twin.get(k) for k in same} == {k: original.get(k) for k in same}
    # The same schedules, shipped paused: a GPU pool without a worker must not pile up late runs.
    strip = [{k: v for k, v in s.items() if k != "active"} for s in twin.get("schedules", [])]
    assert strip == original.get("schedules", [])
    assert all(s["active"] is False for s in twin.get("schedules", []))


def test_every_gpu_pool_deployment_has_a_cpu_twin() -> None:
    on_gpu = {name for name, d in DEPLOYMENTS.items() if d["work_pool"]["name"] == "gpu"}
    assert on_gpu == set(GPU_TWINS)


def test_the_sharded_parent_says_how_to_choose_gpu_shards() -> None:
    flow = load_flow_from_entrypoint(str(REPO / DEPLOYMENTS["sharded-on-demand"]["entrypoint"]))
    sharding = flow.parameters.model_dump()["definitions"]["Sharding"]["properties"]["deployment"]
    assert "forecast-shard/shard-gpu" in sharding["description"] and "forecast-shard/shard" in sharding["description"]
    assert "shard-gpu" in DEPLOYMENTS["sharded-on-demand"]["description"]


@pytest.mark.parametrize(("parameters", "field"), [
    ({"source": {"kind": "url", "url": "https://example.com/x.csv",
                 "headers_secret": '{"Authorization": "Bearer sk-live-0123456789"}'}}, "source.headers_secret"),
    ({"source": {"kind": "url", "url_secret": "https://example.com/x.csv?token=sk-live-0123456789"}},
     "source"),  # an anyOf of source kinds: the failure is reported on the union
    ({"source": {"kind": "file", "path": "x.csv"}, "job": "../x"}, "job"),
])
def test_the_parameter_schema_makes_a_server_refuse_a_run_before_storing_it(parameters: dict[str, object],
                                                                             field: str) -> None:
    """A server enforcing the deployment's parameter schema (Prefect's default) refuses these at run creation,
    so a secret's value given in place of its name never reaches the Prefect database."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import ValidationError, validate

    from flows.batch_forecast import batch_forecast

    schema = parameter_schema(batch_forecast).model_dump_for_openapi()
    with pytest.raises(ValidationError, match=f"Validation failed for field '{re.escape(field)}[.']"):
        validate(parameters, schema, raise_on_error=True, preprocess=True, ignore_required=True)
    validate({"source": {"kind": "url", "url": "https://example.com/x.csv", "headers_secret": "env:SALES_HEADERS"}},
             schema, raise_on_error=True, preprocess=True, ignore_required=True)


def test_the_forecast_form_lists_the_covariate_fields() -> None:
    """The Prefect UI form of a forecast run offers every covariate field, with choices where the set is closed,
    and a server enforcing the schema refuses an unknown mode before storing the run."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import ValidationError, validate

    from flows.batch_forecast import batch_forecast

    schema = parameter_schema(batch_forecast)
    assert schema.properties["covariates"].get("description")
    fields = schema.model_dump()["definitions"]["CovariateParams"]["properties"]
    assert set(fields) == {"dynamic_numerical", "dynamic_categorical", "static_numerical", "static_categorical",
                           "calendar", "xreg_mode", "ridge", "normalize", "future_source", "effects"}
    assert all(field.get("description") for field in fields.values())
    assert fields["xreg_mode"]["enum"] == ["xreg + timesfm", "timesfm + xreg"]
    assert fields["dynamic_numerical"]["type"] == "array" and fields["dynamic_numerical"]["items"]["type"] == "string"
    assert {"$ref": "#/definitions/FileSource"} in fields["future_source"]["anyOf"][0]["oneOf"]
    openapi = schema.model_dump_for_openapi()
    with pytest.raises(ValidationError, match="covariates.xreg_mode"):
        validate({"source": {"kind": "file", "path": "x.csv"}, "covariates": {"xreg_mode": "both"}}, openapi,
                 raise_on_error=True, preprocess=True, ignore_required=True)


def test_deployments_are_tagged_with_their_kind_and_pool() -> None:
    for name, deployment in DEPLOYMENTS.items():
        pool = deployment["work_pool"]["name"]
        assert f"pool:{pool}" in deployment.get("tags", []), f"{name}: no pool tag to filter the deployments list by"
        assert {"forecast", "backtest", "anomalies", "health"} & set(deployment["tags"]), f"{name}: no kind tag"


@pytest.mark.parametrize("entrypoint", sorted({d["entrypoint"] for d in SPEC["deployments"]}))
def test_the_ui_form_offers_choices_and_plain_descriptions(entrypoint: str) -> None:
    """Fixed values are one-option choices, closed sets are choices, and no description shows RST markup."""
    import json

    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(load_flow_from_entrypoint(str(REPO / entrypoint))).model_dump()
    assert "``" not in json.dumps(schema), "RST double backticks show literally in the Prefect UI"
    definitions = schema.get("definitions", {})
    for name in ("FileSource", "UrlSource", "DuckDBSource"):
        if name in definitions:
            kind = definitions[name]["properties"]["kind"]
            assert kind["enum"] == [kind["const"]], f"{name}.kind would be an editable text box"
    if "ModelParams" in definitions:
        model = definitions["ModelParams"]["properties"]
        assert model["precision"]["enum"] == ["auto", "fp32", "tf32", "bf16"]
        assert [option.get("enum") for option in model["device"]["anyOf"]] == [["auto", "cpu", "gpu"], None]
