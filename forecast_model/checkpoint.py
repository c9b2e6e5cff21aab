"""Where a checkpoint lives (Hugging Face repo id or local path) and how its weights are loaded."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import pickle
import re
from pathlib import Path

import torch

from forecast_model._timesfm import decoder_module
from forecast_model.config import DEFAULT_CHECKPOINT, ModelHparams
from forecast_model.errors import CheckpointError, path_kind, shorten

__all__ = [
    "CKPT_FILENAME",
    "CONFIG_FILENAME",
    "RANDOM_WEIGHTS_MARKER",
    "ResolvedCheckpoint",
    "build_decoder",
    "load_decoder",
    "make_tiny_checkpoint",
    "resolve_checkpoint",
    "sha256_file",
    "verify_sha256",
]

logger = logging.getLogger(__name__)

CKPT_FILENAME = "torch_model.ckpt"
CONFIG_FILENAME = "config.json"
# Written next to the weights by make_tiny_checkpoint, so that every run on such weights can say so.
RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS.txt"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_OFFLINE_FIX = (
    "Fix: point TIMESFM20_DEFAULT_CHECKPOINT (or --checkpoint) at a local directory holding "
    f"{CKPT_FILENAME}, or download it once on a connected machine with "
    "`hf download {repo}` (the Hugging Face CLI) and copy the Hugging Face cache (HF_HOME) here. "
    "For an offline smoke run with meaningless random weights: "
    "`.venv/bin/forecast make-tiny-checkpoint data/tiny-checkpoint` (`forecast` where the package is on PATH, "
    "as in the image) then `--checkpoint data/tiny-checkpoint`."
)


@dataclasses.dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint found on disk: the weights file, its hyperparameters and where it came from."""

    source: str
    weights: Path
    hparams: ModelHparams

    @property
    def random_weights(self) -> bool:
        """Whether these are seeded random weights (:func:`make_tiny_checkpoint`): forecasts mean nothing."""
        return (self.weights.parent / RANDOM_WEIGHTS_MARKER).is_file()


def resolve_checkpoint(source: str = DEFAULT_CHECKPOINT) -> ResolvedCheckpoint:
    """Finds the weights of ``source``: a local file or directory, else a Hugging Face repo id.

    Raises:
        CheckpointError: the path does not exist, or the repo is neither cached nor downloadable.
    """
    path = Path(source).expanduser()
    if path.exists():
        return _resolve_local(source, path)
    # A name under an existing local directory (data/does-not-exist) is a mistyped path, not a repo id: it must
    # fail here, not after a network round trip to the hub.
    looks_local = path.parent != Path(".") and path.parent.is_dir()
    if source.startswith((".", "/", "~")) or source.endswith(".ckpt") or looks_local or not _REPO_ID.match(source):
        raise CheckpointError(
            f"Checkpoint {shorten(source)} is neither an existing path nor a Hugging Face repo id "
            f"(like {DEFAULT_CHECKPOINT!r}). Fix the path, or give a repo id."
        )
    return _resolve_local(source, _download(source))


def _resolve_local(source: str, path: Path) -> ResolvedCheckpoint:
    if not path.is_dir() and not path.is_file():  # a pipe or a device: never opened, it could block
        raise CheckpointError(f"Checkpoint {path} is {path_kind(path)}, not a file or a directory. Fix: point at "
                              f"the directory holding {CKPT_FILENAME}, or at the file itself.")
    directory, weights = (path, path / CKPT_FILENAME) if path.is_dir() else (path.parent, path)
    if not weights.is_file():
        raise CheckpointError(
            f"Checkpoint directory {directory} holds no {CKPT_FILENAME}. "
            "Point at the directory that holds it, or at the file itself."
        )
    config = directory / CONFIG_FILENAME
    hparams = ModelHparams.from_json(config) if config.is_file() else ModelHparams()
    return ResolvedCheckpoint(source=source, weights=weights, hparams=hparams)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    fix = _OFFLINE_FIX.format(repo=repo_id)
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
            raise CheckpointError(
                f"Checkpoint {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. {fix}"
            ) from None
    logger.info("Downloading checkpoint %s from the Hugging Face hub", repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=[CKPT_FILENAME, CONFIG_FILENAME]))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise CheckpointError(
            f"Cannot download checkpoint {repo_id!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). {fix}"
        ) from exc


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, cached per process by path, size and modification time (the weights are GBs)."""
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(checkpoint: ResolvedCheckpoint, expected: str | None) -> str:
    """The weights' SHA-256; raises when ``expected`` is given and differs (before anything is loaded)."""
    actual = sha256_file(checkpoint.weights)
    if expected is not None and actual != expected.strip().lower():
        raise CheckpointError(
            f"Checkpoint {checkpoint.weights} has SHA-256 {actual}, but {expected} was pinned. The weights "
            "changed or are the wrong file: restore the pinned checkpoint, or update the pin deliberately."
        )
    return actual


def build_decoder(hparams: ModelHparams) -> torch.nn.Module:
    """An uninitialised ``timesfm`` patched decoder with the architecture ``TimesFmTorch`` would build."""
    ppd = decoder_module()
    config = ppd.TimesFMConfig(
        num_layers=hparams.num_layers,
        num_heads=hparams.num_heads,
        hidden_size=hparams.model_dims,
        intermediate_size=hparams.model_dims,
        patch_len=hparams.input_patch_len,
        horizon_len=hparams.output_patch_len,
        head_dim=hparams.model_dims // hparams.num_heads,
        use_positional_embedding=hparams.use_positional_embedding,
    )
    module: torch.nn.Module = ppd.PatchedTimeSeriesDecoder(config)
    return module


def load_decoder(checkpoint: ResolvedCheckpoint, device: torch.device) -> torch.nn.Module:
    """Loads the weights (``weights_only=True``: no pickled code runs) into a decoder on ``device``."""
    module = build_decoder(checkpoint.hparams)
    try:
        state = torch.load(checkpoint.weights, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, OSError, RuntimeError) as exc:  # RuntimeError: a truncated zip
        raise CheckpointError(
            f"Cannot load weights from {checkpoint.weights}: not a readable torch state dict (truncated or "
            "corrupt?), or it holds "
            "pickled objects that safe loading (weights_only=True) refuses. Re-download the checkpoint or "
            "use another one."
        ) from exc
    try:
        module.load_state_dict(state)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"Cannot load weights from {checkpoint.weights}: {str(exc).splitlines()[0]}. The file is corrupt "
            f"or does not match the hyperparameters {checkpoint.hparams}; fix {CONFIG_FILENAME} beside it "
            "or use another checkpoint."
        ) from exc
    return module.to(device).eval()


def make_tiny_checkpoint(
    directory: Path | str,
    *,
    num_layers: int = 2,
    model_dims: int = 64,
    num_heads: int = 16,
    context_len: int = 512,
    seed: int = 0,
) -> ResolvedCheckpoint:
    """Writes a small TimesFM checkpoint with seeded random weights, and its ``config.json``.

    Its forecasts are meaningless: it exists so tests and offline smoke runs exercise the real
    loading and inference code without the 2 GB published weights.
    """
    hparams = ModelHparams(num_layers=num_layers, model_dims=model_dims, num_heads=num_heads,
                           context_len=context_len)
    module = build_decoder(hparams)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            # The module's own init leaves the RMSNorm scales at zero, which would silence every layer.
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), directory / CKPT_FILENAME)
    (directory / CONFIG_FILENAME).write_text(hparams.to_json() + "\n")
    (directory / RANDOM_WEIGHTS_MARKER).write_text(
        "These weights are seeded random numbers (forecast_model.make_tiny_checkpoint), made for tests and\n"
        "offline smoke runs: their forecasts mean nothing. Every run on them warns and records it.\n")
    return ResolvedCheckpoint(source=str(directory), weights=directory / CKPT_FILENAME, hparams=hparams)
