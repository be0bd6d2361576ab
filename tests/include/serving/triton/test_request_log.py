"""The python backend's inference log writer, run as Triton runs it (a module of its own, its own thread)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from include.monitoring import inference_log
from include.serving.triton import request_log
from include.serving.triton.request_log import Batch, RequestLog

NUMERIC = [("age", "int"), ("income", "float"), ("owner", "bool")]
CATEGORICAL = [("region", "category")]
TYPES = {"age": "int", "income": "float", "owner": "bool", "region": "category"}
T0 = int(pd.Timestamp("2026-06-01T10:59:59.5Z").timestamp() * 1_000_000)


def _batch(ids, ts_us=T0, version="3", role="live") -> Batch:
    n = len(ids)
    numeric = np.column_stack([np.arange(n) + 30.0, np.full(n, 1.5), np.ones(n)])
    categorical = np.array([["north"]] * n, dtype=object)
    return Batch(list(ids), ts_us, version, numeric, categorical, np.full((n, 1), 0.25), 1.5, role)


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def test_rows_are_written_after_flush_seconds_in_the_layout_monitoring_reads(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, "m", NUMERIC, CATEGORICAL, flush_seconds=0.2)
    try:
        log.append(_batch(["a", "b"]))
        log.append(_batch(["c"], ts_us=T0 + 1_000_000))  # the next hour: its own partition
        deadline = time.monotonic() + 5
        while log.written_rows < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        log.close()

    assert log.written_rows == 3 and len(_files(tmp_path)) == 2
    frame = inference_log.read_range("m", "2026-06-01T10:00Z", "2026-06-01T12:00Z", root=tmp_path, features=TYPES)
    assert frame["request_id"].tolist() == ["a", "b", "c"]
    assert frame["age"].tolist() == [30, 31, 30] and frame["owner"].tolist() == [True] * 3
    assert set(frame["model_version"]) == {"3"} and set(frame["role"]) == {"live"}
    assert frame["ts"].dt.hour.tolist() == [10, 10, 11]


def test_flush_rows_writes_without_waiting_and_close_writes_the_rest(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, "m", NUMERIC, CATEGORICAL, flush_rows=5, flush_seconds=3600)
    log.append(_batch([f"r{i}" for i in range(5)]))
    deadline = time.monotonic() + 5
    while log.written_rows < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.written_rows == 5
    log.append(_batch(["late"]))
    assert log.written_rows == 5  # buffered: an hour to go
    log.close()
    assert log.written_rows == 6
    with pytest.raises(RuntimeError, match="closed"):
        log.append(_batch(["after"]))


def test_values_the_type_cannot_hold_are_null_and_an_empty_category_is_missing(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, "m", NUMERIC, CATEGORICAL, flush_seconds=3600)
    numeric = np.array([[np.nan, np.nan, np.nan], [30.5, 2.0, 0.0]])
    log.append(Batch(["x", "y"], T0, "1", numeric, np.array([[""], ["south"]], dtype=object), np.array([0.1, 0.2]),
                     2.0, "shadow"))
    log.close()

    table = pq.read_table(_files(tmp_path)[0]).to_pydict()
    assert table["age"] == [None, None]  # NaN, and 30.5 is no int
    assert table["income"] == [None, 2.0] and table["owner"] == [None, False]
    assert table["region"] == [None, "south"] and table["role"] == ["shadow", "shadow"]


def test_a_failed_write_keeps_the_rows_for_the_next_flush(tmp_path: Path) -> None:
    blocked = tmp_path / "log"
    blocked.write_text("a file where the folder should be")
    log = RequestLog(blocked, "m", NUMERIC, CATEGORICAL, flush_seconds=3600, max_buffered_rows=3)
    log.append(_batch(["a", "b"]))
    assert log.flush() == 0  # cannot write: kept
    log.append(_batch(["c", "d"]))  # 4 buffered > 3: the oldest batch is dropped, and counted
    assert log.flush() == 0 and log.dropped == 2
    blocked.unlink()
    assert log.flush() == 2
    log.close()
    frame = inference_log.read_range("m", "2026-06-01T10:00Z", "2026-06-01T11:00Z", root=blocked, features=TYPES)
    assert frame["request_id"].tolist() == ["c", "d"]


def test_the_partition_is_the_inference_logs() -> None:
    root = Path("/log")
    for stamp in ("2026-01-01T00:00Z", "2026-12-31T23:59:59Z"):
        ts = pd.Timestamp(stamp)
        assert request_log.partition(root, "m", int(ts.timestamp() * 1e6)) == inference_log.partition_path(
            "m", "online", ts, root=root)


def test_the_backend_reads_the_variable_the_settings_name() -> None:
    from include import settings

    assert request_log.ROOT_ENV == settings.INFERENCE_LOG.name
