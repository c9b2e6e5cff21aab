"""Deployments refuse unknown parameters at run creation, against a real Prefect API."""

from __future__ import annotations

import asyncio

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError

from deployments.parameters import closed_schema, refuse_unknown_parameters
from flows.batch_forecast import batch_forecast

SAMPLE_SOURCE = {"kind": "file", "path": "data/samples/us_macro_quarterly.csv"}


def test_a_closed_schema_keeps_everything_else() -> None:
    schema = {"type": "object", "properties": {"horizon": {"type": "integer"}}, "definitions": {"X": {}}}
    assert closed_schema(schema) == {**schema, "additionalProperties": False}
    assert "additionalProperties" not in schema, "the deployment's schema is not changed in place"


@pytest.mark.usefixtures("prefect_api")
def test_a_misspelled_parameter_is_refused_at_creation_naming_it() -> None:
    deployment_id = batch_forecast.to_deployment(name="strict", parameters={"source": SAMPLE_SOURCE}).apply()

    async def create(parameters: dict) -> str:
        async with get_client() as client:
            run = await client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
            return str(run.id)

    assert asyncio.run(create({"horizn": 8})), "before: Prefect's schema lets the typo through"
    assert asyncio.run(refuse_unknown_parameters(("batch-forecast",))) == ["strict"]
    with pytest.raises(PrefectHTTPStatusError, match="409") as refused:
        asyncio.run(create({"horizn": 8}))
    assert "'horizn' was unexpected" in refused.value.response.text, refused.value.response.text
    assert asyncio.run(create({"horizon": 8})), "a known parameter still makes a run"
    assert asyncio.run(refuse_unknown_parameters(("batch-forecast",))) == [], "idempotent"


@pytest.mark.usefixtures("prefect_api")
def test_schedules_pause_and_resume_by_deployment_name() -> None:
    from prefect.schedules import Interval

    from deployments.schedules import set_schedules_active

    deployment_id = batch_forecast.to_deployment(
        name="paused-twin", parameters={"source": SAMPLE_SOURCE},
        schedules=[Interval(300, active=False), Interval(600, active=False)]).apply()

    async def states() -> list[bool]:
        async with get_client() as client:
            return sorted(s.active for s in (await client.read_deployment(deployment_id)).schedules)

    assert asyncio.run(states()) == [False, False]
    assert asyncio.run(set_schedules_active("batch-forecast/paused-twin", True)) == 2
    assert asyncio.run(states()) == [True, True]
    assert asyncio.run(set_schedules_active("batch-forecast/paused-twin", False)) == 2
    assert asyncio.run(states()) == [False, False]
