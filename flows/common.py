"""What every batch flow does around its own stages: set up a run, then track, record and publish it."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.runtime import deployment, flow_run
from prefect.settings import PREFECT_UI_URL

from forecast_model.errors import shorten
from pipeline.accounting import SeriesCounts
from pipeline.catalog import CATALOG_FILE
from pipeline.errors import OutputSpaceError
from pipeline.logfile import bind_run, register_run
from pipeline.manifest import ModelInfo, RunManifest, StageTimer, write_manifest
from pipeline.monitoring import MonitorInputs, MonitorSummary
from pipeline.params import CovariateParams, ModelParams, MonitorParams
from pipeline.publish import DATA_FILE, discard_staging, publish_tables, staging_dir, withdraw_partitions
from pipeline.report import artifact_key, dataset_uri, mlflow_run_url, run_name, run_summary, series_count_rows
from pipeline.run import ResolvedRun, resolve_run, scheduled_date
from pipeline.series_checks import SeriesChecks
from pipeline.settings import Settings, load_settings
from pipeline.sources import DuckDBSource, FileSource, UrlSource, redact_url
from tasks.catalog import refresh_catalog
from tasks.forecast import prepare_model
from tasks.load import LoadResult, load_series
from tasks.monitor import monitor_forecasts
from tasks.publish import publish_outputs
from tasks.report import report_run
from tasks.tracking import InputDataset, TrackedRun, TrackingError, track_run
from tasks.validate import ValidationOutcome, validate_series

__all__ = ["MONITOR_TABLES", "Monitoring", "Published", "RunContext", "forecast_metrics", "logical_date",
           "monitor_run", "outcome", "prepare_load_validate", "publish_run", "staged", "start_run"]

MONITOR_TABLES = ("revisions", "realized_accuracy", "realized_accuracy_by_series", "monitor_pending")


@dataclasses.dataclass(frozen=True)
class RunContext:
    """One flow run: its resolved parameters, where it stages, and who started it."""

    settings: Settings
    run: ResolvedRun
    flow_name: str
    deployment: str | None
    staging: Path
    source_uri: str | None = None  # the input as an MLflow dataset source (None: not to be logged)

    @property
    def experiment(self) -> str:
        """MLflow experiment: MLFLOW_EXPERIMENT_NAME, else the flow (and deployment) name."""
        return self.settings.mlflow_experiment or "/".join(filter(None, [self.flow_name, self.deployment]))


@dataclasses.dataclass(frozen=True)
class Published:
    """Where the outputs went and what happened to tracking."""

    outputs: dict[str, str]
    mlflow_run_id: str | None
    tracking_status: str
    warnings: list[str]


@dataclasses.dataclass(frozen=True)
class Monitoring:
    """What monitoring staged for the run, or why it could not (a warning, never the run's failure)."""

    summary: MonitorSummary
    warning: str | None = None
    enabled: bool = True

    def record(self) -> dict[str, Any]:
        """The manifest's and the run summary's ``monitoring`` entry."""
        if not self.enabled:
            return {"enabled": False}
        return {**self.summary.record(), **({"warning": self.warning} if self.warning else {})}


def start_run(source: FileSource | UrlSource | DuckDBSource, model: ModelParams, checks: SeriesChecks, *,
              horizon: int | None = None, freq: str | None, job: str | None, as_of: date | None,
              output_root: str | None, covariates: CovariateParams | None = None) -> RunContext:
    """Reads the settings, resolves the run's parameters once and creates its staging directory."""
    settings = load_settings()
    run = resolve_run(settings, source, run_id=str(flow_run.id or uuid.uuid4()), as_of=as_of or logical_date(),
                      model=model, checks=checks, freq=freq, horizon=horizon, job=job, output_root=output_root,
                      covariates=covariates)
    register_run(run.run_id, run.job, run.as_of.isoformat())  # the log file tags the run's lines from here on
    return RunContext(settings=settings, run=run, flow_name=str(flow_run.flow_name or "batch"),
                      deployment=deployment.name, staging=staging_dir(run.output_root, run.run_id),
                      source_uri=dataset_uri(source))


@contextlib.contextmanager
def staged(ctx: RunContext) -> Iterator[None]:
    """Wraps everything a run does between ``start_run`` and its publish: the staging directory is removed
    however the body ends, a full output filesystem fails with the fix instead of a bare OSError, and the log
    file's lines from libraries (no flow-run id of their own) are the run's.

    Nothing is published before the body's last step, so a failure here leaves earlier outputs as they were.
    """
    try:
        with bind_run(ctx.run.run_id, ctx.run.job, ctx.run.as_of.isoformat()):
            yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) and "No space left on device" not in str(exc):
            raise
        raise OutputSpaceError(
            f"The output filesystem of {ctx.run.output_root} is full ({shorten(str(exc), 300)}). Nothing was "
            "published and earlier outputs are intact. Fix: free space there, or set FORECAST_OUTPUT_ROOT (or "
            "output_root) to a larger volume, then run again; the health check's output_root entry reports the free "
            "space.") from exc
    finally:
        discard_staging(ctx.staging)


def prepare_load_validate(ctx: RunContext, source: FileSource | UrlSource | DuckDBSource, timer: StageTimer, *,
                          covariate_steps: tuple[int, int] | None = None,
                          ) -> tuple[ModelInfo, LoadResult, ValidationOutcome]:
    """The stages every batch flow starts with: load the model (a bad checkpoint fails before any data
    work), read the source into the canonical frame, validate it (``covariate_steps``: see
    :func:`tasks.validate.validate_series`)."""
    with timer("prepare_model"):
        info = prepare_model(ctx.run.engine)
    with timer("load"):
        loaded = load_series(source, ctx.settings.source_policy(), ctx.staging, ctx.run.covariates)
    with timer("validate"):
        validation = validate_series(loaded.path, ctx.staging, ctx.run, covariates_path=loaded.covariates_path,
                                     covariate_steps=covariate_steps)
    return info, loaded, validation


def monitor_run(ctx: RunContext, params: MonitorParams, timer: StageTimer, *, forecasts: Path, scales: list[Path],
                actuals: list[Path]) -> Monitoring:
    """Revisions since the job's previous run and realized accuracy of its earlier forecasts, staged beside the
    run's forecasts so that they are published with them. A failure is a warning: the forecasts go out anyway,
    without this run's monitoring tables (the next run scores what this one could not)."""
    if not params.enabled:
        return Monitoring(MonitorSummary(), enabled=False)
    inputs = MonitorInputs(output_root=ctx.run.output_root, job=ctx.run.job, as_of=ctx.run.as_of,
                           run_id=ctx.run.run_id, forecasts=forecasts, scales=[p for p in scales if p.is_file()],
                           actuals=[path for path in actuals if path.is_file()], staging=ctx.staging,
                           revision_threshold=params.revision_threshold, lookback_runs=params.lookback_runs,
                           max_seconds=params.max_seconds)
    with timer("monitor"):
        state = monitor_forecasts(inputs, key_prefix=artifact_key(ctx.flow_name, ctx.run.job), return_state=True)
    if state.is_completed():
        return Monitoring(state.result())
    for table in MONITOR_TABLES:
        (ctx.staging / f"{table}.parquet").unlink(missing_ok=True)
    warning = (f"Monitoring (revisions, realized accuracy) failed: {shorten(str(state.message), 500)}. The forecasts "
               "are published; this run's revisions and realized_accuracy partitions are not, and the next run "
               "scores what this one could not. Fix: see the log's traceback; monitor.enabled = false skips it.")
    get_run_logger().warning(warning)
    return Monitoring(MonitorSummary(), warning)


def logical_date() -> date:
    """The run's scheduled date (UTC): a scheduled run, and any retry of it, keeps the date it was
    scheduled for; an ad-hoc run is scheduled when it is created, i.e. today."""
    return scheduled_date(flow_run.scheduled_start_time)


def publish_run(ctx: RunContext, manifest: RunManifest, timer: StageTimer, *, tables: list[str],
                metrics: dict[str, float], artifacts: list[Path], tracking_required: bool,
                monitoring: Monitoring | None = None, optional: tuple[str, ...] = ()) -> Published:
    """Tracks the run in MLflow, then publishes its tables, its manifest (last) and refreshes the catalog.

    An unreachable tracking server does not stop the publish unless ``tracking_required``; the failure is
    recorded in the manifest, logged and returned as a warning, as are catalog problems (the outputs are
    published by then, and one job's catalog trouble must not fail another's run).

    ``timer`` times tracking, publish and catalog, and the manifest records them with ``total``: the
    manifest is published right after the tables, then once more (one rename of a one-row file) with the
    catalog's time, so a reader sees a whole manifest either way.

    ``monitoring``, when given, adds its staged tables, its metrics and its warning; its tables it did not
    stage are withdrawn from this ``as_of`` (a re-run replaces them, or leaves none), as are the ``optional``
    tables not in ``tables`` (``covariate_effects`` of a run that had covariates before a re-run without).
    """
    if monitoring is not None:
        tables = [*tables, *monitoring.summary.tables]
        metrics = {**metrics, **monitoring.summary.metrics()}
    with timer("tracking"):
        tracked, error = _track(ctx, manifest, metrics, artifacts, tracking_required)
    mlflow_run_id = tracked.run_id if tracked else None
    with timer("publish"):
        outputs = publish_outputs(ctx.staging, ctx.run.output_root, ctx.run.job, ctx.run.as_of.isoformat(),
                                  dict.fromkeys(tables, DATA_FILE))
        optional = (*optional, *(MONITOR_TABLES if monitoring is not None else ()))
        withdraw_partitions(ctx.run.output_root, ctx.run.job, ctx.run.as_of.isoformat(),
                            [table for table in optional if table not in tables])
    timer.record_total()
    manifest = manifest.model_copy(update={"mlflow_run_id": mlflow_run_id, "tracking_error": error,
                                           "tracking_status": "failed" if error else "ok",
                                           "timings": dict(timer.seconds)})
    outputs["runs"] = _publish_manifest(ctx, manifest)
    with timer("catalog"):
        warnings = [*([error] if error else []), *([monitoring.warning] if monitoring and monitoring.warning else []),
                    *refresh_catalog(ctx.run.output_root)]
    manifest = manifest.model_copy(update={"timings": dict(timer.seconds)})
    _publish_manifest(ctx, manifest)
    tracking_uri = ctx.settings.resolved_tracking_uri()
    url = mlflow_run_url(ctx.settings.mlflow_ui_url, tracking_uri, tracked.experiment_id,
                         tracked.run_id) if tracked else None
    published = Published({k: str(v) for k, v in outputs.items()}, mlflow_run_id, manifest.tracking_status, warnings)
    reported = report_run(run_summary(manifest, outputs=published.outputs, catalog=ctx.run.output_root / CATALOG_FILE,
                                      metrics=metrics, mlflow_url=url, tracking_uri=tracking_uri, warnings=warnings),
                          series_count_rows(manifest), url, key_prefix=artifact_key(ctx.flow_name, ctx.run.job),
                          return_state=True)
    if not reported.is_completed():  # published already: the artifacts only describe it
        get_run_logger().warning("The run's summary artifacts could not be created: %s", reported.message)
    return published


def _publish_manifest(ctx: RunContext, manifest: RunManifest) -> Path:
    """Stages the manifest and moves it over the run's ``runs`` partition file."""
    write_manifest(manifest, ctx.staging)
    return publish_tables(ctx.staging, ctx.run.output_root, ctx.run.job, ctx.run.as_of.isoformat(),
                          {"runs": f"{ctx.flow_name}.parquet"})["runs"]


def forecast_metrics(counts: SeriesCounts, output_rows: int, **figures: float) -> dict[str, float]:
    """A forecast run's MLflow metrics: its counts under their published names, its rows, and ``figures``."""
    return {**counts.published_fields(), "forecast_rows": output_rows, **figures}


def outcome(manifest: RunManifest, published: Published) -> dict[str, Any]:
    """The fields every run summary shares, as they were published."""
    return {"run_id": manifest.run_id, "job": manifest.job, "as_of": manifest.as_of,
            "checkpoint_sha256": manifest.checkpoint_sha256, "input_fingerprint": manifest.input_fingerprint,
            "series_in": manifest.series_in, "series_ok": manifest.series_ok,
            "series_rejected": manifest.series_rejected, "series_failed": manifest.series_failed,
            "outputs": published.outputs,
            "mlflow_run_id": published.mlflow_run_id, "tracking_status": published.tracking_status,
            "warnings": published.warnings}


def _track(ctx: RunContext, manifest: RunManifest, metrics: dict[str, float], artifacts: list[Path],
           required: bool) -> tuple[TrackedRun | None, str | None]:
    params = {k: str(v) for k, v in _flatten(manifest.parameters).items()}
    params.update(checkpoint_sha256=manifest.checkpoint_sha256, input_fingerprint=manifest.input_fingerprint)
    dataset = InputDataset(uri=ctx.source_uri, name=ctx.run.job,
                           fingerprint=manifest.input_fingerprint) if ctx.source_uri else None
    state = track_run(
        ctx.settings.resolved_tracking_uri(), ctx.experiment, ctx.settings.artifact_root(),
        run_name=run_name(ctx.run.job, manifest.as_of), params=params, metrics=metrics, tags=_tags(ctx, manifest),
        artifacts=artifacts, manifest=manifest.model_dump(mode="json"), dataset=dataset, return_state=True,
    )
    if state.is_completed():
        return state.result(), None
    error = f"MLflow tracking at {redact_url(ctx.settings.resolved_tracking_uri())} failed: {state.message}"
    if required:
        raise TrackingError(error + " (tracking_required is set, so nothing is published)")
    get_run_logger().warning("%s; publishing without tracking", error)
    return None, error


def _tags(ctx: RunContext, manifest: RunManifest) -> dict[str, str]:
    """The MLflow run's tags: the Prefect flow run (and its page, when a Prefect UI is known), job, day, flow."""
    tags = {"prefect.flow_run_id": ctx.run.run_id, "job": ctx.run.job, "as_of": manifest.as_of,
            "flow": ctx.flow_name}
    if ctx.deployment:
        tags["deployment"] = ctx.deployment
    if PREFECT_UI_URL.value() and flow_run.ui_url:
        tags["prefect.flow_run_url"] = str(flow_run.ui_url)
    return tags


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
