"""Tests for include.dataset: reading and writing datasets by URI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.dataset import read_dataset, write_dataset


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
