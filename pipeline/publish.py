"""The output tree: checked output root, per-run staging, and atomic publishing per table and partition."""

from __future__ import annotations

import getpass
import os
import shutil
from pathlib import Path

from forecast_model.errors import path_kind
from pipeline.errors import OutputRootError
from pipeline.tables import forget_handed_over

__all__ = ["DATA_FILE", "check_output_root", "discard_staging", "fresh_dir", "partition_dir", "publish_tables",
           "staging_dir", "withdraw_partitions"]

DATA_FILE = "data.parquet"


def check_output_root(root: Path) -> Path:
    """``root`` if it is a directory this process can write, or one it can create; a clear error otherwise.

    Checked when a run starts, before any work, so a wrong output root fails in a second, not after inference.
    """
    if root.exists() and not root.is_dir():
        raise OutputRootError(f"The output root {root} is {path_kind(root)}, not a directory. Fix: give a "
                              "directory (it is created if missing) as output_root / --output-root, or set "
                              "FORECAST_OUTPUT_ROOT.")
    existing = next(parent for parent in (root, *root.parents) if parent.exists())
    if not existing.is_dir():
        raise OutputRootError(f"The output root {root} cannot be created: {existing} is {path_kind(existing)}. Fix: "
                              "give a directory as output_root / --output-root.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputRootError(f"The output root {root} is not writable: this user ({getpass.getuser()}) cannot "
                              f"write {existing}. Fix: give a writable directory, or grant write access.")
    return root


def staging_dir(output_root: Path, run_id: str) -> Path:
    """A private directory for one run, on the same filesystem as the outputs so publishing is a rename.

    A retried flow run keeps its id: whatever an earlier attempt left there (it crashed, or its machine was
    lost, before it could clean up) is removed, so the retry starts from nothing and never publishes a
    table the dead attempt staged.
    """
    return fresh_dir(output_root / "_staging" / run_id)


def fresh_dir(path: Path) -> Path:
    """``path`` as a new empty directory: what an earlier attempt left there is removed first."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def partition_dir(output_root: Path, table: str, job: str, as_of: str) -> Path:
    """``<root>/<table>/job=<job>/as_of=<YYYY-MM-DD>``: one partition per job and logical date."""
    return output_root / table / f"job={job}" / f"as_of={as_of}"


def publish_tables(staging: Path, output_root: Path, job: str, as_of: str,
                    files: dict[str, str]) -> dict[str, Path]:
    """Moves each staged ``<table>.parquet`` over its partition file (``files`` maps table -> file name).

    Each move is one ``os.replace``: readers see the old file or the new one, never a mix, and a re-run
    for the same job and ``as_of`` replaces the file instead of adding one. Tables move in the order
    given, so put the run manifest (``runs``) last: once it is there, the run's data is too.
    """
    staged = {table: staging / f"{table}.parquet" for table in files}
    missing = [str(path) for path in staged.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"Nothing to publish, staged tables are missing: {missing}")
    published = {}
    for table, source in staged.items():
        target = partition_dir(output_root, table, job, as_of) / files[table]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        published[table] = target
    return published


def discard_staging(staging: Path) -> None:
    """Removes a run's staging directory, whatever it holds (called on success and on failure)."""
    forget_handed_over(staging)
    shutil.rmtree(staging, ignore_errors=True)


def withdraw_partitions(output_root: Path, job: str, as_of: str, tables: list[str]) -> list[Path]:
    """Removes the job's ``as_of`` partition file of each of ``tables``, where one exists; returns those removed.

    For a table a run may have nothing to publish to (monitoring): a re-run for the same job and ``as_of``
    that stages none of it must not leave the earlier run's partition standing as if it were its own.
    """
    removed = []
    for table in tables:
        target = partition_dir(output_root, table, job, as_of) / DATA_FILE
        if target.is_file():
            target.unlink()
            removed.append(target)
    return removed
