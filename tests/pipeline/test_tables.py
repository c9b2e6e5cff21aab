"""Tables are written with exactly their contract's columns and types, or not at all."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.canonical import to_canonical
from pipeline.contracts import INPUT_SCHEMA, STATUS_SCHEMA
from pipeline.tables import write_table


def test_the_written_table_has_the_contract_schema_and_order(tmp_path: Path, sample_frame: pd.DataFrame) -> None:
    frame = to_canonical(sample_frame)
    shuffled = frame[["y", "ds", "unique_id"]].assign(note="dropped")  # other order, one extra column
    path = write_table(shuffled, INPUT_SCHEMA, tmp_path / "input.parquet")
    table = pq.read_table(path)
    assert table.schema == INPUT_SCHEMA, f"schema differs from the contract: {table.schema}"
    pd.testing.assert_frame_equal(table.to_pandas(), frame, check_dtype=False)  # types: the schema above


@pytest.mark.parametrize("missing", INPUT_SCHEMA.names)
def test_a_frame_missing_a_contract_column_is_refused(tmp_path: Path, sample_frame: pd.DataFrame,
                                                      missing: str) -> None:
    frame = to_canonical(sample_frame).drop(columns=[missing])
    with pytest.raises(KeyError, match=missing):
        write_table(frame, INPUT_SCHEMA, tmp_path / "input.parquet")
    assert not (tmp_path / "input.parquet").exists(), "nothing is written for a refused frame"


def test_a_column_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    status = pd.DataFrame({name: [None] for name in STATUS_SCHEMA.names})
    status["n_obs"] = ["many"]
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        write_table(status, STATUS_SCHEMA, tmp_path / "status.parquet")
    assert not (tmp_path / "status.parquet").exists()
