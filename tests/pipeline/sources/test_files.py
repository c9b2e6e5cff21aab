"""File sources: single files and globs, confined to the data roots; hostile and special files refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from pipeline.canonical import to_canonical
from pipeline.contracts import ID
from pipeline.errors import InputDataError
from pipeline.sources import FileSource, SourcePolicy, read_source
from tests.conftest import REPO


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


# Hostile and special inputs: refused fast, in few words, without opening what is not a regular file.

_PROBE = """
import json, resource, sys, time
from pathlib import Path
from pipeline.errors import InputDataError
from pipeline.sources import FileSource, SourcePolicy, read_source
path = Path(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    read_source(FileSource(path=str(path)), SourcePolicy(data_roots=(path.parent,)))
    message = ""
except InputDataError as exc:
    message = str(exc)
print(json.dumps({"seconds": time.perf_counter() - started, "message": message,
                  "growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


@pytest.mark.parametrize(("header", "message"), [
    (b"", "is not a CSV file: its first line \\(the header\\) does not end within the first 16 MiB"),
    (b"unique_id,ds,y\n", "line 2 has 1 field, the header has 3"),
], ids=["no line end", "a header, then zeros"])
def test_a_file_of_nul_bytes_fails_fast_in_few_words(tmp_path: Path, header: bytes, message: str) -> None:
    path = tmp_path / "zeros.csv"
    with path.open("wb") as stream:  # 50 MiB of NUL bytes (a sparse file), without a line end
        stream.write(header)
        stream.truncate(50 << 20)
    # A fresh process, so that its peak memory is this read's alone.
    probe = subprocess.run([sys.executable, "-c", _PROBE, str(path)], cwd=REPO, capture_output=True, text=True,
                           timeout=300, check=True)
    result = json.loads(probe.stdout)
    assert re.search(message, result["message"]), result["message"]
    assert len(result["message"]) < 2000, f"a message of {len(result['message'])} characters"
    assert result["seconds"] < 10, f"took {result['seconds']:.1f} s"
    assert result["growth_mib"] < 5 * 50, f"peak memory grew by {result['growth_mib']:.0f} MiB for a 50 MiB file"


def _read_within(seconds: float, path: str, policy: SourcePolicy) -> BaseException | None:
    """Reads the source on a thread, so that a read that blocks (opening a FIFO) fails the test, not hangs it."""
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_source(FileSource(path=path), policy)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - handed to the test, which checks its type
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"reading {path} did not return within {seconds} s"
    return outcome[0]


@pytest.mark.parametrize(("kind", "message"), [
    ("directory", r"Input file .*/folder is a directory; give a file, or a glob such as .*/folder/\*\.csv\."),
    ("fifo", r"Input file .*/pipe\.csv is a named pipe \(FIFO\), not a regular file\. Fix: give a regular file"),
], ids=["directory", "fifo"])
def test_a_path_that_is_not_a_regular_file_says_what_it_is(root: Path, kind: str, message: str) -> None:
    if kind == "directory":
        target = root / "folder"
        target.mkdir()
    else:
        target = root / "pipe.csv"
        os.mkfifo(target)
    error = _read_within(10, str(target), SourcePolicy(data_roots=(root,)))
    assert isinstance(error, InputDataError) and re.search(message, str(error)), error


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_is_not_a_regular_file(device: str) -> None:
    error = _read_within(10, device, SourcePolicy(data_roots=(Path("/dev"),)))
    assert isinstance(error, InputDataError), error
    assert f"Input file {device} is a character device, not a regular file" in str(error), error


def test_a_glob_says_when_it_matches_only_directories_or_a_pipe(root: Path) -> None:
    (root / "2024.csv").mkdir()
    error = _read_within(10, str(root / "*.csv"), SourcePolicy(data_roots=(root,)))
    assert isinstance(error, InputDataError) and "matches only directories, such as" in str(error), error
    os.mkfifo(root / "parts" / "part-99.csv")
    error = _read_within(10, str(root / "parts" / "*.csv"), SourcePolicy(data_roots=(root,)))
    assert isinstance(error, InputDataError) and "part-99.csv is a named pipe (FIFO)" in str(error), error


# Ids are text on every CSV path.

def test_csv_ids_are_text_through_files_and_globs(root: Path) -> None:
    (root / "ids").mkdir()
    (root / "ids" / "a.csv").write_text("unique_id,ds,y\n007,2024-01-01,1\n0042,2024-01-01,2\n")
    (root / "ids" / "b.csv").write_text("unique_id,ds,y\n7,2024-01-01,3\n007,2024-01-02,4\n")
    policy = SourcePolicy(data_roots=(root,))
    frame = to_canonical(read_source(FileSource(path=str(root / "ids" / "*.csv")), policy))
    assert frame.groupby(ID).size().to_dict() == {"0042": 1, "007": 2, "7": 1}, "007, 0042 and 7 are three series"
    single = to_canonical(read_source(FileSource(path=str(root / "ids" / "a.csv")), policy))
    assert sorted(single[ID]) == ["0042", "007"]


def test_csv_and_parquet_in_one_glob_keep_ids_apart(root: Path) -> None:
    (root / "mixed").mkdir()
    (root / "mixed" / "a.csv").write_text("unique_id,ds,y\n007,2024-01-01,1\n")
    pd.DataFrame({"unique_id": [7], "ds": ["2024-01-01"], "y": [2.0]}).to_parquet(root / "mixed" / "b.parquet")
    frame = to_canonical(read_source(FileSource(path=str(root / "mixed" / "*")), SourcePolicy(data_roots=(root,))))
    assert sorted(frame[ID]) == ["007", "7"], "a Parquet integer id is its decimal text"


@pytest.mark.parametrize("path", ["file:///etc/data.csv", "FILE://x.csv", "s3://bucket/x.parquet"])
def test_a_path_with_a_url_scheme_is_refused_when_the_source_is_built(path: str) -> None:
    with pytest.raises(ValidationError, match=r"path names a URL scheme \((file|FILE|s3)://\).*drop the scheme"):
        FileSource(path=path)
