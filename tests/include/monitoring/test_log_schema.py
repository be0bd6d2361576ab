"""One inference-log file read as declared: values converted where they read as the declared type, the rest named."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.monitoring.log_schema import (
    MISSING_COLUMN,
    UNREADABLE_FILE,
    WRONG_TYPE,
    arrow_type,
    read_file,
    utc,
)

TYPES = {"age": arrow_type("age", "int"), "income": arrow_type("income", "float"),
         "region": arrow_type("region", "category"), "vip": arrow_type("vip", "bool")}


def _write(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def _base(n: int) -> dict:
    return {"request_id": [f"r{i}" for i in range(n)], "ts": pd.date_range("2026-02-01T10:00Z", periods=n, freq="min"),
            "model_name": ["m"] * n, "model_version": [1] * n, "prediction": [0.5] * n}


def test_values_another_writer_stored_as_text_are_converted_or_named(tmp_path: Path) -> None:
    file = _write(tmp_path / "other.parquet", {**_base(3), "age": ["42", "12k", None], "income": [1, 2, 3],
                                                "region": [7, 8, 9], "vip": ["yes", "n", "maybe"]})

    table, issues = read_file(file, TYPES)

    frame = table.to_pandas()
    assert frame["age"].tolist()[:1] == [42] and frame["age"].isna().tolist() == [False, True, True]
    assert frame["income"].tolist() == [1.0, 2.0, 3.0] and frame["region"].tolist() == ["7", "8", "9"]
    assert frame["vip"].tolist() == [True, False, None] and frame["model_version"].tolist() == ["1", "1", "1"]
    assert frame["latency_ms"].isna().all()  # absent by design (batch rows): no issue
    assert [(i.kind, i.column, i.rows) for i in issues] == [(WRONG_TYPE, "age", 1), (WRONG_TYPE, "vip", 1)]
    assert "e.g. '12k'" in issues[0].detail and str(issues[0]).startswith(f"{file}: column 'age'")


def test_a_missing_column_is_null_and_a_file_without_ts_is_left_out(tmp_path: Path) -> None:
    without_age = _write(tmp_path / "a.parquet", {**_base(2), "income": [1.0, 2.0], "region": ["n", "s"],
                                                   "vip": [True, False]})
    without_ts = _write(tmp_path / "b.parquet", {k: v for k, v in _base(2).items() if k != "ts"})
    corrupt = tmp_path / "c.parquet"
    corrupt.write_bytes(b"PAR1 not really")

    table, issues = read_file(without_age, TYPES)
    assert table.column("age").null_count == 2 and [(i.kind, i.column, i.rows) for i in issues] == [
        (MISSING_COLUMN, "age", 2)]
    assert read_file(without_ts, TYPES)[0] is None
    assert [(i.kind, i.column, i.rows) for i in read_file(without_ts, TYPES)[1]] == [(UNREADABLE_FILE, "ts", 2)]
    table, [issue] = read_file(corrupt, TYPES)
    assert table is None and issue.kind == UNREADABLE_FILE and "cannot be read as Parquet" in issue.detail


def test_without_declared_types_a_file_with_an_issue_is_left_out(tmp_path: Path) -> None:
    file = _write(tmp_path / "a.parquet", {k: v for k, v in _base(2).items() if k != "model_name"})

    table, [issue] = read_file(file, None)

    assert table is None and (issue.kind, issue.column) == (MISSING_COLUMN, "model_name")


def test_utc_and_arrow_types() -> None:
    assert utc("2026-02-01T10:00") == pd.Timestamp("2026-02-01T10:00Z")  # without a zone: UTC
    assert utc(datetime.fromisoformat("2026-02-01T12:00+02:00")) == pd.Timestamp("2026-02-01T10:00Z")
    assert arrow_type("t", "timestamp") == pa.timestamp("us", tz="UTC")
    with pytest.raises(ValueError, match="feature 'x': unknown type 'decimal'"):
        arrow_type("x", "decimal")
