"""Checkpoint resolution (local file, local directory, Hugging Face id) and loading errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from forecast_model import CheckpointError, ModelHparams, ResolvedCheckpoint, resolve_checkpoint
from forecast_model.checkpoint import load_decoder


def test_directory_with_config_json(tiny_checkpoint: ResolvedCheckpoint) -> None:
    resolved = resolve_checkpoint(str(tiny_checkpoint.weights.parent))
    assert resolved.weights == tiny_checkpoint.weights
    assert resolved.hparams == tiny_checkpoint.hparams, "config.json beside the weights was not read"


def test_weights_file_directly(tiny_checkpoint: ResolvedCheckpoint) -> None:
    assert resolve_checkpoint(str(tiny_checkpoint.weights)).hparams.num_layers == 2


def test_without_config_json_the_2_0_500m_architecture_is_assumed(tmp_path: Path) -> None:
    (tmp_path / "torch_model.ckpt").write_bytes(b"")
    hparams = resolve_checkpoint(str(tmp_path)).hparams
    assert (hparams.num_layers, hparams.model_dims, hparams.num_heads, hparams.context_len) == (50, 1280, 16, 2048)
    assert hparams.use_positional_embedding is False


def test_hugging_face_style_config_keys(tmp_path: Path) -> None:
    config = {"hidden_size": 128, "num_layers": 3, "num_heads": 16, "context_len": 256, "model_type": "timesfm"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    hparams = ModelHparams.from_json(tmp_path / "config.json")
    assert (hparams.model_dims, hparams.num_layers, hparams.context_len) == (128, 3, 256)


@pytest.mark.parametrize(
    ("config", "message"),
    [({"num_heads": 8}, "num_heads=8 must be a multiple of 16"),
     ({"num_layers": "two"}, "num_layers must be a whole number, got 'two'"),
     ({"use_positional_embedding": 1}, "use_positional_embedding must be true or false"),
     ({"context_len": 500}, "context_len=500 must be a multiple of input_patch_len=32"),
     ({"num_heads": 0}, "num_heads=0 must be a whole number from 1"),
     ({"input_patch_len": 0}, "input_patch_len=0 must be a whole number from 1"),
     ({"output_patch_len": -128}, "output_patch_len=-128 must be a whole number from 1"),
     ({"patch_len": 48}, "context_len=2048 must be a multiple of input_patch_len=48.*output_patch_len=128 must be"),
     ({"hidden_size": 1000, "num_heads": 16}, "model_dims=1000 must be a multiple of num_heads=16"),
     ({"num_layers": 10**9}, "num_layers=1000000000 must be a whole number from 1 to 512")],
)
def test_invalid_config_names_the_file_the_key_and_the_fix(tmp_path: Path, config: dict, message: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message) as raised:
        ModelHparams.from_json(tmp_path / "config.json")
    assert str(tmp_path / "config.json") in str(raised.value) and "Fix: correct these keys" in str(raised.value)


def test_hparams_built_in_code_are_checked_too() -> None:
    with pytest.raises(CheckpointError, match="num_heads=0 must be a whole number"):
        ModelHparams(num_heads=0)
    assert ModelHparams(input_patch_len=64, context_len=512, output_patch_len=128).input_patch_len == 64


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="neither an existing path nor a Hugging Face repo id"):
        resolve_checkpoint(str(tmp_path / "nope" / "torch_model.ckpt"))


def test_a_missing_name_under_a_local_directory_is_a_path_not_a_repo_id(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # were it taken for a repo id, the error would say so instead
    with pytest.raises(CheckpointError, match="'data/does-not-exist' is neither an existing path"):
        resolve_checkpoint("data/does-not-exist")


def test_directory_without_weights(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"holds no torch_model\.ckpt"):
        resolve_checkpoint(str(tmp_path))


def test_uncached_repo_offline_fails_fast_naming_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE is set") as caught:
        resolve_checkpoint("google/timesfm-2.0-500m-pytorch")
    assert "make-tiny-checkpoint" in str(caught.value) and "TIMESFM20_DEFAULT_CHECKPOINT" in str(caught.value)
    assert "`hf download google/timesfm-2.0-500m-pytorch`" in str(caught.value), "the CLI that is installed: hf"
    assert "`.venv/bin/forecast make-tiny-checkpoint" in str(caught.value), "bare `forecast` is not on PATH"


def test_unreachable_hub_fails_with_the_fix(tmp_path: Path) -> None:
    # A fresh interpreter, because huggingface_hub reads its endpoint and offline flag at import.
    code = ("from forecast_model import resolve_checkpoint, CheckpointError\n"
            "try:\n    resolve_checkpoint('google/timesfm-2.0-500m-pytorch')\n"
            "except CheckpointError as e:\n    print(e)\n")
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_CACHE": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "Cannot download checkpoint 'google/timesfm-2.0-500m-pytorch'" in done.stdout, done.stderr[-2000:]
    assert "--checkpoint" in done.stdout


def test_cached_repo_is_used_offline(tiny_checkpoint: ResolvedCheckpoint, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Lay out a Hugging Face cache entry the way snapshot_download leaves one.
    repo = tmp_path / "models--acme--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for item in tiny_checkpoint.weights.parent.iterdir():
        shutil.copy(item, snapshot / item.name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    resolved = resolve_checkpoint("acme/tiny")
    assert resolved.weights == snapshot / "torch_model.ckpt"
    assert resolved.hparams == tiny_checkpoint.hparams


def test_corrupt_weights_name_the_file(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    shutil.copy(tiny_checkpoint.weights.parent / "config.json", tmp_path / "config.json")
    (tmp_path / "torch_model.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"Cannot load weights from .*torch_model.ckpt"):
        load_decoder(resolve_checkpoint(str(tmp_path)), torch.device("cpu"))


def test_weights_of_another_shape_name_the_mismatch(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    shutil.copy(tiny_checkpoint.weights, tmp_path / "torch_model.ckpt")
    (tmp_path / "config.json").write_text(json.dumps({"num_layers": 3, "model_dims": 64, "num_heads": 16,
                                                      "context_len": 512}))
    with pytest.raises(CheckpointError, match="does not match the hyperparameters"):
        load_decoder(resolve_checkpoint(str(tmp_path)), torch.device("cpu"))


def test_sha256_pin(tiny_checkpoint: ResolvedCheckpoint) -> None:
    import hashlib

    from forecast_model.checkpoint import verify_sha256

    expected = hashlib.sha256(tiny_checkpoint.weights.read_bytes()).hexdigest()
    assert verify_sha256(tiny_checkpoint, None) == expected
    assert verify_sha256(tiny_checkpoint, expected.upper()) == expected
    with pytest.raises(CheckpointError, match=f"has SHA-256 {expected}, but {'0' * 64} was pinned"):
        verify_sha256(tiny_checkpoint, "0" * 64)


def test_a_pipe_or_a_device_as_checkpoint_is_named_for_what_it_is(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "torch_model.ckpt")  # opening it would block the load
    with pytest.raises(CheckpointError, match=r"is a named pipe \(FIFO\), not a file or a directory"):
        resolve_checkpoint(str(tmp_path / "torch_model.ckpt"))
    with pytest.raises(CheckpointError, match="/dev/null is a character device"):
        resolve_checkpoint("/dev/null")
