"""A shard run records why it failed in its attempt directory, so the parent decides on a retry by type."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.forecast_shard import forecast_shard
from forecast_model import EngineConfig, ResolvedCheckpoint
from pipeline.errors import InputDataError
from pipeline.sharding import SHARD_MAP
from pipeline.sources import FileSource, UrlSource
from tests.conftest import SAMPLE, make_run

pytestmark = pytest.mark.usefixtures("prefect_api")


def failure_of(staging: Path) -> dict[str, object]:
    (marker,) = staging.glob("shards/00000/*/_FAILURE.json")
    assert not list(marker.parent.glob("_SUCCESS.json")), "a failed attempt never commits"
    return json.loads(marker.read_text())


@pytest.mark.parametrize(("source", "planned", "error", "permanent"), [
    (UrlSource(url="http://127.0.0.1:9/x.csv"), True, InputDataError, True),  # a URL cannot be sharded: bad input
    (FileSource(path=str(SAMPLE)), False, FileNotFoundError, False),  # the shard map is gone: not the input's fault
])
def test_a_failed_shard_records_its_error_class_and_whether_a_retry_can_help(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint, source: FileSource | UrlSource, planned: bool,
        error: type, permanent: bool) -> None:
    staging = workspace / "staging"
    staging.mkdir()
    if planned:
        pq.write_table(pa.table({"unique_id": ["a"], "shard": pa.array([0], pa.int32())}), staging / SHARD_MAP)
    run = make_run(engine=EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu"),
                   output_root=workspace)
    with pytest.raises(error):
        forecast_shard(source, 0, str(staging), run)
    recorded = failure_of(staging)
    assert recorded["error"] == error.__name__ and recorded["permanent"] is permanent
    assert isinstance(recorded["message"], str) and len(recorded["message"]) <= 1000
