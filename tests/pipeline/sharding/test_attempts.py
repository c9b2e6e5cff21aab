"""Shard attempts: only a committed attempt counts, one set of weights per job, and the job's fingerprint."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.accounting import SeriesCounts
from pipeline.errors import DataValidationError
from pipeline.manifest import ModelInfo
from pipeline.sharding import (
    ShardRecord,
    attempt_dir,
    attempt_path,
    combine_tables,
    commit_attempt,
    job_fingerprint,
    job_model,
    read_attempt,
    worker_identity,
)


def _record(shard: int, attempt: str) -> ShardRecord:
    return ShardRecord(shard=shard, attempt=attempt, worker="w", host="h", pid=1, counts=SeriesCounts(ok=1),
                       output_rows=1, input_fingerprint="f", checkpoint_sha256="s", device="cpu", precision="fp32",
                       batch_size=1, inference_seconds=0.1, timings={})


def test_only_the_committed_attempt_is_combined(tmp_path: Path) -> None:
    schema = pa.schema([("unique_id", pa.string())])
    for shard, attempt, ids, commit in [(1, "b", ["b1"], True), (0, "zombie", ["a-late"], False),
                                        (0, "a", ["a1", "a2"], True)]:
        directory = attempt_dir(tmp_path, shard, attempt)
        pq.write_table(pa.table({"unique_id": ids}, schema=schema), directory / "forecasts.parquet", row_group_size=1)
        if commit:
            commit_attempt(directory, _record(shard, attempt))
    assert read_attempt(tmp_path, 0, "zombie") is None, "an attempt without _SUCCESS.json is not done"
    records = [r for r in (read_attempt(tmp_path, s, a) for s, a in [(1, "b"), (0, "a")]) if r]
    combined = combine_tables(tmp_path, records, "forecasts", schema)
    assert pq.read_table(combined).column("unique_id").to_pylist() == ["a1", "a2", "b1"]
    assert pq.ParquetFile(combined).metadata.num_row_groups == 3, "each shard's row groups kept as written"


def shards(count: int, **fields: object) -> list[ShardRecord]:
    """Records of ``count`` shards, each with its own input fingerprint."""
    return [_record(k, f"run-{k}").model_copy(update={"input_fingerprint": f"fp{k}", **fields})
            for k in range(count)]


def test_a_committed_attempt_reads_back_as_it_was_recorded(tmp_path: Path) -> None:
    record = shards(1, counts=SeriesCounts(ok=3, rejected=1, by_reason={"constant": 1}), timings={"load": 0.5})[0]
    directory = attempt_dir(tmp_path, 0, "run-0")
    assert directory == attempt_path(tmp_path, 0, "run-0") == tmp_path / "shards" / "00000" / "run-0"
    marker = commit_attempt(directory, record)
    assert marker.name == "_SUCCESS.json" and json.loads(marker.read_text())["shard"] == 0
    assert [p.name for p in directory.iterdir()] == ["_SUCCESS.json"], "no temporary file is left behind"
    assert read_attempt(tmp_path, 0, "run-0") == record
    assert read_attempt(tmp_path, 0, "run-1") is None and read_attempt(tmp_path, 1, "run-0") is None


def test_a_retry_in_place_starts_its_attempt_over(tmp_path: Path) -> None:
    directory = attempt_dir(tmp_path, 3, "run-x")
    (directory / "forecasts.parquet").write_bytes(b"half written")
    commit_attempt(directory, shards(1)[0])
    again = attempt_dir(tmp_path, 3, "run-x")
    assert again == directory and list(again.iterdir()) == [], "what the dead attempt left must be gone"
    assert read_attempt(tmp_path, 3, "run-x") is None


def test_job_model_is_the_one_model_every_shard_ran() -> None:
    records = [*shards(2, device="cuda:0", precision="tf32"), *shards(1, device="cpu", precision="fp32"),
               *shards(1, device="cuda:0", precision="tf32")]
    assert job_model(records) == ModelInfo(device="cpu,cuda:0", precision="fp32,tf32", checkpoint_sha256="s")
    assert job_model(shards(3)) == ModelInfo(device="cpu", precision="fp32", checkpoint_sha256="s")


def test_shards_that_ran_different_weights_fail_the_job_with_the_fix() -> None:
    records = [*shards(2, checkpoint_sha256="a" * 64), *shards(1, checkpoint_sha256="b" * 64)]
    with pytest.raises(DataValidationError, match="Shards ran different weights") as raised:
        job_model(records)
    message = str(raised.value)
    assert "a" * 64 in message and "b" * 64 in message, "the message names both weights"
    assert "Fix: pin model.expected_sha256, or sync the workers." in message


def test_job_fingerprint_does_not_depend_on_the_order_records_arrive_in() -> None:
    records = shards(6)
    fingerprint = job_fingerprint(records)
    assert len(fingerprint) == 64
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert shuffled != records and job_fingerprint(shuffled) == fingerprint
    assert job_fingerprint(records[::-1]) == fingerprint


@pytest.mark.parametrize("shard", [0, 3, 5])
def test_job_fingerprint_changes_when_one_shard_input_changes(shard: int) -> None:
    records = shards(6)
    changed = [r.model_copy(update={"input_fingerprint": "other"}) if r.shard == shard else r for r in records]
    assert job_fingerprint(changed) != job_fingerprint(records)
    assert job_fingerprint(records[:-1]) != job_fingerprint(records), "a missing shard changes it too"


def test_worker_identity_names_the_prefect_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT__WORKER_NAME", raising=False)
    assert worker_identity()[0] == "in-process"
    monkeypatch.setenv("PREFECT__WORKER_NAME", "gpu-worker-2")
    name, host, pid = worker_identity()
    assert name == "gpu-worker-2" and host and pid > 0
