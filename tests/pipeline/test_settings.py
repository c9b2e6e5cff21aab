"""Settings from the environment: the variable names, empty meaning unset, the source policy and tracking store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from forecast_model import DEFAULT_CHECKPOINT
from pipeline.settings import Settings, load_settings, variable_names

ENV_NAMES = variable_names()


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No variable of this process and no .env of the repository: each test sets what it reads."""
    monkeypatch.chdir(tmp_path)
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_every_setting_has_its_documented_variable_name() -> None:
    assert ENV_NAMES == sorted([
        "TIMESFM20_DEFAULT_CHECKPOINT", "TIMESFM20_DEFAULT_BACKEND", "FORECAST_DEVICE_INDEX",
        "TIMESFM20_DEFAULT_CONTEXT_LEN",
        "TIMESFM20_DEFAULT_HORIZON_LEN", "TIMESFM20_DEFAULT_BATCH_SIZE", "FORECAST_OVERLAP", "FORECAST_CPU_THREADS",
        "FORECAST_DATA_DIR", "FORECAST_OUTPUT_ROOT",
        "MLFLOW_TRACKING_URI", "MLFLOW_UI_URL", "MLFLOW_EXPERIMENT_NAME", "LOG_LEVEL", "FORECAST_LOG_FILE",
        "LOG_FILE", "FORECAST_LOG_MAX_BYTES", "FORECAST_LOG_BACKUP_COUNT", "LOG_FORMAT",
        "FORECAST_DATA_ROOTS",
        "FORECAST_URL_ALLOWLIST", "FORECAST_URL_CONNECT_TIMEOUT", "FORECAST_URL_READ_TIMEOUT",
        "FORECAST_URL_TOTAL_TIMEOUT", "FORECAST_URL_MAX_BYTES", "FORECAST_DUCKDB_TIMEOUT",
    ])


def test_defaults_without_any_variable(tmp_path: Path) -> None:
    settings = Settings()
    assert (settings.checkpoint, settings.backend, settings.context_len, settings.horizon_len) == \
        (DEFAULT_CHECKPOINT, "auto", 2048, 128)
    assert settings.batch_size is None and settings.output_root is None and settings.mlflow_experiment is None
    assert settings.cpu_threads is None, "the worker decides (pipeline.forecasting.engine_threads)"
    assert settings.resolved_output_root() == (tmp_path / "data" / "outputs").resolve()
    assert settings.resolved_log_file() == (tmp_path / "data" / "logs" / "forecast.log").resolve()
    assert (settings.log_max_bytes, settings.log_backup_count, settings.log_format) == (10 * 2**20, 5, "plain")


def test_variables_are_read_under_their_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {"TIMESFM20_DEFAULT_CHECKPOINT": "/models/tiny", "TIMESFM20_DEFAULT_BACKEND": "cpu",
              "TIMESFM20_DEFAULT_CONTEXT_LEN": "512", "TIMESFM20_DEFAULT_HORIZON_LEN": "24",
              "TIMESFM20_DEFAULT_BATCH_SIZE": "16", "FORECAST_DATA_DIR": str(tmp_path / "d"),
              "FORECAST_OUTPUT_ROOT": str(tmp_path / "out"), "MLFLOW_EXPERIMENT_NAME": "exp",
              "FORECAST_LOG_FILE": str(tmp_path / "f.log"), "FORECAST_URL_MAX_BYTES": "1024",
              "FORECAST_DUCKDB_TIMEOUT": "7.5", "FORECAST_CPU_THREADS": "3"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.checkpoint, settings.backend, settings.context_len, settings.horizon_len,
            settings.batch_size) == ("/models/tiny", "cpu", 512, 24, 16)
    assert settings.data_dir == tmp_path / "d" and settings.resolved_output_root() == tmp_path / "out"
    assert settings.mlflow_experiment == "exp" and settings.resolved_log_file() == tmp_path / "f.log"
    assert (settings.url_max_bytes, settings.duckdb_timeout, settings.cpu_threads) == (1024, 7.5, 3)


def test_log_file_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOG_FILE", str(tmp_path / "service.log"))  # the earlier service's name still works
    assert load_settings().resolved_log_file() == tmp_path / "service.log"
    monkeypatch.setenv("FORECAST_LOG_FILE", str(tmp_path / "f.log"))
    good = {"FORECAST_LOG_MAX_BYTES": "65536", "FORECAST_LOG_BACKUP_COUNT": "2", "LOG_FORMAT": "json"}
    for name, value in good.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.resolved_log_file() == tmp_path / "f.log"
    assert (settings.log_max_bytes, settings.log_backup_count, settings.log_format) == (65536, 2, "json")
    for name, bad in {"FORECAST_LOG_MAX_BYTES": "100", "FORECAST_LOG_BACKUP_COUNT": "0", "LOG_FORMAT": "xml"}.items():
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValidationError):
            load_settings()
        monkeypatch.delenv(name)


def test_settings_are_read_when_asked_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().horizon_len == 128
    monkeypatch.setenv("TIMESFM20_DEFAULT_HORIZON_LEN", "7")
    assert load_settings().horizon_len == 7


@pytest.mark.parametrize("name", ["FORECAST_OUTPUT_ROOT", "TIMESFM20_DEFAULT_HORIZON_LEN",
                                  "TIMESFM20_DEFAULT_BATCH_SIZE", "MLFLOW_TRACKING_URI", "FORECAST_DATA_DIR",
                                  "TIMESFM20_DEFAULT_BACKEND"])
def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    unset = Settings()
    monkeypatch.setenv(name, "")
    assert Settings() == unset, f"{name}= must read as if it were not set"


def test_an_empty_output_root_is_not_the_current_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FORECAST_OUTPUT_ROOT", "")
    assert Settings().resolved_output_root() == (tmp_path / "data" / "outputs").resolve() != tmp_path


def test_a_dotenv_file_in_the_working_directory_is_read_and_the_environment_wins(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TIMESFM20_DEFAULT_BACKEND=cpu\nTIMESFM20_DEFAULT_HORIZON_LEN=36\nUNRELATED=1\n")
    assert (Settings().backend, Settings().horizon_len) == ("cpu", 36)
    monkeypatch.setenv("TIMESFM20_DEFAULT_HORIZON_LEN", "6")
    assert Settings().horizon_len == 6


@pytest.mark.parametrize(("name", "value"), [("TIMESFM20_DEFAULT_BACKEND", "tpu"),
                                             ("TIMESFM20_DEFAULT_CONTEXT_LEN", "0"),
                                             ("TIMESFM20_DEFAULT_BATCH_SIZE", "-1"),
                                             ("FORECAST_URL_READ_TIMEOUT", "0"),
                                             ("TIMESFM20_DEFAULT_HORIZON_LEN", "many")])
def test_a_bad_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        Settings()


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        Settings().backend = "cpu"  # type: ignore[misc]


def test_source_policy_from_data_roots_and_allowlist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FORECAST_DATA_ROOTS", os.pathsep.join(["", "/srv/a", "", "rel/b", ""]))
    monkeypatch.setenv("FORECAST_URL_ALLOWLIST", " 127.0.0.1/32 ,, minio.internal ,")
    monkeypatch.setenv("FORECAST_URL_CONNECT_TIMEOUT", "3")
    monkeypatch.setenv("FORECAST_URL_TOTAL_TIMEOUT", "30")
    policy = Settings().source_policy()
    assert policy.data_roots == (Path("/srv/a"), Path("rel/b")), "empty entries are dropped"
    assert policy.url_allowlist == ("127.0.0.1/32", "minio.internal")
    assert [str(n) for n in policy.allowed_networks()] == ["127.0.0.1/32"]
    assert policy.allowed_hosts() == {"minio.internal"}
    assert (policy.connect_timeout, policy.read_timeout, policy.total_timeout, policy.query_timeout) == \
        (3.0, 60.0, 30.0, 600.0)
    assert policy.max_download_bytes == 512 * 1024 * 1024


def test_without_data_roots_sources_may_read_the_working_directory_only(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    policy = Settings().source_policy()
    assert policy.data_roots == (tmp_path,) and policy.url_allowlist == ()
    monkeypatch.setenv("FORECAST_DATA_ROOTS", os.pathsep)  # only separators: as good as none
    assert Settings().source_policy().data_roots == (tmp_path,)


def test_tracking_defaults_to_sqlite_under_the_data_directory(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    settings = Settings()
    assert settings.resolved_tracking_uri() == f"sqlite:///{(tmp_path / 'data' / 'mlflow.db').resolve()}"
    assert settings.artifact_root() == (tmp_path / "data" / "mlartifacts").resolve()
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tmp_path / "elsewhere"))
    assert Settings().resolved_tracking_uri() == f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"


@pytest.mark.parametrize(("uri", "local"), [("http://mlflow:5000", False), ("https://mlflow.example.com", False),
                                            ("databricks", False), ("sqlite:////srv/mlflow.db", True),
                                            ("postgresql://u@db/mlflow", True), ("file:///srv/mlruns", True)])
def test_artifact_root_only_for_stores_without_a_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, uri: str,
                                                        local: bool) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    settings = Settings()
    assert settings.resolved_tracking_uri() == uri
    expected = (tmp_path / "data" / "mlartifacts").resolve() if local else None
    assert settings.artifact_root() == expected, f"{uri}: a tracking server decides where artifacts go"
