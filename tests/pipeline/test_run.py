"""A run's parameters resolved once: settings fill only what is empty, the output root is checked first, and
the result travels to shard runs as JSON unchanged."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from forecast_model import EngineConfig
from pipeline.contracts import MAX_HORIZON
from pipeline.errors import OutputRootError
from pipeline.params import ModelParams
from pipeline.run import ResolvedRun, resolve_run, run_parameters
from pipeline.series_checks import SeriesChecks
from pipeline.settings import Settings
from pipeline.sources import DuckDBSource, FileSource
from tests.conftest import SAMPLE, make_run

SOURCE = FileSource(path=str(SAMPLE))
AS_OF = date(2026, 11, 26)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings given explicitly (no environment variable or .env can change them)."""
    return Settings(_env_file=None, checkpoint="env/ckpt", backend="cpu", context_len=256, horizon_len=12,
                    batch_size=32, data_dir=tmp_path / "data", output_root=None)


def resolve(settings: Settings, source: FileSource | DuckDBSource = SOURCE, **fields: Any) -> ResolvedRun:
    arguments: dict[str, Any] = {"run_id": "r1", "as_of": AS_OF, "model": ModelParams(), "checks": SeriesChecks(),
                                 **fields}
    return resolve_run(settings, source, **arguments)


def test_empty_parameters_take_the_settings(settings: Settings, tmp_path: Path) -> None:
    run = resolve(settings)
    assert (run.horizon, run.context_len) == (12, 256)
    assert run.engine == EngineConfig(checkpoint="env/ckpt", device="cpu", batch_size=32)
    assert run.output_root == (tmp_path / "data" / "outputs").resolve()
    assert run.job == "us_macro_quarterly", "the job defaults to the source's name"
    assert (run.run_id, run.as_of, run.freq, run.checks) == ("r1", AS_OF, None, SeriesChecks())


def test_given_parameters_win_over_the_settings(settings: Settings, tmp_path: Path) -> None:
    model = ModelParams(checkpoint="/models/mine", device="auto", context_len=1024, batch_size=4)
    run = resolve(settings, model=model, horizon=24, job="nightly", freq="QS", output_root=str(tmp_path / "out"),
                  checks=SeriesChecks(min_observations=8))
    assert (run.horizon, run.context_len, run.job, run.freq) == (24, 1024, "nightly", "QS")
    assert run.engine == EngineConfig(checkpoint="/models/mine", device="auto", batch_size=4)
    assert run.output_root == tmp_path / "out" and run.checks.min_observations == 8


def test_a_zero_horizon_is_refused_not_replaced_by_the_default(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="horizon"):
        resolve(settings, horizon=0)


def test_a_relative_output_root_is_made_absolute(settings: Settings, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = resolve(settings, output_root="rel/out")
    assert run.output_root.is_absolute() and run.output_root == (tmp_path / "rel" / "out").resolve()


def test_a_file_as_output_root_fails_before_any_work(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "outputs.txt"
    blocker.write_text("not a directory")
    with pytest.raises(OutputRootError, match=r"outputs\.txt is a regular file, not a directory"):
        resolve(settings, output_root=str(blocker))
    file_settings = settings.model_copy(update={"output_root": blocker})
    with pytest.raises(OutputRootError, match="not a directory"):
        resolve(file_settings)


def test_the_job_comes_from_the_source_unless_given(settings: Settings, tmp_path: Path) -> None:
    database = DuckDBSource(database=str(tmp_path / "shop.duckdb"), query="SELECT 1")
    assert resolve(settings, source=database).job == "shop"
    assert resolve(settings, source=database, job="custom").job == "custom"
    with pytest.raises(ValueError, match="Invalid job name 'no/slashes'"):
        resolve(settings, job="no/slashes")


def test_resolved_run_round_trips_through_json_unchanged(settings: Settings, tmp_path: Path) -> None:
    model = ModelParams(checkpoint="/models/mine", batch_size=4, precision="tf32", expected_sha256="a" * 64)
    run = resolve(settings, model=model, freq="QS", horizon=16, output_root=str(tmp_path / "out"),
                  checks=SeriesChecks(max_staleness=3, max_rejected_fraction=0.5, reject_constant=False))
    wire = json.loads(json.dumps(run.model_dump(mode="json")))  # as Prefect ships parameters to a shard run
    back = ResolvedRun.model_validate(wire)
    assert back == run, f"the run changed on the way to a shard: {back} != {run}"
    assert isinstance(back.engine, EngineConfig) and isinstance(back.output_root, Path)
    assert isinstance(back.as_of, date) and back.checks == run.checks


def test_resolved_run_refuses_unknown_fields_and_changes() -> None:
    run = make_run()
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ResolvedRun.model_validate({**run.model_dump(mode="json"), "shards": 4})
    with pytest.raises(ValidationError, match="frozen"):
        run.horizon = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Invalid job name"):
        make_run(job="bad job")
    with pytest.raises(ValidationError, match="steps back in time"):
        make_run(freq="-1D")


def test_the_horizon_bound_is_the_same_for_runs_and_settings(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    assert MAX_HORIZON == 10_000
    assert make_run(horizon=MAX_HORIZON).horizon == MAX_HORIZON
    for bad in (MAX_HORIZON + 1, 0):
        with pytest.raises(ValidationError, match="horizon"):
            make_run(horizon=bad)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIMESFM20_DEFAULT_HORIZON_LEN", str(MAX_HORIZON))
    assert Settings().horizon_len == MAX_HORIZON
    monkeypatch.setenv("TIMESFM20_DEFAULT_HORIZON_LEN", str(MAX_HORIZON + 1))
    with pytest.raises(ValidationError, match="TIMESFM20_DEFAULT_HORIZON_LEN"):
        Settings()


def test_run_parameters_record_what_was_resolved(settings: Settings) -> None:
    run = resolve(settings, freq="QS", job="macro")
    parameters = run_parameters(run, SOURCE, backtest={"h": 4})
    assert parameters == {
        "source": f"file:{SAMPLE}", "format": "long", "horizon": 12, "context_len": 256,
        "model": {"checkpoint": "env/ckpt", "device": "cpu", "device_index": None, "batch_size": 32,
                  "expected_sha256": None, "precision": "auto"},
        "checks": SeriesChecks().model_dump(), "freq": "QS", "job": "macro", "as_of": "2026-11-26",
        "backtest": {"h": 4},
    }
    json.dumps(parameters)  # the manifest and MLflow store them as JSON
