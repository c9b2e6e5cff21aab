"""The job and as_of of Prefect's first lines of a run, resolved from its parameters as the flow will."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from flows.logfields import _from_parameters, run_log_fields
from forecast_model import EngineConfig
from pipeline.run import ResolvedRun
from pipeline.series_checks import SeriesChecks
from pipeline.sources import FileSource
from tests.conftest import SAMPLE

SCHEDULED = datetime(2026, 11, 27, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC next day


def test_a_forecast_run_from_its_parameters_as_given_by_the_api() -> None:
    source = {"kind": "file", "path": str(SAMPLE)}
    assert _from_parameters({"source": source, "job": None, "as_of": None}, SCHEDULED) == \
        ("us_macro_quarterly", "2026-11-28"), "the job from the file name, as_of the scheduled date in UTC"
    assert _from_parameters({"source": source, "job": "sales", "as_of": "2026-01-31"}, SCHEDULED) == \
        ("sales", "2026-01-31")


def test_a_forecast_run_from_its_parameters_as_python_objects() -> None:
    parameters = {"source": FileSource(path=str(SAMPLE)), "as_of": date(2026, 1, 31)}
    assert _from_parameters(parameters, None) == ("us_macro_quarterly", "2026-01-31")


def test_a_shard_takes_its_parents_run() -> None:
    run = ResolvedRun(run_id="parent", job="big", as_of=date(2026, 11, 20), output_root=Path("/tmp"), horizon=4,
                      context_len=32, engine=EngineConfig(checkpoint="x"), checks=SeriesChecks())
    assert _from_parameters({"source": {"kind": "file", "path": "x.csv"}, "shard": 3, "run": run.model_dump()},
                            None) == ("big", "2026-11-20")


def test_a_flow_without_a_job_and_a_line_outside_the_run_have_none() -> None:
    assert _from_parameters({"model": {}}, SCHEDULED) is None, "the health check"
    assert run_log_fields("0b5c6c0e-1111-4222-8333-944445555666") is None, "no flow run in this context"
