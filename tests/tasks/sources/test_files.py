"""File sources: single files and globs, confined to the data roots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.errors import InputDataError
from tasks.sources import FileSource, SourcePolicy, read_source


@pytest.fixture
def root(tmp_path: Path, sample_frame: pd.DataFrame) -> Path:
    parts = tmp_path / "data" / "parts"
    parts.mkdir(parents=True)
    for index, (_, group) in enumerate(sample_frame.groupby("unique_id")):
        writer = group.to_parquet if index % 2 else group.to_csv
        writer(parts / f"part-{index:02d}.{'parquet' if index % 2 else 'csv'}", index=False)
    return tmp_path / "data"


def test_glob_reads_every_matching_file(root: Path) -> None:
    policy = SourcePolicy(data_roots=(root,))
    frame = read_source(FileSource(path=str(root / "parts" / "*")), policy)
    assert len(frame) == 2436 and frame["unique_id"].nunique() == 12
    assert len(read_source(FileSource(path=str(root / "**" / "*.parquet")), policy)) == 6 * 203


@pytest.mark.parametrize("path", ["../outside.csv", "parts/../../outside.csv", "/etc/passwd"])
def test_paths_outside_the_data_roots_are_refused(root: Path, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (root.parent / "outside.csv").write_text("unique_id,ds,y\na,2024-01-01,1\n")
    monkeypatch.chdir(root)
    with pytest.raises(InputDataError, match="is outside the data roots.*FORECAST_DATA_ROOTS"):
        read_source(FileSource(path=path), SourcePolicy(data_roots=(root,)))


def test_symlink_out_of_a_root_is_refused(root: Path) -> None:
    (root.parent / "secret.csv").write_text("unique_id,ds,y\n")
    (root / "link.csv").symlink_to(root.parent / "secret.csv")
    with pytest.raises(InputDataError, match="outside the data roots"):
        read_source(FileSource(path=str(root / "link.csv")), SourcePolicy(data_roots=(root,)))


def test_glob_matching_nothing(root: Path) -> None:
    with pytest.raises(InputDataError, match="No file matches"):
        read_source(FileSource(path=str(root / "*.xlsx")), SourcePolicy(data_roots=(root,)))


def test_files_of_a_glob_must_share_columns(root: Path) -> None:
    (root / "parts" / "part-99.csv").write_text("id,ds,value\na,2024-01-01,1\n")
    with pytest.raises(InputDataError, match="part-99.csv has columns"):
        read_source(FileSource(path=str(root / "parts" / "*.csv")), SourcePolicy(data_roots=(root,)))


def test_unsupported_extension_and_missing_file(root: Path) -> None:
    (root / "x.xlsx").write_bytes(b"x")
    policy = SourcePolicy(data_roots=(root,))
    with pytest.raises(InputDataError, match="Unsupported file type '.xlsx'"):
        read_source(FileSource(path=str(root / "x.xlsx")), policy)
    with pytest.raises(InputDataError, match="does not exist"):
        read_source(FileSource(path=str(root / "none.csv")), policy)
