"""Health checks: healthy on a working setup, unhealthy naming the failing check otherwise."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forecast_model import EngineConfig, ResolvedCheckpoint, registry
from pipeline.health import HealthConfig, build_report, run_checks
from pipeline.sources import DuckDBSource, FileSource, SourcePolicy, UrlSource
from tasks.health import check_tracking


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


def config(tmp_path: Path, checkpoint: str, **overrides: object) -> HealthConfig:
    values: dict[str, object] = {
        "engine": EngineConfig(checkpoint=checkpoint, device="cpu"), "output_root": tmp_path / "out",
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "prefect_api_url": None,
        "policy": SourcePolicy(data_roots=(tmp_path,)), "min_free_bytes": 1}
    return HealthConfig(**{**values, **overrides})  # type: ignore[arg-type]


def test_healthy(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    (tmp_path / "in.csv").write_text("unique_id,ds,y\n")
    report = build_report(run_checks(config(tmp_path, str(tiny_checkpoint.weights.parent),
                                            sources=(FileSource(path=str(tmp_path / "in.csv")),)),
                                     check_tracking))
    assert report["status"] == "healthy", report["checks"]
    assert report["models"]["timesfm20"]["status"] == "ready" and report["models"]["timesfm20"]["error"] is None
    assert {"status", "timestamp", "api_version", "models", "checks"} <= set(report)
    assert set(report["checks"]) == {"device", "output_root", "tracking", "model", "source_0"}


def test_wrong_checkpoint_is_unhealthy(tmp_path: Path) -> None:
    report = build_report(run_checks(config(tmp_path, str(tmp_path / "missing")), check_tracking))
    assert report["status"] == "unhealthy"
    assert not report["checks"]["model"]["ok"] and "missing" in report["checks"]["model"]["detail"]
    assert report["models"]["timesfm20"]["status"] == "error" and report["models"]["timesfm20"]["error"]
    assert report["checks"]["output_root"]["ok"], "only the failing check may fail"


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only filesystem (a tmpfs mounted ro); for non-root users, a directory without write bits."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_read_only_output_root_is_unhealthy(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint,
                                            read_only_dir: Path) -> None:
    checks = run_checks(config(tmp_path, str(tiny_checkpoint.weights.parent), output_root=read_only_dir,
                               check_model=False), check_tracking)
    assert not checks["output_root"]["ok"] and "not writable" in checks["output_root"]["detail"]
    assert build_report(checks)["status"] == "unhealthy"


def test_unreachable_sources_and_tracking(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    (tmp_path / "dir.duckdb").mkdir()
    sources = (FileSource(path=str(tmp_path / "none.csv")), UrlSource(url="http://10.0.0.1/x.csv"),
               FileSource(path="/etc/passwd"), DuckDBSource(database=str(tmp_path / "none.duckdb"), table="t"),
               DuckDBSource(database=str(tmp_path / "dir.duckdb"), table="t"))
    checks = run_checks(config(tmp_path, "x", sources=sources, check_model=False, tracking_uri="http://127.0.0.1:9",
                               prefect_api_url="http://127.0.0.1:9/api"), check_tracking)
    assert not checks["source_0"]["ok"] and "missing" in checks["source_0"]["detail"]
    assert not checks["source_1"]["ok"] and "internal" in checks["source_1"]["detail"]
    assert not checks["source_2"]["ok"] and "outside the data roots" in checks["source_2"]["detail"]
    assert not checks["source_3"]["ok"] and "does not exist" in checks["source_3"]["detail"]
    assert not checks["source_4"]["ok"] and "dir.duckdb is a directory" in checks["source_4"]["detail"]
    assert not checks["tracking"]["ok"] and not checks["prefect_api"]["ok"]


def test_a_worker_pinned_to_a_missing_gpu_is_unhealthy_before_and_after_loading(
        tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from pipeline.health import preflight_checks
    from pipeline.params import ModelParams, engine_config
    from pipeline.settings import Settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("FORECAST_DEVICE_INDEX", "1")
    engine = engine_config(ModelParams(checkpoint=str(tiny_checkpoint.weights.parent), device="gpu"), Settings())
    assert engine.device_index == 1, "the worker's pin reaches the engine the runs load"
    checks = config(tmp_path, engine.checkpoint, engine=engine)
    preflight = preflight_checks(checks)
    assert set(preflight) == {"device", "output_root"}, "a worker checks only what fails every run"
    assert not preflight["device"]["ok"] and preflight["device"]["detail"].startswith("No such GPU: device index 1")
    report = build_report(run_checks(checks, check_tracking))
    assert report["status"] == "unhealthy"
    assert report["checks"]["model"]["detail"].startswith("No such GPU"), "loading the model fails the same way"
    assert report["models"]["timesfm20"]["status"] == "error"
