"""The catalog task: rebuild the BI catalog after a publish, warning instead of failing."""

from __future__ import annotations

from pathlib import Path

import duckdb
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from forecast_model.errors import shorten, shorten_names
from pipeline.catalog import CATALOG_FILE, build_catalog

__all__ = ["refresh_catalog"]


@task(name="refresh-catalog", cache_policy=NO_CACHE)
def refresh_catalog(root: Path) -> list[str]:
    """Rebuilds the BI catalog after a publish; returns warnings, never fails the run.

    The run's tables are already published when this runs, and another job's broken file must not make
    this job's run fail: files DuckDB cannot read are left out of the views, and a catalog that cannot be
    built at all is a warning. Either way the next run rebuilds the catalog from scratch.
    """
    logger = get_run_logger()
    try:
        path, skipped = build_catalog(root)
    except (duckdb.Error, OSError) as exc:
        warning = (f"The BI catalog {root / CATALOG_FILE} could not be rebuilt ({shorten(str(exc), 500)}); this run's "
                   "outputs are published and intact, and the previous catalog, if any, is unchanged. Fix the "
                   "cause; the next run rebuilds the catalog.")
        logger.warning(warning)
        return [warning]
    logger.info("Refreshed BI catalog %s", path)
    if not skipped:
        return []
    warning = (f"The BI catalog leaves out {len(skipped)} Parquet file(s) DuckDB cannot read: "
               f"{shorten_names(map(str, skipped), limit=5)}. Fix: delete them, or re-run their job for that "
               "as_of to publish them again; the next run rebuilds the catalog.")
    logger.warning(warning)
    return [warning]
