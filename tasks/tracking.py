"""Record a run in MLflow: parameters, metrics, tags and artifacts, through an explicit client."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

__all__ = ["TrackingError", "ensure_experiment", "track_run"]


class TrackingError(RuntimeError):
    """The run could not be recorded in MLflow and the run requires it."""


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created on first use (with local artifacts under ``artifact_root``)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (artifact_root / name).as_uri() if artifact_root else None
    return str(client.create_experiment(name, artifact_location=location))


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
    tracking_uri: str, experiment: str, artifact_root: Path | None, *, params: dict[str, str],
    metrics: dict[str, float], tags: dict[str, str], artifacts: list[Path], manifest: dict[str, Any] | None = None,
) -> str:
    """Creates one finished MLflow run holding everything about this flow run; returns its id.

    The manifest, if given, is logged as ``_manifest.json`` with this MLflow run's id filled in.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.create_run(ensure_experiment(client, experiment, artifact_root), tags=tags)
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
    for path in artifacts:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        else:
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    get_run_logger().info("Tracked as MLflow run %s in experiment %r", run_id, experiment)
    return run_id
