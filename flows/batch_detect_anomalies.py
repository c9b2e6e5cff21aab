"""The anomaly-detection flow: the forecast flow's sources and validation, then each series' latest points
scored against the forecast made from the history before them."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from prefect import flow
from pydantic import Field

from flows.common import outcome, prepare_load_validate, publish_run, staged, start_run
from pipeline.anomaly import DEFAULT_THRESHOLD
from pipeline.contracts import MAX_HORIZON
from pipeline.detection import DetectionSpec
from pipeline.manifest import StageTimer, build_manifest
from pipeline.params import AnomalySummary, FreqAlias, JobName, ModelParams, OutputRoot
from pipeline.report import plot_title
from pipeline.run import run_parameters
from pipeline.series_checks import SeriesChecks
from pipeline.sources import Source
from tasks.detect import detect_anomalies, render_anomalies

__all__ = ["batch_detect_anomalies"]


@flow(name="batch-detect-anomalies")
def batch_detect_anomalies(
    source: Source,
    window: Annotated[int, Field(gt=0, le=MAX_HORIZON)] | None = None,
    since: date | None = None,
    scoring: Literal["block", "rolling"] = "block",
    stride: Annotated[int, Field(gt=0, le=MAX_HORIZON)] = 1,
    threshold: Annotated[float, Field(gt=0, lt=1)] = DEFAULT_THRESHOLD,
    model: ModelParams = ModelParams(),  # noqa: B008 - frozen, so one shared default is safe
    checks: SeriesChecks = SeriesChecks(),  # noqa: B008
    freq: FreqAlias | None = None,
    job: JobName | None = None,
    as_of: date | None = None,
    output_root: OutputRoot | None = None,
    tracking_required: bool = False,
) -> AnomalySummary:
    """Flag the observations a TimesFM-2.0 forecast did not expect: each series' last `window` points (or
    those on or after `since`) against the forecast from the history before them.

    Every scored point gets the forecast's median, the bounds of its central `threshold` interval and an
    anomaly probability; it is an anomaly when that probability reaches `threshold`. Missing observations
    are not scored. Results go to `<output_root>/anomalies/job=<job>/as_of=<as_of>/` (series that cannot
    be scored, with the reason, to `anomaly_status`), MLflow and a Prefect table artifact of the top
    anomalies; a re-run for the same job and as_of replaces that partition.

    Args:
        source: Where the series come from, as for batch-forecast.
        window: Points scored per series (default: one season of its frequency; 7 when it has none).
        since: Score the points on or after this date instead of a window.
        scoring: block (one forecast of the whole window) or rolling (`stride` points per forecast).
        stride: Points per forecast when rolling.
        threshold: Anomaly probability from which a point is an anomaly (0.95: outside the central 95%).
        model: Checkpoint, device, context length and batch size.
        checks: Which series are fit to score, and how many may be left out.
        freq: Pandas frequency alias of the series; inferred per series if empty.
        job: Name of the job; partitions outputs (default: derived from the source's name).
        as_of: Logical date of the run (default: today, UTC).
        output_root: Output directory (default: FORECAST_OUTPUT_ROOT or data/outputs).
        tracking_required: Fail, publishing nothing, when the run cannot be recorded in MLflow.
    """
    spec = DetectionSpec(window=window, since=since, scoring=scoring, stride=stride, threshold=threshold)
    ctx = start_run(source, model, checks, freq=freq, job=job, as_of=as_of, output_root=output_root)
    timer = StageTimer()
    with staged(ctx):
        info, loaded, validation = prepare_load_validate(ctx, source, timer)
        with timer("detect"):
            stats = detect_anomalies(validation.regular_path, validation.status_path, ctx.staging, ctx.run, spec)
        plot = render_anomalies(validation.regular_path, stats.anomalies_path, ctx.staging,
                                title=plot_title(ctx.run.job, ctx.run.as_of.isoformat(), ctx.run.engine.checkpoint,
                                                 info.checkpoint_sha256))
        manifest = build_manifest(ctx.run, flow_name=ctx.flow_name, deployment=ctx.deployment,
                                  source=source.describe(), input_fingerprint=loaded.fingerprint, counts=stats.counts,
                                  output_rows=stats.points_scored, model=info, timings=timer.seconds,
                                  parameters=run_parameters(ctx.run, source, **spec.model_dump(mode="json"),
                                                            horizon=stats.horizon))
        published = publish_run(ctx, manifest, timer, tables=["anomalies", "anomaly_status"],
                                metrics={**stats.counts.published_fields(), **stats.metrics(spec.threshold)},
                                artifacts=[plot, stats.status_path, validation.report_path, validation.summary_path],
                                tracking_required=tracking_required)
    return AnomalySummary(**outcome(manifest, published), points_scored=stats.points_scored,
                          points_missing=stats.points_missing, anomalies=stats.anomalies)
