"""Parsing CSV/Parquet bytes and mapping long and wide frames to the canonical frame; errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.canonical import HEADER_LIMIT, ColumnMapping, parse_bytes, to_canonical
from pipeline.contracts import DS, ID, Y
from pipeline.errors import InputDataError


def test_long_format_with_custom_column_names(sample_frame: pd.DataFrame) -> None:
    renamed = sample_frame.rename(columns={"unique_id": "series", "ds": "quarter", "y": "value"})
    raw = renamed.sample(frac=1, random_state=0)
    frame = to_canonical(raw, "long", ColumnMapping(id_col="series", time_col="quarter", target_col="value"))
    assert list(frame.columns) == [ID, DS, Y]
    assert frame[ID].nunique() == 12 and len(frame) == len(sample_frame)
    assert str(frame[DS].dtype) == "datetime64[us]" and frame[Y].dtype == "float64"
    assert frame.equals(frame.sort_values([ID, DS], ignore_index=True)), "canonical frame must be sorted"
    cpi = frame[frame[ID] == "cpi"]
    assert cpi[DS].iloc[0] == pd.Timestamp("1959-01-01") and cpi[Y].iloc[0] == pytest.approx(28.98)


def test_wide_format_with_custom_time_column(sample_frame: pd.DataFrame) -> None:
    wide = sample_frame.pivot(index="ds", columns="unique_id", values="y").reset_index().rename(columns={"ds": "date"})
    frame = to_canonical(wide, "wide", ColumnMapping(time_col="date"))
    expected = to_canonical(sample_frame)
    pd.testing.assert_frame_equal(frame, expected)


def test_parse_csv_and_parquet_bytes(tmp_path: Path, sample_frame: pd.DataFrame) -> None:
    sample_frame.to_parquet(tmp_path / "in.parquet")
    assert len(parse_bytes(sample_frame.to_csv(index=False).encode(), "csv", "x")) == len(sample_frame)
    assert len(parse_bytes((tmp_path / "in.parquet").read_bytes(), "parquet", "x")) == len(sample_frame)


def test_missing_column_names_it_and_the_fix(sample_frame: pd.DataFrame) -> None:
    with pytest.raises(InputDataError, match=r"columns are missing: \['y'\].*--target-col"):
        to_canonical(sample_frame.rename(columns={"y": "value"}))


def test_unparseable_timestamp_names_column_row_and_series(sample_frame: pd.DataFrame) -> None:
    raw = sample_frame.copy()
    raw.loc[7, "ds"] = "not-a-date"
    with pytest.raises(InputDataError, match=r"Column 'ds' has 1 values that are not timestamps, "
                                             r"e.g. 'not-a-date' \(row 7, series 'cpi'\)\. Fix"):
        to_canonical(raw)


def test_non_numeric_value_names_the_column(sample_frame: pd.DataFrame) -> None:
    raw = sample_frame.rename(columns={"y": "v"}).astype({"v": object})
    raw.loc[3, "v"] = "12,5"
    with pytest.raises(InputDataError, match=r"Column 'v' has 1 values that are not numbers.*'12,5'"):
        to_canonical(raw, columns=ColumnMapping(target_col="v"))


def test_mixed_timestamp_formats_are_parsed() -> None:
    raw = pd.DataFrame({"unique_id": ["a", "a"], "ds": ["2024-01-01", "2024-01-02 00:00:00"], "y": [1, 2]})
    assert to_canonical(raw)[DS].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")]


def test_timezone_aware_timestamps_become_utc() -> None:
    raw = pd.DataFrame({"unique_id": ["a"], "ds": ["2024-01-01T02:00:00+02:00"], "y": [1.0]})
    assert to_canonical(raw)[DS].iloc[0] == pd.Timestamp("2024-01-01 00:00")


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (b"", "csv", "is empty"),
        (b"<!DOCTYPE html><html><body>login</body></html>", "csv", "is an HTML page"),
        ("unique_id,ds,y\nmünchen,2024-01-01,1\n".encode("latin-1"), "csv", "is not UTF-8 text"),
        (b"unique_id;ds;y\na;2024-01-01;1\n", "csv", "seems to use ';' as separator"),
        (b"PAR1garbage", "parquet", "is not a readable Parquet file"),
    ],
)
def test_unreadable_content_is_named(data: bytes, kind: str, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        parse_bytes(data, kind, "src")  # type: ignore[arg-type]


def test_header_only_and_empty_ids() -> None:
    with pytest.raises(InputDataError, match="header but no data rows"):
        to_canonical(parse_bytes(b"unique_id,ds,y\n", "csv", "src"))
    with pytest.raises(InputDataError, match=r"id column has 1 empty values \(rows \[1\]\)"):
        to_canonical(pd.DataFrame({"unique_id": ["a", None], "ds": ["2024-01-01"] * 2, "y": [1, 2]}))


def test_daylight_saving_offsets_convert_to_utc() -> None:
    raw = pd.DataFrame({"unique_id": ["a", "a"], "ds": ["2024-03-30T12:00+01:00", "2024-04-01T12:00+02:00"],
                        "y": [1.0, 2.0]})
    assert to_canonical(raw)["ds"].tolist() == [pd.Timestamp("2024-03-30 11:00"), pd.Timestamp("2024-04-01 10:00")]


# Hostile content: refused early, quoted in bounded messages.

@pytest.mark.parametrize(("data", "message"), [
    (b"\0" * (HEADER_LIMIT + 1), "not a CSV file: its first line \\(the header\\) does not end within the first "
                                 "16 MiB"),
    (b"\0" * (3 << 20), "not a CSV file: its header holds NUL bytes"),
    (b"x" * (HEADER_LIMIT + 1) + b"\n1\n", "does not end within the first 16 MiB"),
    (b"unique_id,ds\0\0,y\n" + b"\0" * (1 << 20), "not a CSV file: its header holds NUL bytes"),
], ids=["NUL bytes", "NUL bytes, shorter", "one long line", "NUL bytes in the header"])
def test_binary_content_is_refused_from_its_first_bytes(data: bytes, message: str) -> None:
    with pytest.raises(InputDataError, match=message) as caught:
        parse_bytes(data, "csv", "src")
    assert len(str(caught.value)) < 400, "the message must not quote the content"


def test_messages_quote_input_within_bounds() -> None:
    huge = "x" * 100_000  # a cell of 100 KB; the header parser refuses names over 128 KB
    cases = {
        "column name": f"{huge},ds,y\na,2024-01-01,1\n",
        "timestamp": f"unique_id,ds,y\n{huge},{huge},1\n",
        "value": f"unique_id,ds,y\na,2024-01-01,{huge}\n",
        "ragged row": f"unique_id,ds,y\na,{huge}\n",
        "duplicated header": f"{huge},{huge}\n1,2\n",
    }
    for case, text in cases.items():
        with pytest.raises(InputDataError) as caught:
            to_canonical(parse_bytes(text.encode(), "csv", "src", ("unique_id", "ds")))
        assert len(str(caught.value)) < 2000, f"{case}: message of {len(str(caught.value))} characters"
        assert "more characters" in str(caught.value), f"{case}: the cut must be said"


# Ids are text.

def test_csv_ids_stay_text() -> None:
    data = b"unique_id,ds,y\n007,2024-01-01,1\n0042,2024-01-01,2\n7,2024-01-01,3\n007,2024-01-02,4\n"
    frame = to_canonical(parse_bytes(data, "csv", "src", ColumnMapping().text_columns("long")))
    assert frame.groupby(ID).size().to_dict() == {"0042": 1, "007": 2, "7": 1}, "007, 0042 and 7 are three series"


def test_parquet_ids_keep_their_type_as_text(tmp_path: Path) -> None:
    raw = pd.DataFrame({"unique_id": [7, 42], "ds": ["2024-01-01"] * 2, "y": [1.0, 2.0]})
    raw.to_parquet(tmp_path / "ids.parquet")
    frame = to_canonical(parse_bytes((tmp_path / "ids.parquet").read_bytes(), "parquet", "src", ("unique_id",)))
    assert frame[ID].tolist() == ["42", "7"]


# Integer time columns: 4-digit years, or refused.

def _parquet(tmp_path: Path, ds: object) -> pd.DataFrame:
    pd.DataFrame({"unique_id": "a", "ds": ds, "y": [1.0, 2.0]}).to_parquet(tmp_path / "t.parquet")
    return parse_bytes((tmp_path / "t.parquet").read_bytes(), "parquet", "src")


@pytest.mark.parametrize("ds", [
    pd.array([1990, 1991], dtype="int64"), pd.array([1990.0, 1991.0], dtype="float64"),
    pd.array([1990, 1991], dtype="Int32"), pd.array([1990, 1991], dtype="uint16"),
], ids=["int64", "float64", "Int32", "uint16"])
def test_integer_years_are_yearly_periods(tmp_path: Path, ds: object) -> None:
    frame = to_canonical(_parquet(tmp_path, ds))
    assert frame[DS].tolist() == [pd.Timestamp("1990-01-01"), pd.Timestamp("1991-01-01")]


def test_year_text_and_python_years_are_yearly_periods() -> None:
    csv = to_canonical(parse_bytes(b"unique_id,ds,y\na,1990,1\na,1991,2\n", "csv", "src", ("unique_id", "ds")))
    objects = to_canonical(pd.DataFrame({"unique_id": ["a"] * 3, "ds": pd.Series([1990, "1991", None], dtype=object),
                                         "y": [1.0, 2.0, 3.0]}))
    assert csv[DS].tolist() == [pd.Timestamp("1990-01-01"), pd.Timestamp("1991-01-01")]
    assert objects[DS].tolist()[:2] == [pd.Timestamp("1990-01-01"), pd.Timestamp("1991-01-01")]


@pytest.mark.parametrize(("ds", "shown"), [
    (pd.array([1_700_000_000, 1_700_086_400], dtype="int64"), "integers \\(e.g. 1700000000\\)"),
    (pd.array([1990.5, 1991.0], dtype="float64"), "numbers \\(e.g. 1990.5\\)"),
    (pd.array([999, 1000], dtype="int64"), "integers \\(e.g. 999\\)"),
], ids=["epoch seconds", "fractional", "3-digit"])
def test_other_numeric_time_columns_are_refused(tmp_path: Path, ds: object, shown: str) -> None:
    with pytest.raises(InputDataError, match=f"The time column 'ds' holds {shown}, not dates. Fix: give dates "
                                             r"\(2024-01-31\) or 4-digit years"):
        to_canonical(_parquet(tmp_path, ds))


@pytest.mark.parametrize(("value", "shown"), [("1700000000", "'1700000000'"), ("0042", "'0042'"), ("12", "'12'"),
                                              ("202401", "'202401'")])
def test_digit_text_other_than_years_and_yyyymmdd_is_refused(value: str, shown: str) -> None:
    data = f"unique_id,ds,y\na,2024-01-01,1\na,{value},2\n".encode()
    with pytest.raises(InputDataError, match=f"The time column 'ds' holds integers \\(e.g. {shown}\\), not dates"):
        to_canonical(parse_bytes(data, "csv", "src", ("unique_id", "ds")))


def test_yyyymmdd_text_still_parses() -> None:
    frame = to_canonical(parse_bytes(b"unique_id,ds,y\na,20240131,1\na,20240201,2\n", "csv", "src", ("ds",)))
    assert frame[DS].tolist() == [pd.Timestamp("2024-01-31"), pd.Timestamp("2024-02-01")]


def test_timestamps_as_values_are_refused() -> None:
    data = b"unique_id,ds,y\na,2024-01-01,2024-01-01 10:00:00\n"  # pyarrow types that column as timestamps
    with pytest.raises(InputDataError, match="Column 'y' holds timestamps, not numbers.*--target-col"):
        to_canonical(parse_bytes(data, "csv", "src", ("unique_id", "ds")))


# Rows of the wrong width and repeated header names.

@pytest.mark.parametrize(("data", "line", "fields"), [
    (b"unique_id,ds,y\na,2024-01-01,1\nb,2024-01-02\n", 3, 2),
    (b"unique_id,ds,y\na,2024-01-01,1\n\n   \nb,2024-01-02,3,4\n", 5, 4),
    (b'unique_id,ds,y\n"a,\nb",2024-01-01,1\nc,2024-01-02,"2"\nd\n', 5, 1),
    (b"unique_id,ds,y\r\na,2024-01-01,1\r\nb,2024-01-02\r\n", 3, 2),
    (b'unique_id,ds,y\na,2024-01-01,1\nb,"2024-01-02,2\nc,2024-01-03,3\n', 3, 2),
    (b"\xef\xbb\xbfunique_id,ds,y\n" + b"a,2024-01-01,1\n" * 300_000 + b"a,2024-01-01\n", 300_002, 2),
], ids=["short row", "long row after blank lines", "after a quoted line break", "CRLF", "unclosed quote",
        "after many rows"])
def test_rows_of_the_wrong_width_name_their_line(data: bytes, line: int, fields: int) -> None:
    with pytest.raises(InputDataError, match=f"^src: line {line} has {fields} fields?, the header has 3: .*Fix: "
                                             "give every row 3 fields"):
        parse_bytes(data, "csv", "src", ("unique_id", "ds"))


def test_a_repeated_header_name_is_refused() -> None:
    with pytest.raises(InputDataError, match="src has the column 'y' twice in its header. Fix: give each column"):
        parse_bytes(b"unique_id,ds,y,y\na,2024-01-01,1,2\n", "csv", "src")


def test_csv_semantics_are_kept() -> None:
    data = ('\ufeffunique_id,ds,y,,note\n'
            '007,2024-01-01,1.5,,"a, quoted\nnote"\n'
            '007,2024-01-02,,,\n'
            '"x,y",2024-01-01, 2 ,,""\n'
            '\n   \n').encode()
    frame = parse_bytes(data, "csv", "src", ("unique_id", "ds"))
    assert list(frame.columns) == ["unique_id", "ds", "y", "Unnamed: 3", "note"], "BOM dropped, unnamed named"
    assert frame["unique_id"].tolist() == ["007", "007", "x,y"] and frame["ds"].iloc[0] == "2024-01-01"
    assert frame["note"].iloc[0] == "a, quoted\nnote" and frame["note"].iloc[1:].isna().all()
    canonical = to_canonical(frame)
    assert canonical[Y].tolist()[:2] == [1.5, pytest.approx(float("nan"), nan_ok=True)]
    assert canonical.set_index(ID).loc["x,y", Y] == 2.0, "a number with spaces around it is still a number"


def test_rows_longer_than_a_parse_block_are_read() -> None:
    value = "1." + "0" * 600  # rows of 2.4 MB, over pyarrow's parse block of 1 MiB (it stops at "straddling")
    data = ("ds," + ",".join(f"s{i}" for i in range(4000)) + "\n" + "".join(
        f"2024-01-0{day}," + ",".join([value] * 4000) + "\n" for day in (1, 2))).encode()
    frame = to_canonical(parse_bytes(data, "csv", "src", ("ds",)), "wide")
    assert len(frame) == 8000 and frame[ID].nunique() == 4000 and (frame[Y] == 1.0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sort_canonical_orders_as_a_stable_pandas_sort_does(seed: int) -> None:
    """Arrow's sort (or no sort, for a sorted frame) gives the row order pandas' stable sort gave: ids by code
    point (non-ASCII, prefixes), then timestamps, empty timestamps last, equal keys in their input order."""
    from pipeline.canonical import sort_canonical

    rng = np.random.default_rng(seed)
    ids = rng.choice(["b", "a", "a1", "é", "Z", "ab", "😀", "a b"], size=400)
    stamps = pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 30, size=400), unit="D")
    frame = pd.DataFrame({"unique_id": pd.Series(ids, dtype="str"), "ds": stamps.astype("datetime64[us]"),
                          "y": np.arange(400, dtype="float64")})  # y tells rows with equal keys apart
    frame.loc[rng.choice(400, size=20, replace=False), "ds"] = pd.NaT
    expected = frame.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(sort_canonical(frame), expected)
    pd.testing.assert_frame_equal(sort_canonical(expected), expected)  # sorted, duplicates and NaT included
    unique = expected.dropna().drop_duplicates(["unique_id", "ds"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(sort_canonical(unique), unique)  # the no-sort path


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_series_codes_number_rows_by_their_sorted_id(order: str) -> None:
    from pipeline.canonical import series_codes

    ids = pd.Series(["a", "a", "a1", "ab", "ab", "é", "😀"], dtype="str")
    if order == "shuffled":
        ids = ids.sample(frac=1.0, random_state=3).reset_index(drop=True)
    codes, index = series_codes(ids)
    assert list(index) == ["a", "a1", "ab", "é", "😀"] and index.name == "unique_id"
    assert list(index[codes]) == list(ids), "each row's code points at its own id"
    chunked = pd.concat([ids.iloc[:3], ids.iloc[3:]], ignore_index=True)
    assert list(series_codes(chunked)[0]) == list(codes)
    empty_codes, empty_index = series_codes(ids.iloc[:0])
    assert len(empty_codes) == 0 and len(empty_index) == 0


def test_covariate_columns_are_kept_parsed_after_the_canonical_ones() -> None:
    raw = pd.DataFrame({"id": ["b", "a", "a"], "t": ["2024-01-02", "2024-01-02", "2024-01-01"], "v": [1, None, 3],
                        "price": ["1.5", "2", None], "promo": [1.0, np.nan, 0.0], "region": ["n", "s", "s"]})
    frame = to_canonical(raw, columns=ColumnMapping(id_col="id", time_col="t", target_col="v"),
                         covariates={"price": "numerical", "promo": "categorical", "region": "categorical"})
    assert frame.columns.tolist() == [ID, DS, Y, "price", "promo", "region"]
    assert frame[ID].tolist() == ["a", "a", "b"], "sorted with their rows"
    assert np.isnan(frame["price"].iloc[0]) and frame["price"].tolist()[1:] == [2.0, 1.5]
    assert frame["promo"].isna().tolist() == [False, True, False]
    assert frame["promo"].dropna().tolist() == ["0", "1"], "whole numbers are levels without a decimal part"
    assert frame["region"].tolist() == ["s", "s", "n"]


@pytest.mark.parametrize(("covariates", "layout", "message"), [
    ({"price": "numerical"}, "wide", "Covariates need the long format"),
    ({"y": "numerical"}, "long", r"Covariates \['y'\] name the id, time or target column"),
    ({"Price": "numerical"}, "long", r"Covariate columns \['Price'\] are not in the source.*case-sensitive"),
    ({"name": "numerical"}, "long", r"Column 'name' has 1 values that are not numbers, e\.g\. 'x'.*name the right "
                                    "column in covariates"),
])
def test_bad_covariate_columns_are_refused_with_the_fix(covariates: dict[str, str], layout: str,
                                                       message: str) -> None:
    raw = pd.DataFrame({"unique_id": ["a"], "ds": ["2024-01-01"], "y": [1.0], "price": [2.0], "name": ["x"]})
    if layout == "wide":
        raw = raw[["ds", "price"]]
    with pytest.raises(InputDataError, match=message):
        to_canonical(raw, layout, covariates=covariates)  # type: ignore[arg-type]
