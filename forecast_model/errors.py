"""Exceptions raised by the forecasting library.

Every error a user can fix derives from :class:`ConfigurationError`, so callers (the CLI, the flows) can
tell "your input or settings are wrong" apart from "something broke".
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigurationError", "DeviceError", "ForecastModelError"]


class ForecastModelError(Exception):
    """Base class of every error raised by ``forecast_model``."""


class ConfigurationError(ForecastModelError, ValueError):
    """A setting or an argument is wrong; the message says which one and how to fix it."""


class CheckpointError(ConfigurationError):
    """The checkpoint cannot be found, fetched or loaded."""


class DeviceError(ConfigurationError):
    """The requested compute device is not available."""
