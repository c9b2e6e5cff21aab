"""The health-check flow: fails when the system cannot serve, so a Prefect automation can alert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.settings import PREFECT_API_URL

from pipeline.health import health_config
from pipeline.params import ModelParams, engine_config
from pipeline.settings import load_settings
from pipeline.sources import Source
from tasks.health import UnhealthyError, report_health

__all__ = ["health_check"]


@flow(name="health-check")
def health_check(
    sources: list[Source] = [],  # noqa: B006 - Prefect copies parameters; the UI needs a literal default
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen
    check_model: bool = True,
    min_free_gb: float = 1.0,
    output_root: str | None = None,
) -> dict[str, Any]:
    """Check that this worker can serve: model, device, output root, MLflow, Prefect API and sources.

    Writes the report (status, timestamp, api_version, models.timesfm20, checks) to
    `<output_root>/_health/health.json` and as a Prefect artifact; the run fails when unhealthy.

    Args:
        sources: Sources the forecast deployments read, checked for reachability.
        model: The checkpoint and device to check (empty: the environment defaults).
        check_model: Load the model and run a tiny forecast.
        min_free_gb: Least free space on the output root (and GPU memory) that counts as healthy.
        output_root: Output directory (default: FORECAST_OUTPUT_ROOT or data/outputs).
    """
    settings = load_settings()
    config = health_config(settings, engine_config(model, settings), tuple(sources), min_free_gb=min_free_gb,
                           check_model=check_model, output_root=Path(output_root).resolve() if output_root else None,
                           prefect_api_url=PREFECT_API_URL.value())
    report = report_health(config)
    if report["status"] != "healthy":
        failed = {name: c["detail"] for name, c in report["checks"].items() if not c["ok"]}
        raise UnhealthyError(f"Unhealthy: {failed}")
    return report
