"""Settings from the environment (and an optional ``.env``), read when a run starts, never at import.

Variable names keep those of the FastAPI service this project replaces where they still mean the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from forecast_model import DEFAULT_CHECKPOINT
from pipeline.contracts import ContextLength, Horizon
from pipeline.sources.policy import SourcePolicy

__all__ = ["Settings", "load_settings", "variable_names"]


class Settings(BaseSettings):
    """Defaults for every run; flow parameters override them per run."""

    # An empty variable (FORECAST_OUTPUT_ROOT=) means "not set", not "the current directory".
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True, populate_by_name=True,
                                      env_ignore_empty=True)

    checkpoint: str = Field(DEFAULT_CHECKPOINT, validation_alias="TIMESFM20_DEFAULT_CHECKPOINT",
                            description="Hugging Face repo id or local checkpoint path.")
    backend: Literal["auto", "cpu", "gpu"] = Field("auto", validation_alias="TIMESFM20_DEFAULT_BACKEND")
    device_index: int | None = Field(None, ge=0, validation_alias="FORECAST_DEVICE_INDEX",
                                     description="The GPU this worker's CUDA runs use (a worker per GPU); "
                                                 "empty: GPU 0. `forecast worker --device-index N` sets it.")
    context_len: ContextLength = Field(2048, validation_alias="TIMESFM20_DEFAULT_CONTEXT_LEN")
    horizon_len: Horizon = Field(128, validation_alias="TIMESFM20_DEFAULT_HORIZON_LEN")
    batch_size: int | None = Field(None, gt=0, validation_alias="TIMESFM20_DEFAULT_BATCH_SIZE",
                                   description="Empty: 256 on CPU, sized from free memory on GPU.")
    overlap: bool = Field(True, validation_alias="FORECAST_OVERLAP",
                          description="Read the next series and write the last forecasts while the engine runs "
                                      "(0: one after the other, the same tables; for debugging).")
    cpu_threads: int | None = Field(None, ge=1, validation_alias="FORECAST_CPU_THREADS",
                                    description="torch threads of a CPU engine (empty: one less than torch's count, "
                                                "which OMP_NUM_THREADS sets or else the cores; at least 1).")
    data_dir: Path = Field(Path("data"), validation_alias="FORECAST_DATA_DIR")
    output_root: Path | None = Field(None, validation_alias="FORECAST_OUTPUT_ROOT")
    mlflow_tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    mlflow_ui_url: str | None = Field(None, validation_alias="MLFLOW_UI_URL",
                                      description="Base address of the MLflow UI for run links (default: the "
                                                  "tracking URI when it is an http(s) server).")
    mlflow_experiment: str | None = Field(None, validation_alias="MLFLOW_EXPERIMENT_NAME",
                                          description="Default: the flow name, plus '/<deployment>' if deployed.")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    log_file: Path | None = Field(None, validation_alias=AliasChoices("FORECAST_LOG_FILE", "LOG_FILE"),
                                  description="The log file every process writes: CLI, server, workers, their "
                                              "runs (default: <data dir>/logs/forecast.log).")
    log_max_bytes: int = Field(10 * 2**20, ge=4096, validation_alias="FORECAST_LOG_MAX_BYTES",
                               description="Size at which the log file is rotated.")
    log_backup_count: int = Field(5, ge=1, le=100, validation_alias="FORECAST_LOG_BACKUP_COUNT",
                                  description="Rotated log files kept (forecast.log.1 is the newest).")
    log_format: Literal["plain", "json"] = Field("plain", validation_alias="LOG_FORMAT",
                                                 description="json: one JSON object a line, for log shippers.")
    data_roots: str | None = Field(None, validation_alias="FORECAST_DATA_ROOTS",
                                   description="Directories sources may read, separated by ':' (default: cwd).")
    url_allowlist: str = Field("", validation_alias="FORECAST_URL_ALLOWLIST",
                               description="Comma-separated hosts or networks URL sources may reach even though "
                                           "they are not public (e.g. 127.0.0.1/32,minio.internal).")
    url_connect_timeout: float = Field(10.0, gt=0, validation_alias="FORECAST_URL_CONNECT_TIMEOUT")
    url_read_timeout: float = Field(60.0, gt=0, validation_alias="FORECAST_URL_READ_TIMEOUT")
    url_total_timeout: float = Field(300.0, gt=0, validation_alias="FORECAST_URL_TOTAL_TIMEOUT",
                                     description="Seconds a whole download may take, redirects included.")
    url_max_bytes: int = Field(512 * 1024 * 1024, gt=0, validation_alias="FORECAST_URL_MAX_BYTES")
    duckdb_timeout: float = Field(600.0, gt=0, validation_alias="FORECAST_DUCKDB_TIMEOUT",
                                  description="Seconds a DuckDB source query may run before it is interrupted.")

    def resolved_output_root(self) -> Path:
        """``FORECAST_OUTPUT_ROOT``, else ``<data_dir>/outputs``."""
        return (self.output_root or self.data_dir / "outputs").resolve()

    def resolved_log_file(self) -> Path:
        """``FORECAST_LOG_FILE`` (or ``LOG_FILE``), else ``<data_dir>/logs/forecast.log``."""
        return (self.log_file or self.data_dir / "logs" / "forecast.log").resolve()

    def resolved_tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI``, else a SQLite store under the data directory (MLflow 3's default kind)."""
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    def source_policy(self) -> SourcePolicy:
        """Which files, hosts and sizes sources may use."""
        roots = [Path(p) for p in (self.data_roots or "").split(os.pathsep) if p] or [Path.cwd()]
        return SourcePolicy(
            data_roots=tuple(roots),
            url_allowlist=tuple(e.strip() for e in self.url_allowlist.split(",") if e.strip()),
            connect_timeout=self.url_connect_timeout, read_timeout=self.url_read_timeout,
            total_timeout=self.url_total_timeout, max_download_bytes=self.url_max_bytes,
            query_timeout=self.duckdb_timeout,
        )

    def artifact_root(self) -> Path | None:
        """Where new experiments of a database or file tracking store keep artifacts: ``<data dir>/mlartifacts``
        (MLflow's own default is ``./mlruns`` under whatever the working directory is). ``None`` for a
        tracking server, which decides itself."""
        if self.resolved_tracking_uri().startswith(("http://", "https://", "databricks")):
            return None
        return (self.data_dir / "mlartifacts").resolve()


def load_settings() -> Settings:
    """Reads the environment now; call it when a run starts."""
    return Settings()


def variable_names() -> list[str]:
    """Every environment variable the settings read, aliases included (for the docs and their tests)."""
    names: list[str] = []
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names += [str(a) for a in alias.choices] if isinstance(alias, AliasChoices) else [str(alias)]
    return sorted(names)
