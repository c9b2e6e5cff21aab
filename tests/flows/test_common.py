"""The pure parts every batch flow shares: flattened MLflow parameters, the run summary's shared fields, and
the staging guard that cleans up and turns a full disk into a fix."""

from __future__ import annotations

import errno
from datetime import date
from pathlib import Path

import pytest

from flows.common import Published, RunContext, _flatten, outcome, staged
from pipeline.accounting import SeriesCounts
from pipeline.errors import OutputSpaceError
from pipeline.manifest import ModelInfo, RunManifest, build_manifest
from pipeline.params import RunSummary
from pipeline.settings import Settings
from tests.conftest import make_run


def test_flatten_joins_nested_keys_with_dots() -> None:
    nested = {"horizon": 8, "model": {"checkpoint": "/m", "engine": {"batch_size": 4, "device": "cpu"}},
              "checks": {"min_observations": 2}, "tags": ["a", "b"], "freq": None}
    assert _flatten(nested) == {"horizon": 8, "model.checkpoint": "/m", "model.engine.batch_size": 4,
                                "model.engine.device": "cpu", "checks.min_observations": 2, "tags": ["a", "b"],
                                "freq": None}
    assert _flatten({"a": 1}, "run.") == {"run.a": 1}
    assert _flatten({}) == {}


@pytest.fixture
def manifest(tmp_path: Path) -> RunManifest:
    return build_manifest(make_run(output_root=tmp_path), flow_name="batch-forecast", deployment=None,
                          source="file:/data/in.csv", input_fingerprint="f" * 64,
                          counts=SeriesCounts(ok=9, rejected=2, failed=1, by_reason={"constant": 2,
                                                                                     "non_finite_forecast": 1}),
                          output_rows=72, model=ModelInfo(device="cpu", precision="fp32", checkpoint_sha256="c" * 64),
                          parameters={"horizon": 8}, timings={"load": 0.1})


def test_outcome_carries_the_published_fields_into_a_valid_summary(manifest: RunManifest) -> None:
    published = Published(outputs={"forecasts": "/out/forecasts/data.parquet"}, mlflow_run_id="m1",
                          tracking_status="ok", warnings=["catalog: locked"])
    fields = outcome(manifest, published)
    assert fields == {"run_id": "run-1", "job": "test", "as_of": "2027-01-01", "checkpoint_sha256": "c" * 64,
                      "input_fingerprint": "f" * 64, "series_in": 12, "series_ok": 9, "series_rejected": 2,
                      "series_failed": 1, "outputs": published.outputs, "mlflow_run_id": "m1", "tracking_status": "ok",
                      "warnings": ["catalog: locked"]}
    summary = RunSummary(**fields, forecast_rows=manifest.output_rows,
                         inference_seconds=0.5, series_per_second=18.0, device=manifest.device,
                         precision=manifest.precision, batch_size=4, checkpoint=manifest.checkpoint)
    assert summary.as_of == date(2027, 1, 1) and summary.series_failed == 1
    assert summary.series_in == summary.series_ok + summary.series_rejected + summary.series_failed


def context(tmp_path: Path) -> RunContext:
    staging = tmp_path / "_staging" / "run-1"
    staging.mkdir(parents=True)
    (staging / "forecasts.parquet").write_bytes(b"partial")
    return RunContext(settings=Settings(_env_file=None), run=make_run(output_root=tmp_path), flow_name="t",
                      deployment=None, staging=staging)


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   OSError(errno.EDQUOT, "Disk quota exceeded"),
                                   OSError("[Errno 28] No space left on device (from pyarrow)")],
                         ids=["ENOSPC", "EDQUOT", "message"])
def test_a_full_output_filesystem_becomes_an_output_space_error(tmp_path: Path, error: OSError) -> None:
    ctx = context(tmp_path)
    with pytest.raises(OutputSpaceError, match="Nothing was published") as raised, staged(ctx):
        raise error
    assert f"output filesystem of {tmp_path} is full" in str(raised.value)
    assert raised.value.__cause__ is error, "raised from the OSError"
    assert not ctx.staging.exists(), "the staging directory is removed"


@pytest.mark.parametrize("error", [PermissionError(errno.EACCES, "Permission denied"),
                                   OSError(errno.EIO, "Input/output error"), RuntimeError("boom")],
                         ids=["EACCES", "EIO", "RuntimeError"])
def test_other_errors_pass_unchanged_and_staging_is_removed(tmp_path: Path, error: Exception) -> None:
    ctx = context(tmp_path)
    with pytest.raises(type(error)) as raised, staged(ctx):
        raise error
    assert raised.value is error and not isinstance(raised.value, OutputSpaceError)
    assert not ctx.staging.exists(), "the staging directory is removed on any failure"


def test_a_run_that_succeeds_removes_its_staging_too(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    with staged(ctx):
        assert (ctx.staging / "forecasts.parquet").is_file()
    assert not ctx.staging.exists() and tmp_path.is_dir(), "only the staging directory goes"
