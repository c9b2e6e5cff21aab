"""A run's parameters, resolved once: flow parameters first, the environment's settings for what is empty.

A flow calls :func:`resolve_run` when it starts and passes the result down; a sharded run ships it to its
shards as is, so every worker runs the same checkpoint, horizon and checks whatever its own environment says.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from forecast_model import EngineConfig
from pipeline.contracts import ContextLength, Horizon
from pipeline.params import (
    CovariateParams,
    FreqAlias,
    JobName,
    ModelParams,
    default_job_name,
    engine_config,
    validate_job_name,
)
from pipeline.publish import check_output_root
from pipeline.series_checks import SeriesChecks
from pipeline.settings import Settings
from pipeline.sources import DuckDBSource, FileSource, UrlSource

__all__ = ["ResolvedRun", "resolve_job", "resolve_run", "run_parameters", "scheduled_date"]


class ResolvedRun(BaseModel):
    """Everything a run's stages need to know about what to do, with no empty field left to fill."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    job: JobName
    as_of: date
    output_root: Path
    horizon: Horizon
    context_len: ContextLength
    engine: EngineConfig
    checks: SeriesChecks
    freq: FreqAlias | None = None
    overlap: bool = True  # FORECAST_OVERLAP: read and write beside the engine's work, not between its chunks
    cpu_threads: int | None = None  # FORECAST_CPU_THREADS; None: the worker decides (engine_threads)
    covariates: CovariateParams = CovariateParams()


def resolve_run(settings: Settings, source: FileSource | UrlSource | DuckDBSource, *, run_id: str, as_of: date,
                model: ModelParams, checks: SeriesChecks, freq: str | None = None, horizon: int | None = None,
                job: str | None = None, output_root: str | None = None,
                covariates: CovariateParams | None = None) -> ResolvedRun:
    """The run's parameters with every empty one taken from ``settings``; the output root is checked here, so a
    wrong one fails before any work."""
    root = check_output_root(Path(output_root).resolve() if output_root is not None else
                             settings.resolved_output_root())
    return ResolvedRun(run_id=run_id, job=resolve_job(source, job),
                       as_of=as_of, output_root=root,
                       horizon=settings.horizon_len if horizon is None else horizon,
                       context_len=model.context_len or settings.context_len, engine=engine_config(model, settings),
                       checks=checks, freq=freq, overlap=settings.overlap,
                       cpu_threads=settings.cpu_threads, covariates=covariates or CovariateParams())


def resolve_job(source: FileSource | UrlSource | DuckDBSource, job: str | None) -> str:
    """The job a run writes: ``job``, checked, else the name derived from the source."""
    return validate_job_name(default_job_name(source) if job is None else job)


def scheduled_date(scheduled: datetime | None) -> date:
    """A run's logical date: the date (UTC) it was scheduled for, else today (UTC)."""
    return scheduled.astimezone(timezone.utc).date() if scheduled else datetime.now(timezone.utc).date()


def run_parameters(run: ResolvedRun, source: FileSource | UrlSource | DuckDBSource, **extra: Any) -> dict[str, Any]:
    """The resolved parameters as the manifest and MLflow record them, with a flow's own (``extra``) added."""
    return {"source": source.describe(), "format": source.format, "horizon": run.horizon,
            "context_len": run.context_len, "model": dataclasses.asdict(run.engine), "checks": run.checks.model_dump(),
            "freq": run.freq, "job": run.job, "as_of": run.as_of.isoformat(), **extra}
