"""Deployments refuse unknown parameters: ``python -m deployments.parameters`` (idempotent; ./setup.sh serve
runs it after ``prefect deploy``).

Prefect derives a deployment's parameter schema from the flow's signature without ``additionalProperties``,
so a misspelled parameter in a REST ``create_flow_run`` (``"horizn": 8``) is stored, and the run then
crashes in its worker with only "Process exited with status code: 1". With ``additionalProperties: false``
the server refuses it at creation (409, naming the unexpected parameter), as it refuses a bad value.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.filters import FlowFilter, FlowFilterName

from deployments.automations import DEPLOYED_FLOWS

__all__ = ["closed_schema", "refuse_unknown_parameters"]


def closed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``additionalProperties: false`` at its top level (the flow's parameters)."""
    return {**schema, "additionalProperties": False}


async def refuse_unknown_parameters(flows: tuple[str, ...] = DEPLOYED_FLOWS) -> list[str]:
    """Closes the parameter schema of every deployment of ``flows``; returns the deployments changed."""
    changed = []
    async with get_client() as client:
        deployments = await client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows))))
        for deployment in deployments:
            schema = deployment.parameter_openapi_schema or {}
            if schema.get("additionalProperties") is False:
                continue
            await client.update_deployment(deployment.id, DeploymentUpdate(parameter_openapi_schema=closed_schema(
                schema), enforce_parameter_schema=True))
            changed.append(deployment.name)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", action="append", help="Flow whose deployments are closed (default: every one).")
    args = parser.parse_args()
    changed = asyncio.run(refuse_unknown_parameters(tuple(args.flow or DEPLOYED_FLOWS)))
    print(f"Deployments now refusing unknown parameters: {', '.join(changed) or 'none changed (already closed)'}")


if __name__ == "__main__":
    main()
