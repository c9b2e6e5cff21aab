"""Settings from the environment (and an optional ``.env``), read when a run starts, never at import.

Variable names keep those of the FastAPI service this project replaces where they still mean the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from forecast_model import DEFAULT_CHECKPOINT

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Defaults for every run; flow parameters override them per run."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True, populate_by_name=True)

    checkpoint: str = Field(DEFAULT_CHECKPOINT, validation_alias="TIMESFM20_DEFAULT_CHECKPOINT",
                            description="Hugging Face repo id or local checkpoint path.")
    backend: Literal["auto", "cpu", "gpu"] = Field("auto", validation_alias="TIMESFM20_DEFAULT_BACKEND")
    context_len: int = Field(2048, gt=0, validation_alias="TIMESFM20_DEFAULT_CONTEXT_LEN")
    horizon_len: int = Field(128, gt=0, validation_alias="TIMESFM20_DEFAULT_HORIZON_LEN")
    batch_size: int = Field(32, gt=0, validation_alias="TIMESFM20_DEFAULT_BATCH_SIZE")
    data_dir: Path = Field(Path("data"), validation_alias="FORECAST_DATA_DIR")
    output_root: Path | None = Field(None, validation_alias="FORECAST_OUTPUT_ROOT")
    mlflow_tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    mlflow_experiment: str = Field("batch-forecast", validation_alias="MLFLOW_EXPERIMENT_NAME")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")

    def resolved_output_root(self) -> Path:
        """``FORECAST_OUTPUT_ROOT``, else ``<data_dir>/outputs``."""
        return (self.output_root or self.data_dir / "outputs").resolve()

    def resolved_tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI``, else a SQLite store under the data directory (MLflow 3's default kind)."""
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    def artifact_root(self) -> Path:
        """Where runs of a local tracking store keep their artifacts."""
        return (self.data_dir / "mlartifacts").resolve()


def load_settings() -> Settings:
    """Reads the environment now; call it when a run starts."""
    return Settings()
