"""Which errors are permanent: every configuration error (a retry fails the same way), nothing else; and every
pipeline error is a ValueError, which the CLI maps to exit 2."""

from __future__ import annotations

import errno

import pytest
from pydantic import BaseModel, ValidationError

from flows.fanout import ShardFailedError
from forecast_model.errors import CheckpointError, ConfigurationError, DeviceError, ForecastModelError
from pipeline.errors import DataValidationError, InputDataError, OutputRootError, OutputSpaceError, is_permanent
from pipeline.sources import TransientSourceError
from tasks.health import UnhealthyError
from tasks.tracking import TrackingError

CONFIGURATION_ERRORS = [ConfigurationError, CheckpointError, DeviceError, InputDataError, DataValidationError,
                        OutputSpaceError, OutputRootError]
PIPELINE_ERRORS = [InputDataError, DataValidationError, OutputSpaceError, OutputRootError]


def subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    """Every class below ``cls`` that has been imported, at any depth."""
    found: set[type[BaseException]] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *subclasses(sub)}
    return found


@pytest.mark.parametrize("cls", CONFIGURATION_ERRORS, ids=lambda cls: cls.__name__)
def test_every_configuration_error_is_permanent(cls: type[ConfigurationError]) -> None:
    assert is_permanent(cls("bad setting")), f"{cls.__name__} fails the same way on a retry: it must be permanent"


def test_no_configuration_error_of_the_project_is_left_out_above() -> None:
    project = {cls for cls in subclasses(ConfigurationError)
               if cls.__module__.split(".")[0] in {"forecast_model", "pipeline", "tasks", "flows"}}
    unlisted = project - set(CONFIGURATION_ERRORS)
    assert not unlisted, f"configuration errors to list in CONFIGURATION_ERRORS: {unlisted}"
    assert all(is_permanent(cls("x")) for cls in subclasses(ConfigurationError))


@pytest.mark.parametrize("error", [
    RuntimeError("worker lost"),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.ECONNRESET, "Connection reset by peer"),
    TimeoutError("read timed out"),
    ValueError("a plain ValueError is not a configuration error"),
    TransientSourceError("503 from the server"),
    ShardFailedError("shard 3 failed 3 times"),
    TrackingError("MLflow did not answer"),
    UnhealthyError("tracking failed"),
    SystemExit(1),
    GeneratorExit(),
    BaseException("bare"),
], ids=lambda error: type(error).__name__)
def test_anything_else_may_succeed_on_a_retry(error: BaseException) -> None:
    assert not is_permanent(error), f"{type(error).__name__} is not a configuration error: a retry may help"


def test_invalid_parameters_are_permanent() -> None:
    class Params(BaseModel):
        horizon: int

    with pytest.raises(ValidationError) as raised:
        Params(horizon="soon")  # type: ignore[arg-type]
    assert is_permanent(raised.value), "parameters that fail validation fail the same way on every retry"


def test_the_type_decides_not_the_cause_or_the_message() -> None:
    try:
        try:
            raise InputDataError("bad input")
        except InputDataError as cause:
            raise RuntimeError("wrapped") from cause
    except RuntimeError as wrapped:
        assert not is_permanent(wrapped), "only the error's own type counts, not its __cause__"
    assert not is_permanent(RuntimeError("InputDataError: looks permanent by its message"))


@pytest.mark.parametrize("cls", PIPELINE_ERRORS, ids=lambda cls: cls.__name__)
def test_pipeline_errors_are_configuration_and_value_errors(cls: type[ConfigurationError]) -> None:
    assert issubclass(cls, ConfigurationError) and issubclass(cls, ForecastModelError)
    assert issubclass(cls, ValueError), f"{cls.__name__} must be a ValueError so the CLI exits 2 on it"
    with pytest.raises(ValueError, match="the fix"):
        raise cls("what is wrong and the fix")


def test_the_hierarchy_between_pipeline_errors() -> None:
    assert issubclass(DataValidationError, InputDataError), "a contract breach is bad input"
    assert not issubclass(OutputSpaceError, InputDataError) and not issubclass(OutputRootError, InputDataError)
    assert not issubclass(TransientSourceError, ValueError) and not issubclass(ShardFailedError, ValueError), \
        "retryable errors must not be mapped to exit 2"
