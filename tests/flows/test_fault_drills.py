"""Fault drills inside one flow run (real Prefect API, real MLflow server, a real full filesystem): each ends
in exactly one complete published output, or in a clean failure that publishes nothing and leaves the
earlier output as it was. The drills that need several processes are in tests/e2e/test_fault_drills.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

import forecast_model.engine as engine_module
from flows.batch_forecast import batch_forecast
from forecast_model import CheckpointError, EngineConfig, ResolvedCheckpoint, registry
from pipeline.contracts import QUANTILE_COLUMNS
from pipeline.errors import OutputSpaceError
from pipeline.health import HealthConfig, build_report, run_checks
from pipeline.params import ModelParams, RunSummary
from pipeline.sources import FileSource, SourcePolicy
from tasks.health import check_tracking
from tasks.tracking import TrackingError
from tests.conftest import SAMPLE, require
from tests.mlflow_server import MlflowServer

# Whole flow runs per test: the full suite runs them, ./setup.sh test-fast does not.
pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]
AS_OF = date(2026, 11, 20)


def run(checkpoint: str, output_root: Path | None = None, **kwargs: object) -> RunSummary:
    return batch_forecast(source=FileSource(path=str(SAMPLE)), horizon=4, as_of=AS_OF,
                          model=ModelParams(checkpoint=checkpoint, device="cpu"), job="drill",
                          output_root=str(output_root) if output_root else None, **kwargs)  # type: ignore[arg-type]


def snapshot(root: Path) -> dict[str, str]:
    """Every published file under ``root`` and a hash of its bytes (staging and catalog aside)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and "_staging" not in p.parts and p.suffix == ".parquet"}


def test_tracking_server_dies_in_the_middle_of_tracking(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                       tmp_path_factory: pytest.TempPathFactory,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-dies"))
    server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    real_log_batch = MlflowClient.log_batch

    def dies_first(self: MlflowClient, *args: object, **kwargs: object) -> None:
        server.stop()  # after the MLflow run was created, before its parameters and metrics are in
        real_log_batch(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", dies_first)
    try:
        summary = run(str(tiny_checkpoint.weights.parent))
        assert summary.tracking_status == "failed" and summary.mlflow_run_id is None
        forecasts = pd.read_parquet(summary.outputs["forecasts"])
        assert forecasts["unique_id"].nunique() == 12 and (forecasts["run_id"] == summary.run_id).all()
        manifest = pd.read_parquet(summary.outputs["runs"])
        assert manifest.loc[0, "tracking_status"] == "failed" and server.url in manifest.loc[0, "tracking_error"]

        published = snapshot(workspace / "data" / "outputs")
        server.start()
        with pytest.raises(TrackingError, match="tracking_required is set"):
            run(str(tiny_checkpoint.weights.parent), tracking_required=True)
        assert snapshot(workspace / "data" / "outputs") == published, "a required-tracking failure publishes nothing"
    finally:
        server.stop()


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, so that it can really fill up; needs root (CI runs as root) to mount."""
    require(os.geteuid() == 0, "mounting a tmpfs needs root (CI runs this drill as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(filesystem: Path, leave_bytes: int) -> Path:
    ballast = filesystem / "ballast"
    free = shutil.disk_usage(filesystem).free
    with ballast.open("wb") as out:
        out.write(b"\0" * max(0, free - leave_bytes))
    return ballast


def test_output_filesystem_full_publishes_nothing(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                   small_filesystem: Path) -> None:
    checkpoint = str(tiny_checkpoint.weights.parent)
    first = run(checkpoint, small_filesystem)
    published = snapshot(small_filesystem)
    assert "forecasts/job=drill/as_of=2026-11-20/data.parquet" in published

    ballast = fill(small_filesystem, leave_bytes=64 * 1024)
    with pytest.raises(OutputSpaceError, match=r"is full .*Nothing was published.*FORECAST_OUTPUT_ROOT"):
        run(checkpoint, small_filesystem)
    assert snapshot(small_filesystem) == published, "the earlier output must be intact"
    assert not any((small_filesystem / "_staging").iterdir()), "the failed run's staging must be gone"
    assert pd.read_parquet(first.outputs["forecasts"])["run_id"].eq(first.run_id).all()

    ballast.unlink()
    again = run(checkpoint, small_filesystem)
    assert pd.read_parquet(again.outputs["forecasts"])["run_id"].eq(again.run_id).all(), "space back, run works"


def test_out_of_memory_in_inference_is_recovered_by_backing_off(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = str(tiny_checkpoint.weights.parent)
    expected = pd.read_parquet(run(checkpoint).outputs["forecasts"])
    real = engine_module.last_patch_forecast
    batches: list[int] = []

    def four_fit(module: object, values: torch.Tensor, *args: object, **kwargs: object) -> object:
        batches.append(values.shape[0])
        if values.shape[0] > 4:
            raise torch.OutOfMemoryError("injected: CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(module, values, *args, **kwargs)

    monkeypatch.setattr(engine_module, "last_patch_forecast", four_fit)
    registry.reset()  # a fresh engine, with the default batch size (256 on CPU)
    try:
        summary = run(checkpoint)
    finally:
        registry.reset()
    assert batches[0] > 4 and summary.batch_size <= 4, (batches, summary.batch_size)
    assert summary.batch_size in batches, "the run records the batch size it ended with"
    forecasts = pd.read_parquet(summary.outputs["forecasts"])
    assert forecasts["run_id"].eq(summary.run_id).all() and len(forecasts) == len(expected)
    # Same numbers up to fp32 summation order (a batch of 3 sums in another order than one of 12), judged
    # against each series' own scale.
    columns = ["forecast", *QUANTILE_COLUMNS]
    assert (forecasts[["unique_id", "step"]].values == expected[["unique_id", "step"]].values).all()
    error = (forecasts[columns] - expected[columns]).abs().max(axis=1).groupby(expected["unique_id"]).max()
    scale = expected[columns].abs().max(axis=1).groupby(expected["unique_id"]).max()
    assert (error <= 1e-4 * scale).all(), (error / scale).max()
    assert pd.read_parquet(summary.outputs["runs"]).loc[0, "parameters"], "the manifest is published with it"


def health(tmp_path: Path, checkpoint: str) -> dict:
    registry.reset()
    return build_report(run_checks(HealthConfig(
        engine=EngineConfig(checkpoint=checkpoint, device="cpu"), output_root=tmp_path / "out",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", prefect_api_url=None,
        policy=SourcePolicy(data_roots=(tmp_path,)), min_free_bytes=1), check_tracking))


class Payload:
    """A pickle that runs code when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("damage", ["truncated", "wrong shape", "pickled code"])
def test_bad_checkpoint_fails_naming_the_file_and_health_says_error(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint, damage: str) -> None:
    good = str(tiny_checkpoint.weights.parent)
    published = snapshot(workspace / "data" / "outputs") if run(good) else {}
    bad = workspace / "bad-checkpoint"
    shutil.copytree(tiny_checkpoint.weights.parent, bad)
    weights = bad / tiny_checkpoint.weights.name
    marker = workspace / "code-ran"
    if damage == "truncated":
        weights.write_bytes(tiny_checkpoint.weights.read_bytes()[:4096])
    elif damage == "wrong shape":
        state = torch.load(tiny_checkpoint.weights, weights_only=True)
        torch.save({k: v[..., :1] if v.ndim else v for k, v in state.items()}, weights)
    else:
        torch.save({"payload": Payload(marker)}, weights)

    with pytest.raises(CheckpointError, match=weights.name if damage != "wrong shape" else "does not match") as caught:
        run(str(bad))
    assert str(bad) in str(caught.value), "the error must name the checkpoint"
    assert not marker.exists(), "loading a checkpoint must never run pickled code"
    assert snapshot(workspace / "data" / "outputs") == published, "nothing published, the earlier output intact"

    report = health(workspace, str(bad))
    assert report["status"] == "unhealthy" and report["models"]["timesfm20"]["status"] == "error"
    assert str(bad) in report["models"]["timesfm20"]["error"]
    registry.reset()
