"""Prefect flows: each reads as the stages of one job and holds no business logic."""

from flows.logfields import run_log_fields
from pipeline.logfile import set_resolver

# Any flow loaded (a worker's flow-run process imports its entrypoint first): Prefect's lines of the run from
# its first one on, `Beginning flow run ...`, name its job and as_of in the log file.
set_resolver(run_log_fields)
