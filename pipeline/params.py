"""Typed flow parameters (they become the Prefect UI form) and the run summary a flow returns."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from forecast_model import DeviceName, EngineConfig
from forecast_model.errors import shorten
from pipeline.contracts import ContextLength
from pipeline.frequency import check_freq
from pipeline.settings import Settings
from pipeline.sources import DuckDBSource, FileSource, UrlSource
from pipeline.sources.files import is_glob

__all__ = [
    "AnomalySummary",
    "BacktestSummary",
    "FreqAlias",
    "JobName",
    "ModelParams",
    "MonitorParams",
    "OutputRoot",
    "RunSummary",
    "ShardedRunSummary",
    "Sharding",
    "default_job_name",
    "engine_config",
    "validate_job_name",
]

_JOB_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_JOB_NAME = re.compile(_JOB_PATTERN)


def validate_job_name(job: str) -> str:
    """Job names become directory names: letters, digits, '_', '.', '-', starting with a letter or digit."""
    if not _JOB_NAME.fullmatch(job):  # match() would let a trailing newline through ($)
        raise ValueError(f"Invalid job name {shorten(job, 80)}: use 1-64 letters, digits, '_', '.', '-', "
                         "starting with a letter or digit.")
    return job


def _output_root_given(value: str) -> str:
    if not value.strip():
        raise ValueError("output_root is empty. Fix: leave it out to use FORECAST_OUTPUT_ROOT (or data/outputs), "
                         "or give a directory.")
    return value


# The JSON schemas keep the pattern for the Prefect UI form and for a server that enforces parameter schemas;
# the validators give the message.
JobName = Annotated[str, AfterValidator(validate_job_name),
                    WithJsonSchema({"type": "string", "pattern": _JOB_PATTERN, "maxLength": 64})]
FreqAlias = Annotated[str, AfterValidator(check_freq), WithJsonSchema({"type": "string", "minLength": 1})]
OutputRoot = Annotated[str, AfterValidator(_output_root_given), WithJsonSchema({"type": "string", "minLength": 1})]


class ModelParams(BaseModel):
    """Which checkpoint to run, where, and how much history it sees; empty fields take the env defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checkpoint: str | None = Field(None, description="Hugging Face repo id or local checkpoint path "
                                                     "(default: TIMESFM20_DEFAULT_CHECKPOINT).")
    device: DeviceName | None = Field(None, description="auto, cpu or gpu (default: TIMESFM20_DEFAULT_BACKEND).")
    context_len: ContextLength | None = Field(None,
                                              description="Most recent points given to the model "
                                                          "(default: TIMESFM20_DEFAULT_CONTEXT_LEN; capped by the "
                                                          "model).")
    batch_size: int | None = Field(None, gt=0, le=4096, description="Series per inference batch.")
    precision: Literal["auto", "fp32", "tf32", "bf16"] = Field(
        "auto", description="auto: exact fp32 on CPU, tf32 on GPU (within 1e-3 of fp32 as measured).")
    expected_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$",
                                        description="Pin: fail before inference unless the weights file has "
                                                    "this SHA-256.")


class Sharding(BaseModel):
    """How a sharded run splits the job and where its shards run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    series_per_shard: int = Field(20000, gt=0, le=5_000_000,
                                  description="Target series per shard: peak memory of a shard run follows it.")
    shards: int | None = Field(None, gt=0, le=100_000,
                               description="Fixed number of shards (keeps every series in the same shard from run "
                                           "to run); empty: series / series_per_shard, rounded up.")
    deployment: str | None = Field(None, pattern=r"^[^/]+/[^/]+$",
                                   description="Shard deployment to fan out to: 'forecast-shard/shard' (CPU "
                                               "workers) or 'forecast-shard/shard-gpu' (GPU workers, one shard "
                                               "per GPU at a time); its workers must share the output root. "
                                               "Empty: shards run one after another in this run's process.")
    local_concurrency: int = Field(1, ge=1, le=8, description="Without a deployment: shards run at once in this "
                                                              "process (2 keeps two cores busy; peak memory "
                                                              "grows by a shard's share each).")
    max_attempts: int = Field(3, ge=1, le=10, description="Tries per shard before the run fails (crashed or "
                                                          "failed shard runs are retried; bad data is not).")
    poll_seconds: float = Field(2.0, gt=0, le=60, description="How often the parent checks its shard runs.")


class MonitorParams(BaseModel):
    """What a forecast run measures about its job's published forecasts: revisions and realized accuracy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Compare with the job's previous run and score its earlier forecasts "
                                            "(tables revisions and realized_accuracy); never fails the run.")
    revision_threshold: float = Field(0.5, gt=0, le=1000,
                                      description="A series is revised when its mean absolute change since the "
                                                  "previous run, in units of its scale (the MASE scale), exceeds "
                                                  "this.")
    lookback_runs: int = Field(60, ge=1, le=1000,
                               description="Earlier forecast runs of the job (latest as_of first) whose forecasts "
                                           "are scored against this run's actuals.")
    max_seconds: float = Field(600.0, gt=0, le=86_400,
                               description="Stop monitoring (a warning; the forecasts are published) when it takes "
                                           "longer than this.")


def engine_config(model: ModelParams, settings: Settings) -> EngineConfig:
    """The engine a run uses: its model parameters, empty ones filled from the settings."""
    return EngineConfig(checkpoint=model.checkpoint or settings.checkpoint, device=model.device or settings.backend,
                        device_index=settings.device_index,
                        batch_size=model.batch_size or settings.batch_size, expected_sha256=model.expected_sha256,
                        precision=model.precision)


def default_job_name(source: FileSource | UrlSource | DuckDBSource) -> str:
    """A job name derived from the source (file name, URL file name, table or database name)."""
    if isinstance(source, FileSource):
        path = Path(source.path)
        name = path.parent.name if is_glob(path.name) else path.stem
    elif isinstance(source, UrlSource):
        name = source.name_hint()
    else:
        name = source.table or Path(source.database).stem
    name = re.sub(r"^[^A-Za-z0-9]+", "", re.sub(r"[^A-Za-z0-9_.-]+", "-", name))  # a name starts alphanumeric
    return name[:64].rstrip("-.") or "job"


class _RunOutcome(BaseModel):
    """What every batch run reports: identity, counts, provenance, outputs and MLflow run."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    job: str
    as_of: date
    series_in: int
    series_ok: int
    series_rejected: int
    series_failed: int
    checkpoint_sha256: str
    input_fingerprint: str
    outputs: dict[str, str]
    mlflow_run_id: str | None
    tracking_status: str
    warnings: list[str] = Field(default_factory=list,
                                description="What went wrong after the outputs were published (tracking, catalog, "
                                            "monitoring).")

    @field_validator("job")
    @classmethod
    def _job(cls, value: str) -> str:
        return validate_job_name(value)


class RunSummary(_RunOutcome):
    """What a batch forecast run produced."""

    forecast_rows: int  # the runs table's output_rows, named for the table it counts (a stable result field)
    inference_seconds: float
    series_per_second: float
    device: str
    precision: str
    batch_size: int
    checkpoint: str
    monitoring: dict[str, Any] = Field(default_factory=dict)  # revisions and realized accuracy of the run


class BacktestSummary(_RunOutcome):
    """What a backtest run produced, with overall metrics per model."""

    evaluation_rows: int
    share_beating_seasonal_naive: float
    overall: dict[str, dict[str, float]]


class AnomalySummary(_RunOutcome):
    """What an anomaly-detection run produced."""

    points_scored: int
    points_missing: int
    anomalies: int


class ShardedRunSummary(RunSummary):
    """What a sharded forecast run produced, and which workers ran its shards."""

    shards: int
    shard_workers: dict[str, int]
