"""Shard planning and reading: a stable hash that SQL and Python agree on, and each shard read alone."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.canonical import to_canonical
from pipeline.errors import InputDataError
from pipeline.sharding import SHARD_PARTS, plan_shards, read_shard, shard_of, shard_sql
from pipeline.sources import DuckDBSource, FileSource, SourcePolicy, UrlSource
from tests.conftest import SAMPLE


@pytest.fixture
def policy(tmp_path: Path) -> SourcePolicy:
    return SourcePolicy(data_roots=(tmp_path, SAMPLE.parent))


def test_python_and_sql_agree_on_every_shard() -> None:
    ids = [f"S{i:04d}-P{i % 97}" for i in range(2000)] + ["", "ünïcode-✓", "it's", 'a "quoted" id', "x" * 300]
    expected = shard_of(ids, 7)
    with duckdb.connect() as con:
        got = con.execute(f"SELECT {shard_sql('id', 7)} FROM unnest(?) AS t(id)", [ids]).fetchnumpy()
    assert np.array_equal(next(iter(got.values())), expected)
    counts = np.bincount(shard_of(ids[:2000], 7))
    assert counts.min() > 2000 / 7 * 0.8, f"the hash should spread series evenly, got {counts}"
    assert np.array_equal(shard_of(ids, 7), expected), "the same id must land in the same shard every time"


def test_shards_partition_the_source_exactly(tmp_path: Path, policy: SourcePolicy) -> None:
    frame = to_canonical(pd.read_csv(SAMPLE))
    path = tmp_path / "panel.parquet"
    frame.to_parquet(path)
    plan = plan_shards(FileSource(path=str(path)), policy, tmp_path, series_per_shard=5)
    assert plan.shards == 3 and plan.series == 12 and sum(plan.sizes) == 12
    parts = [read_shard(FileSource(path=str(path)), policy, plan.map_path, k) for k in range(plan.shards)]
    for k, part in enumerate(parts):
        assert set(shard_of(part["unique_id"].unique(), 3)) <= {k}
        assert part["unique_id"].nunique() == plan.sizes[k]
    whole = pd.concat(parts).sort_values(["unique_id", "ds"], ignore_index=True)
    pd.testing.assert_frame_equal(whole, frame)


def test_csv_and_duckdb_sources_read_the_same_shard(tmp_path: Path, policy: SourcePolicy) -> None:
    frame = to_canonical(pd.read_csv(SAMPLE))
    database = tmp_path / "sales.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE m AS SELECT * FROM frame")
    csv = FileSource(path=str(SAMPLE))
    query = DuckDBSource(database=str(database), query="SELECT * FROM m WHERE ds >= ?", params=["1959-01-01"])
    plan = plan_shards(csv, policy, tmp_path, series_per_shard=100, shards=2)
    from_csv = read_shard(csv, policy, plan.map_path, 1)
    pd.testing.assert_frame_equal(from_csv, read_shard(query, policy, plan.map_path, 1))
    pd.testing.assert_frame_equal(from_csv, frame[frame["unique_id"].isin(from_csv["unique_id"])]
                                  .reset_index(drop=True))


@pytest.mark.parametrize(("source", "problem"), [
    (UrlSource(url="http://127.0.0.1:9/x.csv"), "is a URL"),
    (FileSource(path=str(SAMPLE), format="wide"), "is wide"),
    (FileSource(path="/etc/passwd"), "outside the data roots"),
])
def test_unshardable_sources_name_the_fix(tmp_path: Path, policy: SourcePolicy, source: object,
                                          problem: str) -> None:
    with pytest.raises(InputDataError, match=problem):
        plan_shards(source, policy, tmp_path, series_per_shard=10)  # type: ignore[arg-type]


# CSV read as text under the header's names, strictly; a time limit on every query; special paths.

def test_sharded_csv_keeps_ids_as_text(tmp_path: Path, policy: SourcePolicy) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("unique_id,ds,y\n007,2024-01-01,1\n0042,2024-01-01,2\n7,2024-01-01,3\n007,2024-01-02,4\n")
    plan = plan_shards(FileSource(path=str(path)), policy, tmp_path, series_per_shard=100, shards=1)
    assert plan.series == 3, "007, 0042 and 7 are three series"
    frame = read_shard(FileSource(path=str(path)), policy, plan.map_path, 0)
    assert frame.groupby("unique_id").size().to_dict() == {"0042": 1, "007": 2, "7": 1}


GOOD = "".join(f"s{i % 7},2024-01-{i % 28 + 1:02d},{i}\n" for i in range(3000))


@pytest.mark.parametrize(("content", "message"), [
    ("unique_id,ds,y\n" + GOOD + "s1,2024-01-01\n" + GOOD, r"CSV Error on Line: 3002.*Expected Number of Columns: 3 "
                                                           r"Found: 2"),
    ("unique_id,ds,y\n" + GOOD[:100] + "s1,2024-01-01,5,6\n", r"CSV Error on Line: \d+.*Found: 4"),
    ("unique_id,y,y\n" + GOOD, "has the column 'y' twice in its header"),
    ("\0" * (2 << 20), r"is not a CSV file: its header holds NUL bytes"),
], ids=["short row", "long row", "repeated header", "NUL bytes"])
def test_sharded_csv_refuses_what_the_plain_reader_refuses(tmp_path: Path, policy: SourcePolicy, content: str,
                                                           message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputDataError, match=message) as caught:
        plan_shards(FileSource(path=str(path)), policy, tmp_path, series_per_shard=10)
    assert len(str(caught.value)) < 2000


def test_sharded_csv_files_of_a_glob_share_a_header(tmp_path: Path, policy: SourcePolicy) -> None:
    (tmp_path / "a.csv").write_text("unique_id,ds,y\na,2024-01-01,1\n")
    (tmp_path / "b.csv").write_text("unique_id,ds,value\nb,2024-01-01,1\n")  # DuckDB would read it by position
    with pytest.raises(InputDataError, match=r"b\.csv has columns \['unique_id', 'ds', 'value'\], the first file has"):
        plan_shards(FileSource(path=str(tmp_path / "*.csv")), policy, tmp_path, series_per_shard=10)


SLOW = ("SELECT 'a' AS unique_id, DATE '2024-01-01' AS ds, count(*)::DOUBLE AS y "
        "FROM range(1000000000) AS a, range(1000000000) AS b")


def test_sharded_queries_are_interrupted_after_the_time_limit(tmp_path: Path) -> None:
    database = tmp_path / "slow.duckdb"
    duckdb.connect(str(database)).close()
    source = DuckDBSource(database=str(database), query=SLOW)
    policy = SourcePolicy(data_roots=(tmp_path,), query_timeout=0.5)
    pq.write_table(pa.table({"unique_id": ["a"], "shard": pa.array([0], pa.int32())}), tmp_path / "map.parquet")
    for step in (lambda: plan_shards(source, policy, tmp_path, series_per_shard=10),
                 lambda: read_shard(source, policy, tmp_path / "map.parquet", 0)):
        started = time.monotonic()
        with pytest.raises(InputDataError, match=r"longer than 0\.5 s and was interrupted.*FORECAST_DUCKDB_TIMEOUT"):
            step()
        assert time.monotonic() - started < 30, "the query must stop soon after its time limit"


@pytest.mark.parametrize("kind", ["database directory", "database fifo", "file fifo"])
def test_sharded_sources_that_are_not_regular_files(tmp_path: Path, policy: SourcePolicy, kind: str) -> None:
    path = tmp_path / ("db.duckdb" if kind.startswith("database") else "pipe.csv")
    if kind.endswith("directory"):
        path.mkdir()
    else:
        os.mkfifo(path)
    source = DuckDBSource(database=str(path), table="t") if kind.startswith("database") else FileSource(path=str(path))
    expected = "is a directory" if kind.endswith("directory") else r"is a named pipe \(FIFO\), not a regular file"
    with pytest.raises(InputDataError, match=expected):
        plan_shards(source, policy, tmp_path, series_per_shard=10)


# A file source is split once by the plan; each shard reads its part, the same frame the per-shard query reads.

def test_a_file_source_is_split_once_and_each_part_reads_as_the_query_would(tmp_path: Path,
                                                                            policy: SourcePolicy) -> None:
    frame = to_canonical(pd.read_csv(SAMPLE))
    shuffled = frame.sample(frac=1.0, random_state=3)
    path = tmp_path / "panel.parquet"
    no_id = pa.table({"unique_id": pa.nulls(2, pa.large_string()), "ds": shuffled["ds"][:2], "y": [1.0, 2.0]})
    pq.write_table(pa.concat_tables([pa.Table.from_pandas(shuffled, preserve_index=False), no_id]), path)
    source = FileSource(path=str(path))
    plan = plan_shards(source, policy, tmp_path, series_per_shard=100, shards=16)
    assert (tmp_path / SHARD_PARTS).is_dir() and not (tmp_path / f"{SHARD_PARTS}.partial").exists()
    assert plan.sizes.count(0) > 0, "16 shards of 12 series: some are empty"
    split = [read_shard(source, policy, plan.map_path, k) for k in range(plan.shards)]
    shutil.rmtree(tmp_path / SHARD_PARTS)
    for k, part in enumerate(split):
        pd.testing.assert_frame_equal(part, read_shard(source, policy, plan.map_path, k))
        assert part["unique_id"].nunique() == plan.sizes[k], f"shard {k}: its series, rows without an id in none"
    whole = pd.concat([part for part in split if len(part)]).sort_values(["unique_id", "ds"], ignore_index=True)
    pd.testing.assert_frame_equal(whole, frame)


def test_shards_read_the_source_as_it_was_planned(tmp_path: Path, policy: SourcePolicy) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("unique_id,ds,y\na,2024-01-01,1\nb,2024-01-01,2\n")
    source = FileSource(path=str(path))
    plan = plan_shards(source, policy, tmp_path, series_per_shard=100, shards=1)
    path.write_text("unique_id,ds,y\na,2024-01-01,10\nc,2024-01-01,30\n")  # changed while the job runs
    frame = read_shard(source, policy, plan.map_path, 0)
    assert frame[["unique_id", "y"]].values.tolist() == [["a", 1.0], ["b", 2.0]]


def test_a_split_that_fails_stages_no_parts(tmp_path: Path, policy: SourcePolicy) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("unique_id,ds,y\na,2024-01-01,1\n")
    (tmp_path / SHARD_PARTS).write_text("a file where the parts' directory goes")  # the split cannot publish
    with pytest.raises(OSError):
        plan_shards(FileSource(path=str(path)), policy, tmp_path, series_per_shard=100)
    assert (tmp_path / SHARD_PARTS).is_file()
