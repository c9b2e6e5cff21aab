"""Errors the pipeline raises for bad input; all are configuration errors a user can fix."""

from __future__ import annotations

from forecast_model.errors import ConfigurationError

__all__ = ["DataValidationError", "InputDataError", "OutputRootError", "OutputSpaceError"]


class InputDataError(ConfigurationError):
    """The input cannot be read or mapped to the canonical frame."""


class DataValidationError(InputDataError):
    """The canonical frame breaks the data contract."""


class OutputSpaceError(ConfigurationError):
    """The output filesystem ran out of space (or quota) while a run was staging its tables."""


class OutputRootError(ConfigurationError):
    """The output root is not a directory this process can write."""
