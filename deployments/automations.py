"""Prefect automations this system relies on: ``python -m deployments.automations`` (idempotent).

``crash-silent-flow-runs``: a flow run whose heartbeats stop (its machine or process died without a word)
is marked Crashed. Workers run flows with ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` set (prefect.yaml); once a
shard run is Crashed, its sharded-forecast parent retries the shard on another worker, and any other run
can be retried (UI: Retry) and starts clean. This is Prefect's documented way to detect such "zombie" runs;
without it a run on a lost machine stays Running forever.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture

__all__ = ["DEPLOYED_FLOWS", "SILENT_RUNS", "crash_silent_runs", "main"]

SILENT_RUNS = "crash-silent-flow-runs"
# Every flow prefect.yaml deploys: all of them run on pools that turn heartbeats on.
DEPLOYED_FLOWS = ("batch-forecast", "batch-backtest", "batch-detect-anomalies", "sharded-forecast", "forecast-shard",
                  "health-check")
_ALIVE = ("prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.heartbeat")
_FINAL = {f"prefect.flow-run.{name}" for name in ("Completed", "Failed", "Cancelled", "Crashed")}


def crash_silent_runs(within_seconds: int = 90, flows: tuple[str, ...] = DEPLOYED_FLOWS) -> Automation:
    """Creates (or replaces) the automation. ``within_seconds`` must exceed both the heartbeat interval
    (30 s at least) and the time a worker's infrastructure takes from Pending to Running (image pulls on
    Kubernetes can take minutes: raise it there). Only runs of ``flows`` are watched: they run with
    heartbeats on (prefect.yaml sets them per work pool), and a run without heartbeats must not be crashed."""
    automation = Automation(
        name=SILENT_RUNS,
        description="Mark a flow run Crashed when its heartbeats stop (lost worker or machine).",
        # Armed by a run's Pending (a worker submitted it) and re-armed by Running and every heartbeat: a
        # run that dies before its engine starts stays Pending, and would never send a heartbeat.
        trigger=EventTrigger(
            after=set(_ALIVE), expect={*_ALIVE, *_FINAL},
            match={"prefect.resource.id": "prefect.flow-run.*"}, for_each={"prefect.resource.id"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(flows)},
            posture=Posture.Proactive, threshold=1, within=timedelta(seconds=within_seconds)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"No heartbeat for {within_seconds} s: the run's process or machine "
                                            "was lost")],
    )
    try:
        Automation.read(name=SILENT_RUNS).delete()
    except ValueError:  # Prefect's answer when no automation has that name
        pass
    return automation.create()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--within", type=int, default=90, help="Seconds without a heartbeat before Crashed.")
    parser.add_argument("--flow", action="append", help="Flow whose runs are watched (default: every deployed flow).")
    args = parser.parse_args()
    created = crash_silent_runs(args.within, tuple(args.flow or DEPLOYED_FLOWS))
    print(f"automation {created.name} ({created.id}) is active")


if __name__ == "__main__":
    main()
