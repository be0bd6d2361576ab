"""Tests for include.monitoring.inference_log: hour-partitioned Parquet of every prediction."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include import settings
from include.monitoring import inference_log
from include.monitoring.inference_log import log_predictions, partition_path, read_hour, read_range

MODEL = "credit_approval"
FEATURE_TYPES = {"age": "int", "annual_income": "float", "region": "category", "note": "string"}


def _features(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": np.arange(30, 30 + n, dtype=np.int64),
            "annual_income": np.linspace(40_000.5, 90_000.5, n),
            "region": pd.Categorical(["north", "south", "east"] * (n // 3) + ["west"] * (n % 3)),
            "note": [f"row {i}" for i in range(n)],
        }
    )


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def test_round_trip_keeps_values_and_types(tmp_path: Path) -> None:
    features = _features(3)
    ids = ["a", "b", "c"]
    log_predictions(
        MODEL, 7, "online", features, [0.1, 0.5, 0.9], request_ids=ids, ts="2026-01-01T05:10:00Z", latency_ms=2.5,
        root=tmp_path,
    )

    got = read_hour(MODEL, datetime(2026, 1, 1, 5, tzinfo=UTC), root=tmp_path)

    assert list(got.columns) == [
        "request_id",
        "ts",
        "model_name",
        "model_version",
        *features.columns,
        "prediction",
        "latency_ms",
        "role",
        "source",
    ]
    assert got["request_id"].tolist() == ids
    assert (got["ts"] == pd.Timestamp("2026-01-01T05:10:00Z")).all()
    assert str(got["ts"].dtype) == "datetime64[us, UTC]"
    assert set(got["model_name"]) == {MODEL} and set(got["model_version"]) == {"7"}
    assert set(got["source"]) == {"online"}
    assert got["prediction"].dtype == np.float64
    assert got["prediction"].tolist() == [0.1, 0.5, 0.9]
    assert got["latency_ms"].tolist() == [2.5, 2.5, 2.5]
    assert got["age"].dtype == np.int64 and got["annual_income"].dtype == np.float64
    expected = features.astype({"region": object})
    pd.testing.assert_frame_equal(got[list(features.columns)], expected)


def test_rows_are_partitioned_by_the_hour_of_their_timestamp(tmp_path: Path) -> None:
    stamps = ["2026-01-01T05:59:59.999Z", "2026-01-01T06:00:00Z", "2026-01-01 06:30"]  # naive = UTC
    written = log_predictions(MODEL, "1", "online", _features(3), [0.2, 0.3, 0.4], ts=stamps, root=tmp_path)

    assert sorted(p.parent for p in written) == [
        tmp_path / f"model={MODEL}" / "source=online" / "date=2026-01-01" / "hour=05",
        tmp_path / f"model={MODEL}" / "source=online" / "date=2026-01-01" / "hour=06",
    ]
    assert len(read_hour(MODEL, "2026-01-01T05:00Z", root=tmp_path)) == 1
    assert read_hour(MODEL, "2026-01-01T06:00Z", root=tmp_path)["prediction"].tolist() == [0.3, 0.4]
    both = read_range(MODEL, "2026-01-01T05:00Z", "2026-01-01T07:00Z", root=tmp_path)
    assert sorted(both["prediction"]) == [0.2, 0.3, 0.4]
    # A range that is not hour-aligned still returns exactly the rows inside it.
    assert read_range(MODEL, "2026-01-01T05:59:59Z", "2026-01-01T06:10Z", root=tmp_path)["prediction"].tolist() == [
        0.2,
        0.3,
    ]


def test_a_day_boundary_changes_the_date_partition(tmp_path: Path) -> None:
    written = log_predictions(
        MODEL,
        "1",
        "batch",
        _features(2),
        [0.1, 0.2],
        ts=["2026-01-01T23:59:00Z", "2026-01-02T00:01:00Z"],
        root=tmp_path,
    )
    assert sorted(p.parent.relative_to(tmp_path).as_posix() for p in written) == [
        f"model={MODEL}/source=batch/date=2026-01-01/hour=23",
        f"model={MODEL}/source=batch/date=2026-01-02/hour=00",
    ]


def test_timestamps_with_a_time_zone_are_stored_in_utc(tmp_path: Path) -> None:
    paris = pd.Series(pd.date_range("2026-07-01 08:00", periods=3, freq="min", tz="Europe/Paris"))
    (path,) = log_predictions(MODEL, "1", "online", _features(3), [0.1, 0.2, 0.3], ts=paris, root=tmp_path)

    assert path.parent == partition_path(MODEL, "online", "2026-07-01T06:00Z", tmp_path)
    got = read_hour(MODEL, "2026-07-01T06:00Z", root=tmp_path)
    assert got["ts"].tolist() == paris.dt.tz_convert("UTC").tolist()


def test_request_ids_default_to_fresh_uuid4(tmp_path: Path) -> None:
    log_predictions(MODEL, "1", "online", _features(6), np.full(6, 0.5), ts="2026-01-01T00:00Z", root=tmp_path)

    ids = read_hour(MODEL, "2026-01-01T00:00Z", root=tmp_path)["request_id"]
    assert ids.is_unique and len(ids) == 6
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_timestamp_defaults_to_now(tmp_path: Path) -> None:
    before = pd.Timestamp.now(tz="UTC")
    log_predictions(MODEL, "1", "online", _features(1), [0.5], root=tmp_path)
    got = read_range(MODEL, before.floor("h"), pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=1), root=tmp_path)
    assert len(got) == 1 and before.floor("us") <= got["ts"].iloc[0] <= pd.Timestamp.now(tz="UTC")


def test_two_column_probabilities_keep_the_positive_class(tmp_path: Path) -> None:
    proba = np.array([[0.9, 0.1], [0.25, 0.75]])
    log_predictions(MODEL, "1", "online", _features(2), proba, ts="2026-01-01T00:00Z", root=tmp_path)
    assert read_hour(MODEL, "2026-01-01T00:00Z", root=tmp_path)["prediction"].tolist() == [0.1, 0.75]


def test_an_hour_without_data_is_an_empty_frame_with_the_right_columns(tmp_path: Path) -> None:
    empty = read_hour(MODEL, "2030-01-01T00:00Z", root=tmp_path, features=FEATURE_TYPES)

    assert empty.empty
    assert list(empty.columns) == [
        "request_id",
        "ts",
        "model_name",
        "model_version",
        *FEATURE_TYPES,
        "prediction",
        "latency_ms",
        "role",
        "source",
    ]
    assert str(empty["ts"].dtype) == "datetime64[us, UTC]"
    assert empty["age"].dtype == np.int64 and empty["prediction"].dtype == np.float64
    assert list(read_hour(MODEL, "2030-01-01T00:00Z", root=tmp_path).columns) == [
        "request_id",
        "ts",
        "model_name",
        "model_version",
        "prediction",
        "latency_ms",
        "role",
        "source",
    ]


def test_feature_selection_and_the_source_filter(tmp_path: Path) -> None:
    hour = "2026-01-01T03:00Z"
    log_predictions(MODEL, "1", "online", _features(3), [0.1, 0.2, 0.3], ts=hour, root=tmp_path)
    log_predictions(MODEL, "1", "batch", _features(3), [0.4, 0.5, 0.6], ts=hour, root=tmp_path)

    both = read_hour(MODEL, hour, root=tmp_path, features={"region": "category", "age": "int"})
    assert list(both.columns) == [
        "request_id",
        "ts",
        "model_name",
        "model_version",
        "region",
        "age",
        "prediction",
        "latency_ms",
        "role",
        "source",
    ]
    assert sorted(both["source"].unique()) == ["batch", "online"]
    assert both["latency_ms"].isna().all()  # none given: null, as for batch rows
    assert read_hour(MODEL, hour, root=tmp_path, source="batch")["prediction"].tolist() == [0.4, 0.5, 0.6]
    with pytest.raises(ValueError, match="'missing'"):
        read_hour(MODEL, hour, root=tmp_path, features={"missing": "float"})


def test_a_read_opens_only_the_hours_asked_for(tmp_path: Path) -> None:
    log_predictions(MODEL, "1", "online", _features(1), [0.5], ts="2026-01-01T01:00Z", root=tmp_path)
    other = partition_path(MODEL, "online", "2026-01-01T02:00Z", tmp_path)
    other.mkdir(parents=True)
    (other / "corrupt.parquet").write_bytes(b"not parquet")  # would fail any read that touched it

    assert len(read_hour(MODEL, "2026-01-01T01:00Z", root=tmp_path)) == 1
    assert len(read_range(MODEL, "2026-01-01T00:00Z", "2026-01-01T02:00Z", root=tmp_path)) == 1


def test_concurrent_writers_never_collide(tmp_path: Path) -> None:
    def one_call(i: int) -> list[Path]:
        return log_predictions(MODEL, "1", "online", _features(3), [i / 100] * 3, ts="2026-01-01T09:30Z", root=tmp_path)

    with ThreadPoolExecutor(max_workers=8) as pool:
        written = [p for paths in pool.map(one_call, range(40)) for p in paths]

    assert len(written) == len(set(written)) == 40
    assert _files(tmp_path) == sorted(written)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp files left behind
    assert len(read_hour(MODEL, "2026-01-01T09:00Z", root=tmp_path)) == 120


def test_root_comes_from_the_argument_then_the_environment_then_modelops_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.INFERENCE_LOG.name, raising=False)
    monkeypatch.setenv("MODELOPS_HOME", str(tmp_path / "home"))
    assert inference_log.log_root() == tmp_path / "home" / "inference_log"
    monkeypatch.setenv(settings.INFERENCE_LOG.name, (tmp_path / "env").as_uri())
    assert inference_log.log_root() == tmp_path / "env"
    assert inference_log.log_root(tmp_path / "arg") == tmp_path / "arg"

    (path,) = log_predictions(MODEL, "1", "online", _features(1), [0.5], ts="2026-01-01T00:00Z")
    assert path.is_relative_to(tmp_path / "env")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "shadow"}, "source 'shadow'"),
        ({"model_name": "../escape"}, "model_name '../escape'"),
        ({"predictions": [0.1, 0.2]}, "got 2 values for 3 rows"),
        ({"predictions": np.zeros((3, 3))}, r"shape \(3, 3\)"),
        ({"request_ids": ["a"]}, "got 1 ids for 3 rows"),
        ({"ts": ["2026-01-01T00:00Z"]}, "got 1 timestamps for 3 rows"),
        ({"features": _features(3).rename(columns={"note": "prediction"})}, "prediction"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {
        "model_name": MODEL,
        "version": "1",
        "source": "online",
        "features": _features(3),
        "predictions": [0.1, 0.2, 0.3],
        "root": tmp_path,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        log_predictions(**args)
    assert _files(tmp_path) == []


# --- reading what other writers left: read_checked reports, read_range raises ---------------------

HOUR = "2026-02-01T10:00Z"


def _foreign(tmp_path: Path, name: str, frame: pd.DataFrame | None = None, data: bytes | None = None) -> Path:
    """A file another writer put into the hour's online partition (pandas' own Parquet, or raw bytes)."""
    folder = partition_path(MODEL, "online", HOUR, tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if data is not None:
        path.write_bytes(data)
    else:
        frame.to_parquet(path, index=False)
    return path


def _foreign_rows(n: int, prefix: str = "x", **columns) -> pd.DataFrame:
    base = {"request_id": [f"{prefix}{i}" for i in range(n)], "ts": pd.Timestamp("2026-02-01T10:30Z"),
            "model_name": MODEL, "model_version": 7, "age": 40, "annual_income": 50_000.0, "region": "north",
            "note": "n", "prediction": 0.5}
    return pd.DataFrame({**base, **columns}, index=range(n))


def test_read_checked_reads_past_what_other_writers_left_and_names_it(tmp_path: Path) -> None:
    log_predictions(MODEL, "7", "online", _features(3), [0.1, 0.2, 0.3], ts="2026-02-01T10:05Z", root=tmp_path)
    text = _foreign(tmp_path, "text.parquet", _foreign_rows(4, annual_income=["61000", "12k", "N/A", None],
                                                              age=["41", "42", "43.5", "44"]))
    corrupt = _foreign(tmp_path, "corrupt.parquet", data=b"PAR1 not really parquet")
    _foreign(tmp_path, "empty.parquet", _foreign_rows(0))  # zero rows: pandas gives its text columns the null type
    lacking = _foreign(tmp_path, "lacking.parquet", _foreign_rows(2, "y").drop(columns=["region"]))
    no_ts = _foreign(tmp_path, "no_ts.parquet", _foreign_rows(5).drop(columns=["ts"]))

    read = inference_log.read_checked(MODEL, HOUR, "2026-02-01T11:00Z", features=FEATURE_TYPES, root=tmp_path)

    frame = read.frame
    assert len(frame) == 3 + 4 + 2 and read.files == 6
    assert frame["annual_income"].dtype == np.float64 and frame["age"].dtype == np.float64  # nulls: float
    rows = frame.set_index("request_id")
    # text where a number is declared: what reads as one is kept, the rest is null
    assert rows.loc[["x0", "x1", "x2", "x3"], "annual_income"].tolist()[0] == 61000.0
    assert rows.loc[["x1", "x2", "x3"], "annual_income"].isna().all()
    assert rows.loc[["x0", "x1", "x3"], "age"].tolist() == [41, 42, 44] and np.isnan(rows.loc["x2", "age"])
    assert rows.loc[["y0", "y1"], "region"].isna().all() and rows.loc["x0", "region"] == "north"
    assert set(frame["model_version"]) == {"7"}  # an int version from the other writer reads as text
    issues = {(i.kind, Path(i.file).name, i.column): i for i in read.issues}
    assert set(issues) == {
        ("wrong_type", "text.parquet", "annual_income"),
        ("wrong_type", "text.parquet", "age"),
        ("unreadable_file", "corrupt.parquet", None),
        ("missing_column", "lacking.parquet", "region"),
        ("unreadable_file", "no_ts.parquet", "ts"),
    }
    wrong = issues[("wrong_type", "text.parquet", "annual_income")]
    assert wrong.rows == 2 and "'12k'" in wrong.detail and "'N/A'" in wrong.detail and str(text) in str(wrong)
    assert issues[("wrong_type", "text.parquet", "age")].rows == 1  # 43.5 is not a whole number
    assert str(corrupt) in str(issues[("unreadable_file", "corrupt.parquet", None)])
    assert issues[("missing_column", "lacking.parquet", "region")].rows == 2 and str(lacking).endswith("lacking.parquet")
    assert issues[("unreadable_file", "no_ts.parquet", "ts")].rows == 5 and no_ts.name in str(no_ts)


def test_read_range_raises_naming_the_file_it_cannot_read(tmp_path: Path) -> None:
    log_predictions(MODEL, "7", "online", _features(3), [0.1, 0.2, 0.3], ts="2026-02-01T10:05Z", root=tmp_path)
    _foreign(tmp_path, "empty.parquet", _foreign_rows(0))
    assert len(read_hour(MODEL, HOUR, root=tmp_path, features=FEATURE_TYPES)) == 3  # a zero-row file is no problem

    text = _foreign(tmp_path, "text.parquet", _foreign_rows(2, annual_income=["12k", "1"]))
    with pytest.raises(ValueError, match=rf"{text}: column 'annual_income': 1 value\(s\) of type string cannot be read"):
        read_hour(MODEL, HOUR, root=tmp_path, features=FEATURE_TYPES)
    text.unlink()
    corrupt = _foreign(tmp_path, "corrupt.parquet", data=b"garbage")
    with pytest.raises(ValueError, match=rf"{corrupt}: cannot be read as Parquet"):
        read_hour(MODEL, HOUR, root=tmp_path)
