"""Errors the pipeline raises for bad input; all are configuration errors a user can fix."""

from __future__ import annotations

from pydantic import ValidationError

from forecast_model.errors import ConfigurationError

__all__ = ["DataValidationError", "InputDataError", "OutputRootError", "OutputSpaceError", "describe_invalid",
           "is_permanent"]


class InputDataError(ConfigurationError):
    """The input cannot be read or mapped to the canonical frame."""


class DataValidationError(InputDataError):
    """The canonical frame breaks the data contract."""


class OutputSpaceError(ConfigurationError):
    """The output filesystem ran out of space (or quota) while a run was staging its tables."""


class OutputRootError(ConfigurationError):
    """The output root is not a directory this process can write."""


def is_permanent(error: BaseException) -> bool:
    """Whether trying again can help: a configuration error (bad input, a checkpoint that does not load or
    match its pin, a device that is absent, an output root that cannot be written) fails the same way every
    time, so it is permanent; anything else (a crash, a timeout, a lost worker, a full disk) may not be.
    """
    return isinstance(error, (ConfigurationError, ValidationError))  # invalid parameters are invalid every time


def describe_invalid(exc: ValidationError) -> str:
    """A pydantic error on one line, field by field, without the offending input (it may be a secret)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or exc.title}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors(include_url=False, include_input=False))
