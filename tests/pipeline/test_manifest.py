"""The run manifest: what it records, a fingerprint that notices any changed row, and its staged files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from forecast_model import EngineConfig
from pipeline import manifest as manifest_module
from pipeline.accounting import SeriesCounts
from pipeline.canonical import to_canonical
from pipeline.contracts import RUNS_SCHEMA
from pipeline.manifest import (
    ModelInfo,
    RunManifest,
    StageTimer,
    build_manifest,
    input_fingerprint,
    package_versions,
    write_manifest,
)
from tests.conftest import SAMPLE, make_run

MODEL = ModelInfo(device="cpu", precision="fp32", checkpoint_sha256="ab" * 32)
COUNTS = SeriesCounts(ok=10, rejected=1, failed=1, by_reason={"constant": 1, "non_finite_forecast": 1})


def manifest(**overrides: object) -> RunManifest:
    run = make_run(run_id="run-7", job="macro", as_of=date(2026, 11, 26),
                   engine=EngineConfig(checkpoint="/models/tiny", device="cpu"))
    fields: dict[str, Any] = {"flow_name": "batch-forecast", "deployment": "nightly", "source": "file:data/x.csv",
                    "input_fingerprint": "f" * 64, "counts": COUNTS, "output_rows": 80, "model": MODEL,
                    "parameters": {"horizon": 8, "model": {"device": "cpu"}}, "timings": {"load": 0.5},
                    **overrides}
    return build_manifest(run, **fields)


def test_build_manifest_takes_identity_from_the_run_and_counts_from_their_model() -> None:
    built = manifest(shards=[{"shard": 0, "worker": "w1"}])
    assert (built.run_id, built.job, built.as_of) == ("run-7", "macro", "2026-11-26")
    assert built.checkpoint == "/models/tiny", "the checkpoint is the run's, not a default"
    assert (built.series_in, built.series_ok, built.series_rejected, built.series_failed) == (12, 10, 1, 1)
    assert built.rejected_by_reason == COUNTS.by_reason
    assert (built.device, built.precision, built.checkpoint_sha256) == ("cpu", "fp32", "ab" * 32)
    assert built.shards == [{"shard": 0, "worker": "w1"}]
    assert (built.mlflow_run_id, built.tracking_status, built.tracking_error) == (None, "pending", None), \
        "tracking fields are filled in only once MLflow has answered"
    assert set(built.versions) == set(manifest_module._PACKAGES)
    assert built.created_at.tzinfo is not None, "created_at must be timezone-aware (UTC)"
    assert manifest().shards == [], "a run without shards records an empty list, not None"


@pytest.fixture(scope="module")
def canonical() -> pd.DataFrame:
    return to_canonical(pd.read_csv(SAMPLE))


@pytest.mark.parametrize(("column", "change"), [
    ("unique_id", lambda v: v + "x"),
    ("ds", lambda v: v + pd.Timedelta(days=1)),
    ("y", lambda v: v + 1e-9),
], ids=["id", "timestamp", "value"])
def test_fingerprint_changes_with_any_one_changed_cell(canonical: pd.DataFrame, column: str,
                                                      change: Callable[[Any], Any]) -> None:
    before = input_fingerprint(canonical)
    for row in (0, len(canonical) // 2, len(canonical) - 1):
        edited = canonical.copy()
        edited.loc[row, column] = change(edited.loc[row, column])
        assert input_fingerprint(edited) != before, f"changing {column} in row {row} left the fingerprint as it was"


def test_fingerprint_is_stable_for_equal_rows_whatever_the_index(canonical: pd.DataFrame) -> None:
    fingerprint = input_fingerprint(canonical)
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0, "a SHA-256 hex digest"
    assert input_fingerprint(canonical.copy()) == fingerprint
    assert input_fingerprint(canonical.set_axis(range(100, 100 + len(canonical)))) == fingerprint, \
        "the index is not data"
    assert input_fingerprint(canonical.iloc[:-1]) != fingerprint, "a dropped row must change it"


def test_fingerprint_sees_where_ids_split_and_the_row_order_not_the_id_dtype(canonical: pd.DataFrame) -> None:
    day = pd.Timestamp("2024-01-01")
    two = pd.DataFrame({"unique_id": ["ab", "c"], "ds": [day, day], "y": [1.0, 2.0]})
    assert input_fingerprint(two) != input_fingerprint(two.assign(unique_id=["a", "bc"])), "same bytes, other ids"
    assert input_fingerprint(two) != input_fingerprint(two.iloc[::-1]), "reordered rows"
    fingerprint = input_fingerprint(canonical)
    for dtype in (object, "str", "string"):
        assert input_fingerprint(canonical.astype({"unique_id": dtype})) == fingerprint, dtype
    pieces = canonical.astype({"unique_id": "str"})
    pieces = pd.concat([pieces.iloc[:10], pieces.iloc[10:]], ignore_index=True)  # ids in two Arrow chunks
    assert input_fingerprint(pieces) == fingerprint
    tail = canonical.iloc[7:]  # a slice: its ids' Arrow buffers start at an offset
    assert input_fingerprint(tail) == input_fingerprint(tail.copy().reset_index(drop=True))
    gaps = canonical.copy()
    gaps.loc[[3, 9], "y"], gaps.loc[4, "ds"] = np.nan, pd.NaT
    assert input_fingerprint(gaps) == input_fingerprint(gaps.copy()) != fingerprint, "missing values hash alike"
    empty = canonical.iloc[:0]
    assert input_fingerprint(empty) == input_fingerprint(empty.copy()) != fingerprint


def test_package_versions_names_every_package_and_says_when_one_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = package_versions()
    assert versions["pandas"] == metadata.version("pandas") == pd.__version__
    assert list(versions) == list(manifest_module._PACKAGES)
    monkeypatch.setattr(manifest_module, "_PACKAGES", ("pandas", "no-such-package-xyz"))
    assert package_versions() == {"pandas": pd.__version__, "no-such-package-xyz": "not installed"}


def test_write_manifest_stages_one_runs_row_and_the_json(tmp_path: Path) -> None:
    built = manifest().model_copy(update={"mlflow_run_id": "m1", "tracking_status": "ok"})
    path = write_manifest(built, tmp_path)
    assert path == tmp_path / "runs.parquet"
    table = pq.read_table(path)
    assert table.schema == RUNS_SCHEMA, f"runs table schema differs from the contract: {table.schema}"
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert (row["run_id"], row["deployment"], row["mlflow_run_id"], row["tracking_error"]) == \
        ("run-7", "nightly", "m1", None)
    assert (row["series_in"], row["output_rows"]) == (12, 80)
    assert json.loads(row["rejected_by_reason"]) == COUNTS.by_reason
    assert json.loads(row["parameters"]) == {"horizon": 8, "model": {"device": "cpu"}}
    assert json.loads(row["versions"]) == built.versions and json.loads(row["shards"]) == []
    assert pd.Timestamp(row["created_at"]) == pd.Timestamp(built.created_at)
    record = json.loads((tmp_path / "_manifest.json").read_text())
    assert record == built.model_dump(mode="json"), "_manifest.json holds the whole manifest"
    assert RunManifest.model_validate(record) == built, "the JSON reads back as the same manifest"


def test_stage_timer_records_every_stage_even_one_that_raises() -> None:
    timer = StageTimer()
    with timer("load"):
        time.sleep(0.02)
    with pytest.raises(RuntimeError, match="boom"), timer("forecast"):
        raise RuntimeError("boom")
    assert list(timer.seconds) == ["load", "forecast"], "a failed stage is still timed"
    assert timer.seconds["load"] >= 0.02 and timer.seconds["forecast"] >= 0


def test_total_spans_the_data_stages_and_the_gaps_between_them_not_model_preparation() -> None:
    timer = StageTimer()
    with timer("prepare_model"):
        time.sleep(0.05)
    with timer("load"):
        time.sleep(0.02)
    time.sleep(0.03)  # work between stages (building the manifest, rendering the plot) counts too
    with timer("publish"):
        time.sleep(0.01)
    total = timer.record_total()
    assert timer.seconds["total"] == total
    assert 0.06 <= total < 0.06 + 0.05, "from load start to now, model preparation left out"
    assert StageTimer().record_total() == 0.0, "no data stage yet: nothing to total"
