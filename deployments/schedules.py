"""Pause or resume a deployment's schedules: ``python -m deployments.schedules resume FLOW/DEPLOYMENT``.

The GPU deployments' schedules ship paused (prefect.yaml): a pool with no worker would pile up late runs
that a GPU worker starting days later would all pick up. ``./setup.sh serve`` resumes the GPU health check
once it has started GPU workers; an operator does the same for ``nightly-gpu`` (docs/DEPLOYMENT.md).
"""

from __future__ import annotations

import argparse
import asyncio

from prefect.client.orchestration import get_client

__all__ = ["set_schedules_active"]


async def set_schedules_active(deployment: str, active: bool) -> int:
    """Sets every schedule of ``deployment`` ('flow-name/deployment-name') to ``active``; returns how many."""
    async with get_client() as client:
        found = await client.read_deployment_by_name(deployment)
        for schedule in found.schedules:
            await client.update_deployment_schedule(found.id, schedule.id, active=active)
        return len(found.schedules)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deployments.schedules", description=__doc__)
    parser.add_argument("action", choices=["pause", "resume"])
    parser.add_argument("deployment", help="flow-name/deployment-name, e.g. health-check/health-check-gpu")
    args = parser.parse_args()
    count = asyncio.run(set_schedules_active(args.deployment, args.action == "resume"))
    print(f"{args.action}d {count} schedule(s) of {args.deployment}")


if __name__ == "__main__":
    main()
