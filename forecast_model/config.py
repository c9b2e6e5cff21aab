"""Model hyperparameters and checkpoint location, kept apart as in ``timesfm_base``."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from forecast_model.errors import CheckpointError, shorten

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


# Upper bounds keep a hostile config.json from making the loader allocate a model of any size before the
# weights are even read; the 2.0-500m values are far below them.
_LIMITS = {"num_layers": 512, "model_dims": 32768, "num_heads": 1024, "context_len": 65536,
           "input_patch_len": 4096, "output_patch_len": 4096}


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
        problems = _problems(dataclasses.asdict(self))
        if problems:
            raise CheckpointError("Invalid TimesFM hyperparameters: " + "; ".join(problems) + ".")

    @classmethod
    def from_json(cls, path: Path) -> ModelHparams:
        """Reads hyperparameters from a checkpoint's ``config.json``; absent keys keep the 2.0-500m values.

        Every problem is reported at once, naming the file and the key, before any model is built.
        """
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # ValueError: bad UTF-8 or JSON, or an integer of 4,300+ digits
            raise CheckpointError(f"Cannot read checkpoint config {path}: {shorten(str(exc))}. Fix or remove the "
                                  "file.") from exc
        if not isinstance(raw, dict):
            raise CheckpointError(f"Checkpoint config {path} must hold a JSON object.")
        values = _known_values(raw, path)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        problems = _type_problems(values) or _problems({**defaults, **values})
        if problems:
            raise CheckpointError(f"Checkpoint config {path}: " + "; ".join(problems) + ". Fix: correct these "
                                  "keys (a key left out takes the TimesFM-2.0-500m value).")
        return cls(**values)

    def to_json(self) -> str:
        """The hyperparameters as the ``config.json`` this library reads."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def _problems(values: dict[str, Any]) -> list[str]:
    """What is wrong with a set of hyperparameters, one entry per key, each saying what it must be."""
    problems = [f"{name}={values[name]!r} must be a whole number from 1 to {limit:,}"
                for name, limit in _LIMITS.items() if not 0 < values[name] <= limit]
    if problems:  # the divisibility checks below would divide by zero or mean nothing
        return problems
    heads, patch = values["num_heads"], values["input_patch_len"]
    if heads % 16:
        problems.append(f"num_heads={heads} must be a multiple of 16 (the timesfm decoder builds 16 key/value heads)")
    if values["model_dims"] % heads:
        problems.append(f"model_dims={values['model_dims']} must be a multiple of num_heads={heads}")
    for name in ("context_len", "output_patch_len"):
        if values[name] % patch:
            problems.append(f"{name}={values[name]} must be a multiple of input_patch_len={patch}")
    return problems


def _known_values(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """The architecture keys of a config.json under our field names; unknown keys are logged and ignored."""
    fields = {f.name for f in dataclasses.fields(ModelHparams)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = _ALIASES.get(key, key)
        if name in fields:
            values[name] = value
        elif key not in _IGNORED:
            logger.warning("Ignoring unknown key %s in %s", shorten(key), path)
    return values


def _type_problems(values: dict[str, Any]) -> list[str]:
    problems = []
    for name, value in values.items():
        expected = bool if name == "use_positional_embedding" else int
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            problems.append(f"{name} must be {'true or false' if expected is bool else 'a whole number'}, "
                            f"got {shorten(value)}")
    return problems
