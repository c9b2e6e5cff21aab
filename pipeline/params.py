"""Typed flow parameters (they become the Prefect UI form) and the run summary a flow returns."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from forecast_model import DeviceName, EngineConfig, XRegMode
from forecast_model.errors import ConfigurationError, shorten, shorten_names
from pipeline.calendar import parse_calendar
from pipeline.contracts import ContextLength
from pipeline.frequency import check_freq
from pipeline.settings import Settings
from pipeline.sources import DuckDBSource, FileSource, Source, UrlSource
from pipeline.sources.files import is_glob

__all__ = [
    "AnomalySummary",
    "BacktestSummary",
    "CovariateParams",
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


CovariateName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]
CovariateKind = Literal["numerical", "categorical"]


class CovariateParams(BaseModel):
    """Covariates the forecast regresses on (TimesFM's in-context regression, one per series): input columns
    and calendar features generated from the timestamps. All empty (the default): a plain forecast.

    Dynamic covariates need a value for every context step and every horizon step: future values come as
    rows after each series' last observation with an empty target, or from `future_source`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dynamic_numerical: tuple[CovariateName, ...] = Field(
        (), description="Numeric input columns known for the context and the horizon (price, temperature forecast).")
    dynamic_categorical: tuple[CovariateName, ...] = Field(
        (), description="Categorical input columns known for the context and the horizon (promotion, event).")
    static_numerical: tuple[CovariateName, ...] = Field(
        (), description="Numeric input columns constant within each series (store size).")
    static_categorical: tuple[CovariateName, ...] = Field(
        (), description="Categorical input columns constant within each series (region).")
    calendar: tuple[str, ...] = Field(
        (), description="Calendar features generated from ds, no data needed: day_of_week, day_of_month, "
                        "day_of_year, week_of_year, month, quarter, hour, holiday:<CC> or holiday:<CC>/<SUB> "
                        "(e.g. holiday:US); each is categorical.")
    xreg_mode: XRegMode = Field("xreg + timesfm", description="'xreg + timesfm': regress the history on the "
                                                               "covariates, TimesFM forecasts what they leave; "
                                                               "'timesfm + xreg': TimesFM first, the regression "
                                                               "explains what it misses.")
    ridge: float = Field(0.0, ge=0, le=1e6, description="Ridge penalty of the regression (0: least squares).")
    normalize: bool = Field(True, description="Standardise each series before its regression.")
    future_source: Source | None = Field(None, description="Where future covariate values come from instead of "
                                                           "rows in the input: unique_id, ds and the dynamic "
                                                           "covariate columns, no target values.")
    effects: bool = Field(True, description="Publish the regression coefficients per series (table "
                                            "covariate_effects).")

    @field_validator("calendar")
    @classmethod
    def _calendar(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(feature.name for feature in parse_calendar(list(value)))

    @model_validator(mode="after")
    def _consistent(self) -> CovariateParams:
        """Refuses a name used twice and a future source without dynamic columns to give."""
        names = [*self.dynamic(), *self.static(), *self.calendar]
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            raise ConfigurationError(f"Covariates {shorten_names(repeated)} are named more than once (covariate "
                                     "names are unique across kinds and the calendar); name each once.")
        dynamic = self.dynamic_numerical or self.dynamic_categorical
        if self.future_source is not None and not dynamic:
            raise ConfigurationError("covariates.future_source gives future values of dynamic covariates, but none "
                                     "is named. Fix: name its columns in covariates.dynamic_numerical or "
                                     "dynamic_categorical, or leave future_source empty.")
        return self

    @property
    def enabled(self) -> bool:
        """Whether the forecast uses any covariate."""
        return bool(self.columns() or self.calendar)

    def columns(self) -> dict[str, CovariateKind]:
        """The input columns the covariates read, each with how it is parsed."""
        kinds: dict[str, CovariateKind] = {}
        for name in (*self.dynamic_numerical, *self.static_numerical):
            kinds.setdefault(name, "numerical")
        for name in (*self.dynamic_categorical, *self.static_categorical):
            kinds.setdefault(name, "categorical")
        return kinds

    def dynamic(self) -> tuple[str, ...]:
        """The dynamic input columns: each needs a value at every context and horizon step."""
        return (*self.dynamic_numerical, *self.dynamic_categorical)

    def static(self) -> tuple[str, ...]:
        """The static input columns: one value per series."""
        return (*self.static_numerical, *self.static_categorical)

    def regression(self) -> dict[str, Any]:
        """How the regression runs: the keyword arguments of ``forecast_model.forecast_with_covariates``."""
        return {"xreg_mode": self.xreg_mode, "normalize": self.normalize, "ridge": self.ridge}

    def describe(self) -> dict[str, Any] | None:
        """The manifest's ``covariates`` entry (None without covariates)."""
        if not self.enabled:
            return None
        record = self.model_dump(mode="json", exclude={"future_source"})
        record["future_source"] = self.future_source.describe() if self.future_source else None
        return record


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
    share_covariates_beating_plain: float | None = None  # with covariates: series where they lower TimesFM's MASE


class AnomalySummary(_RunOutcome):
    """What an anomaly-detection run produced."""

    points_scored: int
    points_missing: int
    anomalies: int


class ShardedRunSummary(RunSummary):
    """What a sharded forecast run produced, and which workers ran its shards."""

    shards: int
    shard_workers: dict[str, int]
