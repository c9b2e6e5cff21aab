"""Prefect tasks: each wraps one concern of the batch job (load, validate, forecast, write, track)."""
