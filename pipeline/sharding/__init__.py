"""Sharding a job: which series go to which shard and how a shard is read alone (``plan``), and where each
attempt at a shard leaves its results and how they are combined (``attempts``)."""

from pipeline.sharding.attempts import (
    ShardFailure,
    ShardRecord,
    attempt_dir,
    attempt_path,
    combine_tables,
    commit_attempt,
    job_fingerprint,
    job_model,
    read_attempt,
    read_failure,
    record_failure,
    worker_identity,
)
from pipeline.sharding.plan import SHARD_MAP, SHARD_PARTS, ShardPlan, plan_shards, read_shard, shard_of, shard_sql

__all__ = ["SHARD_MAP", "SHARD_PARTS", "ShardFailure", "ShardPlan", "ShardRecord", "attempt_dir", "attempt_path",
           "combine_tables", "commit_attempt", "job_fingerprint", "job_model", "plan_shards", "read_attempt",
           "read_failure", "read_shard", "record_failure", "shard_of", "shard_sql", "worker_identity"]
