"""Model hyperparameters and checkpoint location, kept apart as in ``timesfm_base``."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from forecast_model.errors import CheckpointError

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_QUANTILES",
    "ModelHparams",
]

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "google/timesfm-2.0-500m-pytorch"
DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

# Keys some published config.json files carry (Hugging Face style) that name our fields differently.
_ALIASES = {"hidden_size": "model_dims", "patch_len": "input_patch_len", "horizon_len": "output_patch_len"}
# Metadata keys that say nothing about the architecture the `timesfm` decoder builds.
_IGNORED = {"architectures", "model_type", "torch_dtype", "transformers_version", "head_dim",
            "intermediate_size", "num_kv_heads", "quantiles"}


@dataclasses.dataclass(frozen=True)
class ModelHparams:
    """Architecture of a TimesFM checkpoint; the defaults are those of TimesFM-2.0-500m.

    ``num_heads`` must be a multiple of 16: the ``timesfm`` decoder always builds 16 key/value heads.
    """

    num_layers: int = 50
    model_dims: int = 1280
    num_heads: int = 16
    context_len: int = 2048
    input_patch_len: int = 32
    output_patch_len: int = 128
    use_positional_embedding: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.num_heads <= 0 or self.num_heads % 16:
            problems.append(f"num_heads={self.num_heads} must be a positive multiple of 16")
        if self.model_dims <= 0 or self.model_dims % self.num_heads:
            problems.append(f"model_dims={self.model_dims} must be a positive multiple of num_heads")
        if self.context_len <= 0 or self.context_len % self.input_patch_len:
            problems.append(
                f"context_len={self.context_len} must be a positive multiple of input_patch_len="
                f"{self.input_patch_len}"
            )
        if self.output_patch_len % self.input_patch_len:
            problems.append("output_patch_len must be a multiple of input_patch_len")
        if problems:
            raise CheckpointError("Invalid TimesFM hyperparameters: " + "; ".join(problems) + ".")

    @classmethod
    def from_json(cls, path: Path) -> ModelHparams:
        """Reads hyperparameters from a checkpoint's ``config.json``; absent keys keep the 2.0-500m values."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"Cannot read checkpoint config {path}: {exc}. Fix or remove the file.") from exc
        if not isinstance(raw, dict):
            raise CheckpointError(f"Checkpoint config {path} must hold a JSON object.")
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            name = _ALIASES.get(key, key)
            if name in fields:
                values[name] = value
            elif key not in _IGNORED:
                logger.warning("Ignoring unknown key %r in %s", key, path)
        for name, value in values.items():
            expected = bool if name == "use_positional_embedding" else int
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise CheckpointError(
                    f"Checkpoint config {path}: {name!r} must be {expected.__name__}, got {value!r}."
                )
        return cls(**values)

    def to_json(self) -> str:
        """The hyperparameters as the ``config.json`` this library reads."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)
