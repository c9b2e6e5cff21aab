"""The shard tasks: plan a sharded run, load one shard, combine the shards' tables."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.params import CovariateParams
from pipeline.sharding import ShardPlan, ShardRecord, combine_tables, read_shard
from pipeline.sharding import plan_shards as plan
from pipeline.sources import Source, SourcePolicy
from tasks.load import LoadResult, stage_series
from tasks.secrets import with_secret_blocks

__all__ = ["combine_shards", "load_shard", "plan_shards"]


@task(name="plan-shards", cache_policy=NO_CACHE)
def plan_shards(source: Source, policy: SourcePolicy, staging: Path, *, series_per_shard: int,
                shards: int | None = None) -> ShardPlan:
    """Counts the source's series, picks the number of shards and stages the id -> shard map."""
    result = plan(source, with_secret_blocks(policy), staging, series_per_shard=series_per_shard, shards=shards)
    get_run_logger().info("Planned %d shards of %d series (%d to %d per shard)", result.shards, result.series,
                          min(result.sizes), max(result.sizes))
    return result


@task(name="load-shard", cache_policy=NO_CACHE)
def load_shard(source: Source, policy: SourcePolicy, map_path: Path, shard: int, directory: Path,
               covariates: CovariateParams | None = None) -> LoadResult:
    """Reads one shard into the canonical frame and stages it (with ``covariates``: its covariates too, as
    :func:`tasks.load.load_series` does for a whole job)."""
    policy = with_secret_blocks(policy)
    wanted = covariates if covariates is not None and covariates.enabled else None
    frame = read_shard(source, policy, map_path, shard, covariates=wanted.columns() if wanted else None)
    return stage_series(frame, directory, wanted, policy)


@task(name="combine-shards", cache_policy=NO_CACHE)
def combine_shards(staging: Path, records: list[ShardRecord], table: str, schema: pa.Schema) -> Path:
    """Streams one table of every committed attempt, in shard order, into ``<staging>/<table>.parquet``."""
    return combine_tables(staging, records, table, schema)
