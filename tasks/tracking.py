"""Record a run in MLflow: parameters, metrics, tags and artifacts, through an explicit client."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from pydantic import BaseModel, ConfigDict

__all__ = ["InputDataset", "TrackedRun", "TrackingError", "ensure_experiment", "track_run"]

# MLflow 3's UI opens an experiment on its GenAI overview unless told it holds model runs; a user's own choice
# (the tag set already) is kept.
_EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
_DIGEST_LIMIT = 36  # MLflow's column width for a dataset digest


class TrackingError(RuntimeError):
    """The run could not be recorded in MLflow and the run requires it."""


class InputDataset(BaseModel):
    """The run's input as an MLflow dataset: where it came from, a name, and its fingerprint."""

    model_config = ConfigDict(frozen=True)

    uri: str
    name: str
    fingerprint: str


class TrackedRun(BaseModel):
    """The MLflow run a flow run was recorded as."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    experiment_id: str


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created on first use (with local artifacts under ``artifact_root``), and
    marked as an experiment of model runs so the UI opens on its runs."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = (artifact_root / name).as_uri() if artifact_root else None
        return str(client.create_experiment(name, artifact_location=location, tags=dict([_EXPERIMENT_KIND])))
    if _EXPERIMENT_KIND[0] not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, *_EXPERIMENT_KIND)
    return str(experiment.experiment_id)


def _dataset_input(dataset: InputDataset) -> DatasetInput:
    """The input as an MLflow dataset of metadata only (nothing is copied): its source is the path or address
    it was read from, its digest the start of the input fingerprint."""
    with warnings.catch_warnings():  # a local path matches two equal source kinds; MLflow warns and picks one
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(dataset.uri)
    meta = MetaDataset(source, name=dataset.name[:500],  # type: ignore[abstract]  # as MLflow's docs make one
                       digest=dataset.fingerprint[:_DIGEST_LIMIT])
    return DatasetInput(meta._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "input")])


def _is_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry connection trouble with a tracking server, never a rejected request."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, MlflowException):
        return error.get_http_status_code() >= 500
    return False

@task(name="track-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=_is_transient)
def track_run(
    tracking_uri: str, experiment: str, artifact_root: Path | None, *, run_name: str, params: dict[str, str],
    metrics: dict[str, float], tags: dict[str, str], artifacts: list[Path], manifest: dict[str, Any] | None = None,
    dataset: InputDataset | None = None,
) -> TrackedRun:
    """Creates one finished MLflow run holding everything about this flow run; returns its ids.

    The manifest, if given, is logged as ``_manifest.json`` with this MLflow run's id filled in; the input,
    if given, as the run's dataset.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = ensure_experiment(client, experiment, artifact_root)
    run = client.create_run(experiment_id, tags=tags, run_name=run_name)
    run_id = run.info.run_id
    if manifest is not None:
        client.log_text(run_id, json.dumps({**manifest, "mlflow_run_id": run_id, "tracking_status": "ok"},
                                           indent=2, sort_keys=True, default=str), "_manifest.json")
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
        params=[Param(key, str(value)[:6000]) for key, value in params.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    if dataset is not None:
        client.log_inputs(run_id, datasets=[_dataset_input(dataset)])
    for path in artifacts:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        else:
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    get_run_logger().info("Tracked as MLflow run %s (%s) in experiment %r", run_id, run_name, experiment)
    return TrackedRun(run_id=run_id, experiment_id=experiment_id)
