"""The shard tasks on the real sample: the plan covers every series once, each shard stages exactly its series
with their fingerprint, the shards combine back into the whole input, and the data roots hold."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect.logging import disable_run_logger

from pipeline.accounting import SeriesCounts
from pipeline.canonical import to_canonical
from pipeline.contracts import INPUT_SCHEMA
from pipeline.errors import InputDataError
from pipeline.manifest import input_fingerprint
from pipeline.sharding import ShardPlan, ShardRecord, attempt_dir, commit_attempt
from pipeline.sources import FileSource, SourcePolicy
from tasks.shards import combine_shards, load_shard, plan_shards
from tests.conftest import SAMPLE


@pytest.fixture
def frame() -> pd.DataFrame:
    return to_canonical(pd.read_csv(SAMPLE))


@pytest.fixture
def source(tmp_path: Path, frame: pd.DataFrame) -> FileSource:
    path = tmp_path / "panel.parquet"
    frame.to_parquet(path, index=False)
    return FileSource(path=str(path))


@pytest.fixture
def policy(tmp_path: Path) -> SourcePolicy:
    return SourcePolicy(data_roots=(tmp_path, SAMPLE.parent))


def plan(source: FileSource, policy: SourcePolicy, staging: Path) -> ShardPlan:
    staging.mkdir(exist_ok=True)
    with disable_run_logger():
        return plan_shards.fn(source, policy, staging, series_per_shard=5)


def record(shard: int, attempt: str, fingerprint: str) -> ShardRecord:
    return ShardRecord(shard=shard, attempt=attempt, worker="w", host="h", pid=1, counts=SeriesCounts(ok=1),
                       output_rows=0, input_fingerprint=fingerprint, checkpoint_sha256="s", device="cpu",
                       precision="fp32", batch_size=1, inference_seconds=0.0, timings={})


def test_the_plan_covers_every_series_once(tmp_path: Path, source: FileSource, policy: SourcePolicy,
                                           frame: pd.DataFrame) -> None:
    result = plan(source, policy, tmp_path / "staging")
    ids = sorted(frame["unique_id"].unique())
    assert (result.series, result.shards) == (len(ids), -(-len(ids) // 5))
    assert result.map_path == tmp_path / "staging" / "shard_map.parquet"
    shard_map = pd.read_parquet(result.map_path)
    assert sorted(shard_map["unique_id"]) == ids, "every series once, no other"
    assert shard_map["shard"].between(0, result.shards - 1).all()
    counts = shard_map["shard"].value_counts().reindex(range(result.shards), fill_value=0).tolist()
    assert counts == result.sizes and sum(result.sizes) == len(ids)


def test_each_shard_stages_exactly_its_series_and_they_combine_into_the_input(
        tmp_path: Path, source: FileSource, policy: SourcePolicy, frame: pd.DataFrame) -> None:
    staging = tmp_path / "staging"
    result = plan(source, policy, staging)
    shard_map = pd.read_parquet(result.map_path)
    records = []
    for shard in range(result.shards):
        directory = attempt_dir(staging, shard, f"attempt-{shard}")
        with disable_run_logger():
            loaded = load_shard.fn(source, policy, result.map_path, shard, directory)
            path, fingerprint = loaded.path, loaded.fingerprint
        assert path == directory / "input.parquet" and pq.read_schema(path).equals(INPUT_SCHEMA)
        staged = pd.read_parquet(path)
        wanted = set(shard_map.loc[shard_map["shard"] == shard, "unique_id"])
        assert set(staged["unique_id"]) == wanted, f"shard {shard} staged other series"
        expected = frame[frame["unique_id"].isin(wanted)].reset_index(drop=True)
        assert len(staged) == len(expected), f"shard {shard} lost or added rows"
        assert fingerprint == input_fingerprint(expected) == input_fingerprint(staged)
        commit_attempt(directory, record(shard, f"attempt-{shard}", fingerprint))
        records.append(record(shard, f"attempt-{shard}", fingerprint))
    with disable_run_logger():
        combined = combine_shards.fn(staging, list(reversed(records)), "input", INPUT_SCHEMA)
    assert combined == staging / "input.parquet"
    whole = pd.read_parquet(combined)
    firsts = whole.drop_duplicates("unique_id")["unique_id"].map(shard_map.set_index("unique_id")["shard"])
    assert firsts.is_monotonic_increasing, "shards are combined in shard order, whatever order records come in"
    pd.testing.assert_frame_equal(whole.sort_values(["unique_id", "ds"], ignore_index=True), frame)


def test_a_file_outside_the_data_roots_is_refused(tmp_path: Path, source: FileSource, policy: SourcePolicy) -> None:
    narrow = SourcePolicy(data_roots=(SAMPLE.parent,))
    (tmp_path / "staging").mkdir()
    with disable_run_logger(), pytest.raises(InputDataError, match="outside the data roots"):
        plan_shards.fn(source, narrow, tmp_path / "staging", series_per_shard=5)
    assert not (tmp_path / "staging" / "shard_map.parquet").exists()
    result = plan(source, policy, tmp_path / "staging")
    with disable_run_logger(), pytest.raises(InputDataError, match="outside the data roots"):
        load_shard.fn(source, narrow, result.map_path, 0, tmp_path)
    assert not (tmp_path / "input.parquet").exists()
