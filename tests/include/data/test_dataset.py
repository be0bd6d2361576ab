"""Tests for include.data.dataset: reading and writing datasets by URI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.data.dataset import read_dataset, write_dataset


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "when": pd.to_datetime(["2026-01-01T00:00:00Z"] * 2 + ["2026-01-02T12:30:00Z"] * 2),
            "n": np.array([1, 2, 3, 4], dtype=np.int64),
            "x": [0.1, 0.2 + 0.1, 1e-300, 123456.789],
            "region": ["north", "south", "north", "west"],
        }
    )


def test_parquet_round_trip_keeps_types(tmp_path: Path, frame: pd.DataFrame) -> None:
    uri = str(tmp_path / "sub" / "data.parquet")
    write_dataset(frame, uri)
    pd.testing.assert_frame_equal(read_dataset(uri), frame)


def test_file_uri_is_accepted(tmp_path: Path, frame: pd.DataFrame) -> None:
    uri = (tmp_path / "data.parquet").as_uri()
    assert uri.startswith("file://")
    write_dataset(frame, uri)
    pd.testing.assert_frame_equal(read_dataset(uri), frame)


def test_csv_round_trip_keeps_values(tmp_path: Path, frame: pd.DataFrame) -> None:
    uri = str(tmp_path / "data.csv")
    write_dataset(frame, uri)
    back = read_dataset(uri)
    assert list(back.columns) == list(frame.columns)
    # Floats parse back bit-exactly; timestamps come back as strings.
    np.testing.assert_array_equal(back["x"].to_numpy(), frame["x"].to_numpy())
    pd.testing.assert_series_equal(pd.to_datetime(back["when"], utc=True), frame["when"])
    pd.testing.assert_frame_equal(back.drop(columns="when"), frame.drop(columns="when"))


def test_csv_only_empty_fields_are_null(tmp_path: Path) -> None:
    uri = str(tmp_path / "data.csv")
    write_dataset(pd.DataFrame({"s": ["N/A", None, "nan", "ok"]}), uri)
    assert read_dataset(uri)["s"].tolist()[0] == "N/A"
    assert read_dataset(uri)["s"].isna().tolist() == [False, True, False, False]


def test_directory_dataset_includes_hive_partition_columns(tmp_path: Path, frame: pd.DataFrame) -> None:
    uri = str(tmp_path / "parts")
    write_dataset(frame, uri, partition_cols=["region"])
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["region=north", "region=south", "region=west"]
    back = read_dataset(uri)
    assert set(back.columns) == set(frame.columns)
    back = back[frame.columns].sort_values("id").reset_index(drop=True)
    back["region"] = back["region"].astype(object)
    pd.testing.assert_frame_equal(back, frame)


def test_unpartitioned_directory_round_trip(tmp_path: Path, frame: pd.DataFrame) -> None:
    uri = str(tmp_path / "plain")
    write_dataset(frame, uri)
    assert (tmp_path / "plain").is_dir()
    pd.testing.assert_frame_equal(read_dataset(uri).sort_values("id").reset_index(drop=True), frame)


def test_rewriting_a_directory_replaces_it(tmp_path: Path, frame: pd.DataFrame) -> None:
    uri = str(tmp_path / "parts")
    write_dataset(frame, uri, partition_cols=["region"])
    write_dataset(frame.iloc[:2], uri, partition_cols=["region"])
    assert sorted(read_dataset(uri)["id"]) == ["a", "b"]
    assert not (tmp_path / "parts" / "region=west").exists()


def test_directory_with_other_files_is_not_replaced(tmp_path: Path, frame: pd.DataFrame) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        write_dataset(frame, str(tmp_path))
    assert (tmp_path / "notes.txt").exists()


def test_missing_dataset_names_the_uri(tmp_path: Path) -> None:
    uri = str(tmp_path / "nope.parquet")
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_dataset(uri)


def test_unknown_format_names_the_uri(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "data.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="data.json"):
        read_dataset(str(path))
    with pytest.raises(ValueError, match="out.json"):
        write_dataset(frame, str(tmp_path / "out.json"))


def test_partition_cols_need_a_directory(tmp_path: Path, frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="data.parquet"):
        write_dataset(frame, str(tmp_path / "data.parquet"), partition_cols=["region"])


def test_other_schemes_are_rejected() -> None:
    with pytest.raises(ValueError, match="s3://bucket/data.parquet"):
        read_dataset("s3://bucket/data.parquet")


# --- The typed reader: every path reads the declared types --------------------------------------

from include.data.dataset import DatasetError, inspect_dataset  # noqa: E402
from include.data.fingerprint import dataset_fingerprint  # noqa: E402
from include.demo.datagen import COLUMN_TYPES, generate_batch  # noqa: E402

ZIP_TYPES = {"id": "string", "zip": "category", "n": "int"}


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    return generate_batch(400, seed=3)


def test_leading_zeros_stay_text_from_csv_and_partition_folders(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["a", "b", "c"], "zip": ["01234", "00501", "90210"], "n": [1, 2, 3]})
    write_dataset(frame, str(tmp_path / "z.csv"))
    write_dataset(frame, str(tmp_path / "z.parquet"))
    write_dataset(frame, str(tmp_path / "parts"), partition_cols=["zip"])
    for name in ("z.csv", "z.parquet", "parts"):
        back = read_dataset(str(tmp_path / name), ZIP_TYPES).sort_values("id", ignore_index=True)
        assert back["zip"].tolist() == ["01234", "00501", "90210"], name
        assert back["n"].dtype == np.int64, name
    stripped = frame.assign(zip=["1234", "501", "90210"])
    write_dataset(stripped, str(tmp_path / "stripped.parquet"))
    assert dataset_fingerprint(read_dataset(str(tmp_path / "z.csv"), ZIP_TYPES), ZIP_TYPES) != dataset_fingerprint(
        read_dataset(str(tmp_path / "stripped.parquet"), ZIP_TYPES), ZIP_TYPES)


def test_same_rows_same_fingerprint_from_csv_parquet_and_partitioned_folders(tmp_path: Path, demo: pd.DataFrame) -> None:
    write_dataset(demo, str(tmp_path / "d.parquet"))
    write_dataset(demo, str(tmp_path / "d.csv"))
    write_dataset(demo, str(tmp_path / "parts"), partition_cols=["region", "home_ownership"])
    expected = dataset_fingerprint(demo, COLUMN_TYPES)
    frames = {name: read_dataset(str(tmp_path / name), COLUMN_TYPES) for name in ("d.parquet", "d.csv", "parts")}
    for name, back in frames.items():
        assert dataset_fingerprint(back, COLUMN_TYPES) == expected, name
        assert list(back.columns) == list(COLUMN_TYPES), name  # declaration order, partition keys included
        assert str(back["applied_at"].dtype) == "datetime64[ns, UTC]", name  # the CSV's text is parsed
    pd.testing.assert_frame_equal(frames["d.csv"], frames["d.parquet"])


def test_zero_row_file_first_in_a_folder_is_skipped(tmp_path: Path, demo: pd.DataFrame) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    demo.iloc[:0].to_parquet(folder / "a-empty.parquet", index=False)  # text columns get the null type
    demo.to_parquet(folder / "b.parquet", index=False)
    back = read_dataset(str(folder), COLUMN_TYPES)
    pd.testing.assert_frame_equal(back, demo.reset_index(drop=True), check_dtype=False)
    plan = inspect_dataset(str(folder), COLUMN_TYPES)
    assert [f.path.name for f in plan.files] == ["b.parquet"] and [p.name for p in plan.skipped] == ["a-empty.parquet"]


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_a_file_that_disagrees_is_refused_whatever_the_file_order(tmp_path: Path, demo: pd.DataFrame, order) -> None:
    text_age = tmp_path / "text_age"
    extra = tmp_path / "extra"
    lacking = tmp_path / "lacking"
    for folder in (text_age, extra, lacking):
        folder.mkdir()
    good, bad = order
    demo.to_parquet(text_age / f"{good}.parquet", index=False)
    demo.assign(age=demo["age"].astype(str)).to_parquet(text_age / f"{bad}.parquet", index=False)
    demo.to_parquet(extra / f"{good}.parquet", index=False)
    demo.assign(score=1.0).to_parquet(extra / f"{bad}.parquet", index=False)
    demo.to_parquet(lacking / f"{good}.parquet", index=False)
    demo.drop(columns="region").to_parquet(lacking / f"{bad}.parquet", index=False)

    with pytest.raises(DatasetError, match=rf"{bad}\.parquet: column 'age' is text \(string\), declared int"):
        read_dataset(str(text_age), COLUMN_TYPES)
    with pytest.raises(DatasetError, match=rf"{bad}\.parquet: column 'score' is not declared"):
        read_dataset(str(extra), COLUMN_TYPES)
    with pytest.raises(DatasetError, match=rf"{bad}\.parquet: missing declared column\(s\) \['region'\]"):
        read_dataset(str(lacking), COLUMN_TYPES)


def test_numbers_where_text_is_declared_and_fractions_in_int_columns_are_refused(tmp_path: Path) -> None:
    pd.DataFrame({"id": ["a"], "zip": [1234], "n": [1]}).to_parquet(tmp_path / "zip_int.parquet")
    with pytest.raises(DatasetError, match=r"zip_int\.parquet: column 'zip' is int64, declared category"):
        read_dataset(str(tmp_path / "zip_int.parquet"), ZIP_TYPES)
    pd.DataFrame({"id": ["a", "b"], "zip": ["1", "2"], "n": [1.0, 2.5]}).to_parquet(tmp_path / "frac.parquet")
    with pytest.raises(DatasetError, match=r"frac\.parquet: column 'n'.*declared type int"):
        read_dataset(str(tmp_path / "frac.parquet"), ZIP_TYPES)
    # Whole numbers stored as float (pandas does that to an int column with nulls) lose nothing.
    pd.DataFrame({"id": ["a", "b"], "zip": ["1", "2"], "n": [1.0, None]}).to_parquet(tmp_path / "whole.parquet")
    assert read_dataset(str(tmp_path / "whole.parquet"), ZIP_TYPES)["n"].tolist() == [1, pd.NA]


def test_csv_values_that_do_not_parse_are_named_with_their_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,zip,n\na,01234,1\nb,00501,4x\nc,1,2\n")
    with pytest.raises(DatasetError, match=r"bad\.csv: column 'n': 1 value\(s\) are not whole numbers, e.g. row 2: '4x'"):
        read_dataset(str(path), ZIP_TYPES)
    stamps = tmp_path / "stamps.csv"
    stamps.write_text("id,when\na,2026-01-01T00:00:00Z\nb,yesterday\n")
    with pytest.raises(DatasetError, match=r"'when'.*ISO 8601.*'yesterday'"):
        read_dataset(str(stamps), {"id": "string", "when": "timestamp"})


def test_csv_header_problems_are_named(tmp_path: Path) -> None:
    duplicated = tmp_path / "dup.csv"
    duplicated.write_text("id,zip,zip,n\na,1,2,3\n")
    with pytest.raises(DatasetError, match=r"dup\.csv: the header has duplicated column name\(s\) \['zip'\]"):
        read_dataset(str(duplicated), ZIP_TYPES)
    undeclared = tmp_path / "undeclared.csv"
    undeclared.write_text("id,zip,n,colour\na,1,2,red\n")
    with pytest.raises(DatasetError, match=r"\['colour'\].*not declared"):
        read_dataset(str(undeclared), ZIP_TYPES)
    assert list(read_dataset(str(undeclared), ZIP_TYPES, extra="ignore").columns) == ["id", "zip", "n"]


def test_partition_keys_are_typed_by_the_declaration_and_undeclared_ones_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "zip": ["07", "08"], "n": [1, 2], "day": ["2026-01-01", "2026-01-02"]})
    write_dataset(frame, str(tmp_path / "by_n"), partition_cols=["n"])
    with pytest.raises(DatasetError, match=r"column 'day' is not declared"):
        read_dataset(str(tmp_path / "by_n"), ZIP_TYPES)
    back = read_dataset(str(tmp_path / "by_n"), {**ZIP_TYPES, "day": "string"}).sort_values("id", ignore_index=True)
    assert back["n"].tolist() == [1, 2] and back["n"].dtype == np.int64
    write_dataset(frame.drop(columns="day"), str(tmp_path / "by_zip"), partition_cols=["zip"])
    assert sorted(read_dataset(str(tmp_path / "by_zip"), ZIP_TYPES)["zip"]) == ["07", "08"]
    write_dataset(frame, str(tmp_path / "by_day"), partition_cols=["day"])
    with pytest.raises(DatasetError, match=r"partition key 'day' is not a declared column"):
        read_dataset(str(tmp_path / "by_day"), ZIP_TYPES)
    assert "day" not in read_dataset(str(tmp_path / "by_day"), ZIP_TYPES, extra="ignore").columns
    by_day = read_dataset(str(tmp_path / "by_day"), {**ZIP_TYPES, "day": "timestamp"}).sort_values("id", ignore_index=True)
    assert by_day["day"].tolist() == [pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-01-02", tz="UTC")]
    (tmp_path / "by_day" / "day=someday").mkdir()
    frame.drop(columns="day").to_parquet(tmp_path / "by_day" / "day=someday" / "x.parquet")
    with pytest.raises(DatasetError, match=r"day=someday.*partition folder.*ISO 8601"):
        read_dataset(str(tmp_path / "by_day"), {**ZIP_TYPES, "day": "timestamp"})


def test_corrupt_parquet_is_a_dataset_error_naming_the_file(tmp_path: Path, demo: pd.DataFrame) -> None:
    good = tmp_path / "good.parquet"
    write_dataset(demo, str(good))
    raw = good.read_bytes()
    middle = len(raw) // 2
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(raw[:middle] + bytes(2000) + raw[middle + 2000:])
    with pytest.raises(DatasetError, match=r"broken\.parquet"):
        read_dataset(str(broken), COLUMN_TYPES)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "not-parquet.parquet").write_text("hello")
    with pytest.raises(DatasetError, match=r"not-parquet\.parquet as Parquet"):
        read_dataset(str(tmp_path / "folder"), COLUMN_TYPES)


def test_a_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("id,zip,n\na,01234,1\n".encode("utf-8-sig"))
    assert read_dataset(str(path), ZIP_TYPES).to_dict("records") == [{"id": "a", "zip": "01234", "n": 1}]


def test_a_folder_of_zero_row_files_reads_as_no_rows_with_every_declared_column(tmp_path: Path, demo) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    demo.iloc[:0].to_parquet(folder / "a.parquet", index=False)
    back = read_dataset(str(folder), COLUMN_TYPES)
    assert len(back) == 0 and list(back.columns) == list(COLUMN_TYPES)
    assert str(back["applied_at"].dtype) == "datetime64[ns, UTC]"


def test_csv_bools_with_nulls_read_as_nullable_booleans(tmp_path: Path) -> None:
    path = tmp_path / "flags.csv"
    path.write_text("id,ok\na,true\nb,\nc,0\nd,TRUE\n")
    back = read_dataset(str(path), {"id": "string", "ok": "bool"})
    assert str(back["ok"].dtype) == "boolean"
    assert back["ok"].tolist() == [True, pd.NA, False, True]
