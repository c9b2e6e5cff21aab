"""The tracking task against a real local MLflow store: one finished run holding parameters, metrics, tags,
artifacts and the manifest; experiments created once and reused; retries only for a server in trouble."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.tracking import MlflowClient
from prefect.client.schemas.objects import TaskRun
from prefect.logging import disable_run_logger
from prefect.states import Failed, State

from tasks.tracking import InputDataset, _is_transient, ensure_experiment, track_run

EXPERIMENT = "batch-forecast/nightly"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite tracking store in the test's directory (which is also the working directory)."""
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path}/mlflow.db"


def staged_artifacts(tmp_path: Path) -> list[Path]:
    report = tmp_path / "validation.json"
    report.write_text(json.dumps({"success": True}))
    docs = tmp_path / "data_docs"
    (docs / "static").mkdir(parents=True, exist_ok=True)
    (docs / "index.html").write_text("<html>docs</html>")
    (docs / "static" / "style.css").write_text("body {}")
    return [report, docs]


def track(store: str, tmp_path: Path, **overrides: object) -> str:
    arguments: dict[str, Any] = {
        "run_name": "macro/2026-11-26",
        "params": {"horizon": "8", "model.device": "cpu", "source": "file:" + "x" * 7000},
        "metrics": {"series_ok": 12, "inference_seconds": 0.25},
        "tags": {"prefect.flow_run_id": "flow-run-1", "job": "macro"},
        "artifacts": staged_artifacts(tmp_path),
        "manifest": {"run_id": "flow-run-1", "series_ok": 12, "mlflow_run_id": None, "tracking_status": "pending",
                     "created_at": datetime(2026, 11, 26, tzinfo=timezone.utc)},
        **overrides,
    }
    with disable_run_logger():
        tracked = track_run.fn(store, EXPERIMENT, tmp_path / "mlartifacts", **arguments)
    assert MlflowClient(tracking_uri=store).get_run(tracked.run_id).info.experiment_id == tracked.experiment_id
    return tracked.run_id


def test_track_run_records_one_finished_run_with_everything(store: str, tmp_path: Path) -> None:
    run_id = track(store, tmp_path)
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == EXPERIMENT and run.info.status == "FINISHED" and run.info.run_name == "macro/2026-11-26"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", "the UI opens on the runs"
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / EXPERIMENT).as_uri(), \
        "new experiments keep their artifacts under the given root, not ./mlruns"
    assert run.data.params["horizon"] == "8" and run.data.params["model.device"] == "cpu"
    assert len(run.data.params["source"]) == 6000, "long parameter values are cut to MLflow's limit"
    assert run.data.metrics == {"series_ok": 12.0, "inference_seconds": 0.25}
    assert {"prefect.flow_run_id": "flow-run-1", "job": "macro"}.items() <= run.data.tags.items()
    top = {a.path for a in client.list_artifacts(run_id)}
    assert top == {"_manifest.json", "validation.json", "data_docs"}
    assert {a.path for a in client.list_artifacts(run_id, "data_docs")} == {"data_docs/index.html",
                                                                           "data_docs/static"}
    manifest = json.loads(Path(client.download_artifacts(run_id, "_manifest.json", str(tmp_path))).read_text())
    assert manifest["mlflow_run_id"] == run_id and manifest["tracking_status"] == "ok", \
        "the logged manifest names the MLflow run it is in"
    assert (manifest["run_id"], manifest["series_ok"], manifest["created_at"]) == \
        ("flow-run-1", 12, "2026-11-26 00:00:00+00:00")
    assert not (tmp_path / "mlruns").exists()


def test_without_a_manifest_none_is_logged(store: str, tmp_path: Path) -> None:
    run_id = track(store, tmp_path, manifest=None, artifacts=[])
    assert MlflowClient(tracking_uri=store).list_artifacts(run_id) == []


def test_the_input_is_logged_as_a_dataset_of_metadata(store: str, tmp_path: Path) -> None:
    for uri, kind, fingerprint in ((str(tmp_path / "sales.csv"), "local", "ab" * 32),
                                   ("https://data.example.org/sales.csv", "http", "cd" * 32)):  # one per digest
        run_id = track(store, tmp_path, dataset=InputDataset(uri=uri, name="macro", fingerprint=fingerprint))
        (logged,) = MlflowClient(tracking_uri=store).get_run(run_id).inputs.dataset_inputs
        assert (logged.dataset.name, logged.dataset.source_type) == ("macro", kind)
        assert logged.dataset.digest == fingerprint[:36], "the fingerprint's start: MLflow keeps 36 characters"
        assert uri in logged.dataset.source and [(t.key, t.value) for t in logged.tags] == [
            ("mlflow.data.context", "input")]


def test_ensure_experiment_reuses_an_existing_experiment(store: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=store)
    existing = client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "elsewhere").as_uri())
    assert ensure_experiment(client, EXPERIMENT, tmp_path / "mlartifacts") == existing
    assert client.get_experiment(existing).tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(existing, "mlflow.experimentKind", "genai_development")
    ensure_experiment(client, EXPERIMENT, None)
    assert client.get_experiment(existing).tags["mlflow.experimentKind"] == "genai_development", \
        "a kind the user chose is kept"
    first, second = track(store, tmp_path), track(store, tmp_path)
    assert client.get_run(first).info.experiment_id == client.get_run(second).info.experiment_id == existing
    assert [e.name for e in client.search_experiments()].count(EXPERIMENT) == 1
    assert client.get_experiment(existing).artifact_location == (tmp_path / "elsewhere").as_uri(), \
        "an existing experiment keeps its own artifact location"


def test_ensure_experiment_creates_each_name_once(store: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=store)
    created = ensure_experiment(client, "a", tmp_path / "art")
    assert ensure_experiment(client, "a", None) == created
    assert ensure_experiment(client, "b", tmp_path / "art") != created
    assert client.get_experiment(created).artifact_location == (tmp_path / "art" / "a").as_uri()


@pytest.mark.parametrize(("error", "retried"), [
    (ConnectionError("refused"), True),
    (TimeoutError("timed out"), True),
    (MlflowException("unavailable", error_code=TEMPORARILY_UNAVAILABLE), True),
    (MlflowException("server error", error_code=INTERNAL_ERROR), True),
    (MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE), False),
    (MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST), False),
    (ValueError("ConnectionError in the message only"), False),
], ids=["connection", "timeout", "503", "500", "400", "404", "value"])
def test_tracking_retries_only_a_server_in_trouble(error: Exception, retried: bool) -> None:
    state: State = Failed(data=error, message=str(error))
    assert _is_transient(track_run, TaskRun(task_key="track-run", dynamic_key="0"), state) is retried
