"""Tables are written with exactly their contract's columns and types, or not at all."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.canonical import to_canonical
from pipeline.contracts import INPUT_SCHEMA, STATUS_SCHEMA
from pipeline.tables import forget_handed_over, read_staged, write_table


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


def test_a_handed_over_frame_is_read_once_from_memory_then_from_the_file(tmp_path: Path,
                                                                           sample_frame: pd.DataFrame) -> None:
    frame = to_canonical(sample_frame)
    path = write_table(frame, INPUT_SCHEMA, tmp_path / "input.parquet", hand_over=True)
    assert read_staged(path) is frame, "the next step gets the frame without reading the file"
    again = read_staged(path)
    assert again is not frame, "handed over once: a second reader reads the file"
    pd.testing.assert_frame_equal(again, frame)  # the file holds the same table, dtypes included


def test_a_handed_over_frame_is_not_used_once_its_file_changed_or_was_forgotten(tmp_path: Path,
                                                                                sample_frame: pd.DataFrame) -> None:
    frame = to_canonical(sample_frame)
    path = write_table(frame, INPUT_SCHEMA, tmp_path / "input.parquet", hand_over=True)
    write_table(frame.iloc[:3], INPUT_SCHEMA, tmp_path / "other.parquet").replace(path)  # someone else's file
    assert len(read_staged(path)) == 3, "the file as it is now, not the frame written before"
    write_table(frame, INPUT_SCHEMA, path, hand_over=True)
    forget_handed_over(tmp_path)
    assert read_staged(path) is not frame, "forgotten with its staging directory"
    write_table(frame, INPUT_SCHEMA, path, hand_over=True)
    forget_handed_over(tmp_path / "elsewhere")
    assert read_staged(path) is frame, "only frames under the given directory are forgotten"


def test_frames_waiting_for_a_reader_are_bounded(tmp_path: Path, sample_frame: pd.DataFrame) -> None:
    frame = to_canonical(sample_frame)
    paths = [write_table(frame, INPUT_SCHEMA, tmp_path / f"{k}.parquet", hand_over=True) for k in range(5)]
    assert read_staged(paths[0]) is not frame, "the oldest of five gave its place: read from its file"
    assert all(read_staged(path) is frame for path in paths[1:]), "the four latest wait in memory"


def test_only_a_frame_with_exactly_the_contract_columns_is_handed_over(tmp_path: Path,
                                                                       sample_frame: pd.DataFrame) -> None:
    frame = to_canonical(sample_frame).assign(note="extra")
    with pytest.raises(ValueError, match="must have the columns"):
        write_table(frame, INPUT_SCHEMA, tmp_path / "input.parquet", hand_over=True)
