"""Hyperparameters: bounds that stop a hostile config.json before any allocation, and config.json as published."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from forecast_model import CheckpointError, ConfigurationError, ModelHparams


def test_defaults_are_those_of_timesfm_2_0_500m() -> None:
    assert dataclasses.asdict(ModelHparams()) == {"num_layers": 50, "model_dims": 1280, "num_heads": 16,
                                                  "context_len": 2048, "input_patch_len": 32,
                                                  "output_patch_len": 128, "use_positional_embedding": False}


@pytest.mark.parametrize(("fields", "message"), [
    ({"num_layers": 0}, "num_layers=0 must be a whole number from 1 to 512"),
    ({"num_layers": 513}, "num_layers=513 must be a whole number from 1 to 512"),
    ({"model_dims": 32768 + 16}, "model_dims=32784 must be a whole number from 1 to 32,768"),
    ({"num_heads": -16}, "num_heads=-16 must be a whole number from 1 to 1,024"),
    ({"context_len": 65536 + 32}, "context_len=65568 must be a whole number from 1 to 65,536"),
    ({"num_heads": 8, "model_dims": 64}, "num_heads=8 must be a multiple of 16"),
    ({"model_dims": 100}, "model_dims=100 must be a multiple of num_heads=16"),
    ({"context_len": 100}, "context_len=100 must be a multiple of input_patch_len=32"),
    ({"output_patch_len": 100}, "output_patch_len=100 must be a multiple of input_patch_len=32"),
])
def test_out_of_bounds_hyperparameters_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        ModelHparams(**fields)


def test_the_largest_allowed_values_are_accepted() -> None:
    hparams = ModelHparams(num_layers=512, model_dims=32768, num_heads=1024, context_len=65536,
                           input_patch_len=4096, output_patch_len=4096)
    assert hparams.num_layers == 512 and hparams.model_dims == 32768


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(CheckpointError) as raised:
        ModelHparams(num_layers=0, model_dims=0, num_heads=0)
    assert str(raised.value).count("must be a whole number") == 3
    with pytest.raises(CheckpointError) as raised:
        ModelHparams(num_heads=24, model_dims=100, context_len=100)
    message = str(raised.value)
    assert "num_heads=24 must be a multiple of 16" in message and "model_dims=100" in message
    assert "context_len=100" in message and isinstance(raised.value, ConfigurationError)


def write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_from_json_reads_our_names_and_keeps_defaults_for_absent_keys(tmp_path: Path) -> None:
    hparams = ModelHparams.from_json(write(tmp_path / "config.json", {"num_layers": 2, "model_dims": 64}))
    assert hparams == ModelHparams(num_layers=2, model_dims=64)
    assert ModelHparams.from_json(write(tmp_path / "empty.json", {})) == ModelHparams()


def test_to_json_reads_back_unchanged(tmp_path: Path) -> None:
    hparams = ModelHparams(num_layers=3, model_dims=256, num_heads=32, context_len=512, input_patch_len=16,
                           output_patch_len=64, use_positional_embedding=True)
    assert ModelHparams.from_json(write(tmp_path / "config.json", hparams.to_json())) == hparams


def test_from_json_maps_hugging_face_aliases_and_ignores_metadata(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    config = {"hidden_size": 128, "patch_len": 16, "horizon_len": 64, "num_layers": 4,
              "architectures": ["TimesFm"], "model_type": "timesfm", "torch_dtype": "float32",
              "transformers_version": "4.0", "head_dim": 8, "intermediate_size": 128, "num_kv_heads": 16,
              "quantiles": [0.1, 0.9]}
    with caplog.at_level(logging.WARNING, logger="forecast_model.config"):
        hparams = ModelHparams.from_json(write(tmp_path / "config.json", config))
    assert (hparams.model_dims, hparams.input_patch_len, hparams.output_patch_len, hparams.num_layers) == \
        (128, 16, 64, 4)
    assert caplog.records == [], f"known metadata keys must not warn: {caplog.messages}"


def test_from_json_warns_about_unknown_keys_and_ignores_them(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="forecast_model.config"):
        hparams = ModelHparams.from_json(write(tmp_path / "config.json", {"num_layers": 2, "dropout": 0.1}))
    assert hparams == ModelHparams(num_layers=2)
    assert len(caplog.records) == 1 and "Ignoring unknown key 'dropout'" in caplog.messages[0]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"Cannot read checkpoint config .*config\.json: .*Fix or remove the file"),
    ("", "Cannot read checkpoint config"),
    (b"\xff\xfe{}", "Cannot read checkpoint config"),
    ([1, 2], r"config\.json must hold a JSON object"),
    ("null", "must hold a JSON object"),
    ({"num_layers": "2"}, r"num_layers must be a whole number, got '2'"),
    ({"num_layers": True}, "num_layers must be a whole number, got True"),
    ({"model_dims": 64.0}, "model_dims must be a whole number, got 64.0"),
    ({"use_positional_embedding": 1}, "use_positional_embedding must be true or false, got 1"),
    ({"num_layers": 100_000}, "num_layers=100000 must be a whole number from 1 to 512"),
    ({"hidden_size": 100}, "model_dims=100 must be a multiple of num_heads=16"),
    ('{"num_layers": ' + "1" * 5000 + "}", "Cannot read checkpoint config"),  # past Python's int-digit limit
], ids=["bad json", "empty", "not utf-8", "list", "null", "text", "bool", "float", "int flag", "huge", "alias",
        "5000 digits"])
def test_bad_config_json_is_a_checkpoint_error_naming_the_file(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "config.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(path, content)
    with pytest.raises(CheckpointError, match=message) as raised:
        ModelHparams.from_json(path)
    assert str(path) in str(raised.value)


def test_a_missing_config_json_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"Cannot read checkpoint config .*missing\.json") as raised:
        ModelHparams.from_json(tmp_path / "missing.json")
    assert isinstance(raised.value.__cause__, FileNotFoundError), "raised from its cause"


def test_type_and_bound_problems_are_reported_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {"num_layers": "many", "num_heads": "lots"})
    with pytest.raises(CheckpointError) as raised:
        ModelHparams.from_json(path)
    message = str(raised.value)
    assert "num_layers must be a whole number" in message and "num_heads must be a whole number" in message
    assert message.endswith("Fix: correct these keys (a key left out takes the TimesFM-2.0-500m value).")


def test_a_huge_value_is_quoted_short(tmp_path: Path) -> None:
    path = write(tmp_path / "config.json", {"num_layers": "9" * 100_000})
    with pytest.raises(CheckpointError, match="more characters") as raised:
        ModelHparams.from_json(path)
    assert len(str(raised.value)) < 1000
