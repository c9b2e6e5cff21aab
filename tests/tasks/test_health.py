"""The health task: the MLflow store check on a good, an unreachable and an unreadable store, and the report
written to the output root."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.logging import disable_run_logger

from forecast_model import EngineConfig
from pipeline.health import HealthConfig
from pipeline.sources import SourcePolicy
from tasks.health import check_tracking, report_health


def config(tmp_path: Path, **overrides: Any) -> HealthConfig:
    values: dict[str, Any] = {
        "engine": EngineConfig(checkpoint=str(tmp_path / "unused"), device="cpu"), "output_root": tmp_path / "out",
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "prefect_api_url": None,
        "policy": SourcePolicy(data_roots=(tmp_path,)), "min_free_bytes": 1, "check_model": False}
    return HealthConfig(**{**values, **overrides})


def test_a_fresh_sqlite_store_is_readable(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ok, detail = check_tracking(uri)
    assert ok, detail
    assert detail == f"{uri} readable"
    assert (tmp_path / "mlflow.db").is_file(), "the store was opened for real"


def test_a_server_that_refuses_connections_is_not_ok_and_named() -> None:
    ok, detail = check_tracking("http://127.0.0.1:9/")
    assert not ok
    assert "http://127.0.0.1:9/health" in detail and "did not answer" in detail, detail


def test_a_store_that_cannot_be_read_is_not_ok_and_named(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the store's directory should be")
    uri = f"sqlite:///{blocker}/mlflow.db"
    ok, detail = check_tracking(uri)
    assert not ok
    assert detail.startswith(f"MLflow store {uri} cannot be read: ") and str(blocker) in detail, detail
    assert "\n" not in detail, "only the first line of the error"


def health_artifacts() -> list[Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["health"])))
    return asyncio.run(read())


@pytest.mark.usefixtures("prefect_api")
def test_report_health_writes_the_report_and_an_artifact(tmp_path: Path) -> None:
    before = len(health_artifacts())
    with disable_run_logger():
        report = report_health.fn(config(tmp_path))
    path = tmp_path / "out" / "_health" / "health.json"
    assert path.is_file(), "the report goes to <output_root>/_health/health.json"
    assert json.loads(path.read_text()) == report
    assert report["status"] == "healthy", report["checks"]
    assert set(report["checks"]) == {"device", "output_root", "tracking"}, "check_model=False skips the model"
    artifacts = health_artifacts()
    assert len(artifacts) == before + 1 and "# healthy" in max(artifacts, key=lambda a: a.created).data


@pytest.mark.usefixtures("prefect_api")
def test_an_unhealthy_report_is_written_too(tmp_path: Path) -> None:
    with disable_run_logger():
        report = report_health.fn(config(tmp_path, tracking_uri="http://127.0.0.1:9"))
    assert report["status"] == "unhealthy"
    assert not report["checks"]["tracking"]["ok"] and report["checks"]["output_root"]["ok"]
    written = json.loads((tmp_path / "out" / "_health" / "health.json").read_text())
    assert written["status"] == "unhealthy" and "127.0.0.1:9" in written["checks"]["tracking"]["detail"]
