"""Where shard runs leave their results, and how the parent combines them.

Each attempt at a shard writes into its own directory, ``<staging>/shards/<shard>/<attempt>/`` (the
attempt is the child flow run id), and commits by writing ``_SUCCESS.json`` last, as Hadoop and Spark
output committers do; an attempt that fails writes ``_FAILURE.json`` instead, naming its error's class and
whether a retry can help. The parent reads only the attempt of the child run it saw complete, so a
worker that died, or a zombie that finishes late, can never add a second copy of a shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from forecast_model.errors import shorten
from pipeline.accounting import SeriesCounts
from pipeline.errors import DataValidationError, is_permanent
from pipeline.manifest import ModelInfo
from pipeline.publish import fresh_dir
from pipeline.tables import parquet_options

__all__ = ["ShardFailure", "ShardRecord", "attempt_dir", "attempt_path", "combine_tables", "commit_attempt",
           "job_fingerprint", "job_model", "read_attempt", "read_failure", "record_failure", "worker_identity"]

SUCCESS = "_SUCCESS.json"
FAILURE = "_FAILURE.json"


class ShardRecord(BaseModel):
    """What one successful attempt at a shard did, and where it ran."""

    model_config = ConfigDict(frozen=True)

    shard: int
    attempt: str
    worker: str
    host: str
    pid: int
    counts: SeriesCounts
    output_rows: int
    input_fingerprint: str
    checkpoint_sha256: str
    random_weights: bool = False
    device: str
    precision: str
    batch_size: int
    inference_seconds: float
    timings: dict[str, float]


class ShardFailure(BaseModel):
    """Why one attempt at a shard failed: the error's class, whether it is permanent, and its message."""

    model_config = ConfigDict(frozen=True)

    error: str
    permanent: bool
    message: str


def worker_identity() -> tuple[str, str, int]:
    """(worker name, host, pid): the Prefect worker sets PREFECT__WORKER_NAME in the runs it starts."""
    return os.environ.get("PREFECT__WORKER_NAME", "in-process"), socket.gethostname(), os.getpid()


def attempt_path(staging: Path, shard: int, attempt: str) -> Path:
    """``<staging>/shards/<shard>/<attempt>``: where one attempt at one shard writes."""
    return staging / "shards" / f"{shard:05d}" / attempt


def attempt_dir(staging: Path, shard: int, attempt: str) -> Path:
    """A fresh directory for one attempt at one shard."""
    return fresh_dir(attempt_path(staging, shard, attempt))  # a retry in place starts its attempt over


def commit_attempt(directory: Path, record: ShardRecord) -> Path:
    """Marks the attempt complete: ``_SUCCESS.json`` appears whole (rename) after every data file."""
    temporary = directory / f".{SUCCESS}.tmp"
    temporary.write_text(record.model_dump_json(indent=2))
    os.replace(temporary, directory / SUCCESS)
    return directory / SUCCESS


def record_failure(directory: Path, error: BaseException) -> Path:
    """Leaves ``_FAILURE.json`` in a failed attempt's directory, for the parent to decide on a retry by the
    error's type rather than by its message."""
    failure = ShardFailure(error=type(error).__name__, permanent=is_permanent(error),
                           message=shorten(str(error), 1000))
    temporary = directory / f".{FAILURE}.tmp"
    temporary.write_text(failure.model_dump_json(indent=2))
    os.replace(temporary, directory / FAILURE)
    return directory / FAILURE


def read_failure(staging: Path, shard: int, attempt: str) -> ShardFailure | None:
    """The recorded failure of an attempt, or None if it left none (it crashed, or never started)."""
    marker = attempt_path(staging, shard, attempt) / FAILURE
    if not marker.is_file():
        return None
    return ShardFailure.model_validate(json.loads(marker.read_text()))


def read_attempt(staging: Path, shard: int, attempt: str) -> ShardRecord | None:
    """The committed record of an attempt, or None if it never committed."""
    marker = attempt_path(staging, shard, attempt) / SUCCESS
    if not marker.is_file():
        return None
    return ShardRecord.model_validate(json.loads(marker.read_text()))


def combine_tables(staging: Path, records: list[ShardRecord], table: str, schema: pa.Schema) -> Path:
    """Streams one table of every committed attempt, in shard order, into ``<staging>/<table>.parquet``.

    Row group by row group, each kept as the shard wrote it (the forecasts' row groups of one step each, which
    a reader of some target dates relies on); one row group is in memory at a time.
    """
    target = staging / f"{table}.parquet"
    with pq.ParquetWriter(target, schema, **parquet_options(schema)) as writer:
        for record in sorted(records, key=lambda r: r.shard):
            part = pq.ParquetFile(attempt_path(staging, record.shard, record.attempt) / f"{table}.parquet")
            for group in range(part.num_row_groups):
                rows = part.read_row_group(group)
                writer.write_table(rows.cast(schema), row_group_size=max(rows.num_rows, 1))
    return target


def job_model(records: list[ShardRecord]) -> ModelInfo:
    """The model of the whole job: one set of weights on every worker, or the job fails.

    Raises:
        DataValidationError: shards ran different weights for one checkpoint.
    """
    weights = sorted({r.checkpoint_sha256 for r in records})
    if len(weights) > 1:
        raise DataValidationError(f"Shards ran different weights {weights} for one checkpoint: the workers do not "
                                  "hold the same files. Fix: pin model.expected_sha256, or sync the workers.")
    return ModelInfo(device=",".join(sorted({r.device for r in records})),
                     precision=",".join(sorted({r.precision for r in records})), checkpoint_sha256=weights[0],
                     random_weights=any(r.random_weights for r in records))


def job_fingerprint(records: list[ShardRecord]) -> str:
    """The input fingerprint of the whole job: a hash over the shards' own, in shard order."""
    fingerprints = "".join(r.input_fingerprint for r in sorted(records, key=lambda r: r.shard))
    return hashlib.sha256(fingerprints.encode()).hexdigest()
