"""The forecast tasks on the tiny checkpoint: the model loads before any data work, every accepted series is
forecast and staged, and a whole job that forecasts nothing fails where a shard reports its counts."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect.logging import disable_run_logger

from forecast_model import EngineConfig, ResolvedCheckpoint, resolve_checkpoint
from pipeline.accounting import SeriesCounts
from pipeline.canonical import to_canonical
from pipeline.contracts import FORECAST_SCHEMA, QUANTILE_COLUMNS, STATUS_SCHEMA
from pipeline.errors import DataValidationError
from pipeline.manifest import ModelInfo
from pipeline.run import ResolvedRun
from pipeline.series_checks import SeriesChecks, check_series, regularize
from pipeline.tables import write_table
from tasks.forecast import ForecastStats, forecast_series, prepare_model, render_sample
from tests.conftest import make_run

CREATED = datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc)
HORIZON = 8


def engine(checkpoint: ResolvedCheckpoint) -> EngineConfig:
    return EngineConfig(checkpoint=str(checkpoint.weights.parent), device="cpu", batch_size=4)


def resolved(checkpoint: ResolvedCheckpoint, tmp_path: Path, checks: SeriesChecks | None = None) -> ResolvedRun:
    return make_run(engine=engine(checkpoint), output_root=tmp_path, horizon=HORIZON,
                    checks=(checks or SeriesChecks()).model_dump())


def stage_validated(frame: pd.DataFrame, tmp_path: Path, checks: SeriesChecks) -> tuple[Path, Path]:
    """What the validate task leaves for the forecast task: the regular series and their status."""
    status = check_series(frame, {}, checks, None, date(2027, 1, 1))
    regular = tmp_path / "regular.parquet"
    regularize(frame, status).to_parquet(regular, index=False)
    return regular, write_table(status, STATUS_SCHEMA, tmp_path / "status_in.parquet")


def forecast(checkpoint: ResolvedCheckpoint, tmp_path: Path, frame: pd.DataFrame,
             checks: SeriesChecks | None = None, whole_job: bool = True) -> ForecastStats:
    checks = checks or SeriesChecks()
    regular, status = stage_validated(frame, tmp_path, checks)
    with disable_run_logger():
        return forecast_series.fn(regular, status, tmp_path, resolved(checkpoint, tmp_path, checks),
                                  created_at=CREATED, whole_job=whole_job)


@pytest.fixture
def canonical(sample_frame: pd.DataFrame) -> pd.DataFrame:
    return to_canonical(sample_frame)


def test_prepare_model_reports_the_weights_it_loaded(tiny_checkpoint: ResolvedCheckpoint) -> None:
    with disable_run_logger():
        info = prepare_model.fn(engine(tiny_checkpoint))
    assert info == ModelInfo(device="cpu", precision="fp32",
                             checkpoint_sha256=hashlib.sha256(tiny_checkpoint.weights.read_bytes()).hexdigest(),
                             random_weights=True)


@pytest.mark.usefixtures("prefect_api")
def test_random_weights_are_warned_about_and_real_ones_are_not(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    from forecast_model.checkpoint import CKPT_FILENAME, CONFIG_FILENAME

    published = tmp_path / "published"  # the same files without the marker, as a real checkpoint has
    published.mkdir()
    for name in (CKPT_FILENAME, CONFIG_FILENAME):
        shutil.copy(tiny_checkpoint.weights.parent / name, published / name)
    from prefect import flow

    @flow
    def load(config: EngineConfig) -> ModelInfo:
        return prepare_model(config)

    with caplog.at_level("WARNING"):
        assert load(engine(tiny_checkpoint)).random_weights is True
    assert "holds seeded RANDOM weights (a test checkpoint): its forecasts mean nothing" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        info = load(engine(resolve_checkpoint(str(published))))
    assert info.random_weights is False and "RANDOM" not in caplog.text


def test_every_accepted_series_is_forecast_and_staged(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                                      canonical: pd.DataFrame) -> None:
    stats = forecast(tiny_checkpoint, tmp_path, canonical)
    assert stats.counts == SeriesCounts(ok=12)
    assert stats.output_rows == 12 * HORIZON
    assert (stats.device, stats.precision, stats.batch_size) == ("cpu", "fp32", 4)
    assert stats.series_per_second > 0 and stats.inference_seconds >= 0
    assert (stats.forecasts_path, stats.status_path) == (tmp_path / "forecasts.parquet",
                                                         tmp_path / "series_status.parquet")
    table = pq.read_table(stats.forecasts_path)
    assert table.schema == FORECAST_SCHEMA and pq.read_table(stats.status_path).schema == STATUS_SCHEMA
    forecasts = table.to_pandas()
    last = canonical.groupby("unique_id")["ds"].max()
    for series_id, rows in forecasts.groupby("unique_id"):
        assert rows["step"].tolist() == list(range(1, HORIZON + 1))
        assert (rows["cutoff"] == last[series_id]).all(), f"{series_id}: cutoff is the last observed quarter"
        assert rows["ds"].tolist() == list(pd.date_range(last[series_id], periods=HORIZON + 1, freq="QS")[1:])
    assert (forecasts[QUANTILE_COLUMNS].diff(axis=1).iloc[:, 1:] >= 0).all().all(), "quantiles must not cross"
    assert set(forecasts["model"]) == {str(tiny_checkpoint.weights.parent)} and set(forecasts["run_id"]) == {"run-1"}
    assert (forecasts["created_at"] == pd.Timestamp(CREATED)).all()


def test_rejected_series_are_not_forecast(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                          canonical: pd.DataFrame) -> None:
    frame = canonical.copy()
    frame.loc[frame["unique_id"] == "realint", "y"] = 2.0
    stats = forecast(tiny_checkpoint, tmp_path, frame)
    assert stats.counts == SeriesCounts(ok=11, rejected=1, by_reason={"constant": 1})
    assert "realint" not in set(pd.read_parquet(stats.forecasts_path)["unique_id"])
    status = pd.read_parquet(stats.status_path).set_index("unique_id")
    assert status.loc["realint", ["status", "reason"]].tolist() == ["rejected", "constant"]


def test_a_whole_job_with_every_series_rejected_fails(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                                      canonical: pd.DataFrame) -> None:
    checks = SeriesChecks(min_observations=1000, max_rejected_fraction=1.0)
    with pytest.raises(DataValidationError, match=r"No series could be forecast: all 12 were rejected or failed "
                                                  r"\(12 rejected, 0 failed\).*too_few_observations"):
        forecast(tiny_checkpoint, tmp_path, canonical, checks)
    assert not (tmp_path / "forecasts.parquet").exists(), "nothing is staged for publishing"


def test_a_whole_job_over_the_rejection_limit_fails(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                                    canonical: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="12 of 12 series cannot be forecast"):
        forecast(tiny_checkpoint, tmp_path, canonical, SeriesChecks(min_observations=1000))


def test_a_shard_with_every_series_rejected_returns_its_counts(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                                               canonical: pd.DataFrame) -> None:
    checks = SeriesChecks(min_observations=1000)
    stats = forecast(tiny_checkpoint, tmp_path, canonical, checks, whole_job=False)
    assert stats.counts == SeriesCounts(rejected=12, by_reason={"too_few_observations": 12})
    assert stats.output_rows == 0
    forecasts = pq.read_table(stats.forecasts_path)
    assert forecasts.num_rows == 0 and forecasts.schema == FORECAST_SCHEMA, "an empty table, with its schema"
    assert pq.read_table(stats.status_path).num_rows == 12


def test_render_sample_plots_the_staged_forecasts(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                                  canonical: pd.DataFrame) -> None:
    stats = forecast(tiny_checkpoint, tmp_path, canonical)
    path = render_sample.fn(tmp_path / "regular.parquet", stats.forecasts_path, tmp_path)
    assert path == tmp_path / "sample.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from pipeline.plot import plot_sample

    # It reads only the plotted series, and draws what the whole tables would give.
    whole = plot_sample(pd.read_parquet(tmp_path / "regular.parquet"), pd.read_parquet(stats.forecasts_path),
                        tmp_path / "whole.png")
    assert path.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize(("configured", "overlap"), [(None, True), (1, True), (None, False)])
def test_a_cpu_engine_runs_with_the_threads_the_stage_gives_it(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                                              canonical: pd.DataFrame, monkeypatch: pytest.MonkeyPatch,
                                                              configured: int | None, overlap: bool) -> None:
    import torch

    from forecast_model import TimesFmEngine
    from pipeline.forecasting import engine_threads

    seen: list[int] = []
    real = TimesFmEngine.forecast
    monkeypatch.setattr(TimesFmEngine, "forecast", lambda self, *a, **k: seen.append(torch.get_num_threads())
                        or real(self, *a, **k))
    before = torch.get_num_threads()
    regular, status = stage_validated(canonical, tmp_path, SeriesChecks())
    run = resolved(tiny_checkpoint, tmp_path).model_copy(update={"cpu_threads": configured, "overlap": overlap})
    with disable_run_logger():
        forecast_series.fn(regular, status, tmp_path, run, created_at=CREATED)
    expected = engine_threads(configured, available=before)
    assert seen and set(seen) == {expected}, f"every engine call ran with {expected} threads: {seen}"
    assert torch.get_num_threads() == before, "the process's count is restored after the stage"
