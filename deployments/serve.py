"""Serve the batch forecast flow from this process: ``python -m deployments.serve``.

The process registers an ``on-demand`` deployment with the Prefect API in ``PREFECT_API_URL`` and runs
each flow run triggered from the UI or the REST API itself, with no work pool or worker to set up.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.batch_forecast import batch_forecast

__all__ = ["build_deployments", "main"]


def build_deployments() -> list[RunnerDeployment]:
    """The deployments this process serves."""
    return [
        batch_forecast.to_deployment(
            name="on-demand",
            description="Forecast a file on demand (served by `python -m deployments.serve`).",
            parameters={"source": {"kind": "file", "path": "data/samples/us_macro_quarterly.csv"}, "horizon": 8},
            tags=["forecast", "on-demand", "served"],
        )
    ]


def main() -> None:
    """Blocks, running triggered flow runs, until interrupted."""
    serve(*build_deployments())


if __name__ == "__main__":
    main()
