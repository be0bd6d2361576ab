"""The inference log's columns and types, and one log file read as declared.

Every file of the log has ``request_id`` (string), ``ts`` (UTC timestamp, microseconds),
``model_name``, ``model_version`` (string), one column per feature, ``prediction`` (float64) and,
for online rows, ``latency_ms`` (float64) and ``role`` (string: ``live``, ``shadow``, ``canary``,
``verification``; absent or null means ``live``) (the layout: :mod:`include.monitoring.inference_log`).
Other writers get things wrong; :func:`read_file` reads one file conformed to those columns and the
declared feature types and says what it could not read (:class:`ReadIssue`), so hourly monitoring
reports it as data quality instead of losing the hour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from include.data.dataset import ARROW_TYPES

BASE_COLUMNS = ("request_id", "ts", "model_name", "model_version")
PREDICTION = "prediction"
LATENCY = "latency_ms"
ROLE = "role"
LIVE, SHADOW, CANARY, VERIFICATION = "live", "shadow", "canary", "verification"  # request_log.py's roles
SOURCE_COLUMN = "source"
RESERVED = frozenset({*BASE_COLUMNS, PREDICTION, LATENCY, ROLE, SOURCE_COLUMN})
TS_TYPE = pa.timestamp("us", tz="UTC")
# The declared types as the dataset reader reads them; the log keeps timestamps in microseconds.
_ARROW_TYPES: dict[str, pa.DataType] = {**ARROW_TYPES, "timestamp": TS_TYPE}

UNREADABLE_FILE = "unreadable_file"
MISSING_COLUMN = "missing_column"
WRONG_TYPE = "wrong_type"
_BASE_TYPES: dict[str, pa.DataType] = {
    "request_id": pa.string(),
    "ts": TS_TYPE,
    "model_name": pa.string(),
    "model_version": pa.string(),
    PREDICTION: pa.float64(),
    LATENCY: pa.float64(),
    ROLE: pa.string(),
}
_OPTIONAL = frozenset({LATENCY, ROLE})  # absent by design (batch rows, older writers): not a problem
_EXAMPLES = 3


def utc(value: datetime | pd.Timestamp | str) -> pd.Timestamp:
    """``value`` as a UTC timestamp; a value without a zone is taken as UTC."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def arrow_type(name: str, kind: str) -> pa.DataType:
    """The Arrow type feature ``name`` of the project's type ``kind`` is read as; ``ValueError`` for an unknown kind."""
    if kind not in _ARROW_TYPES:
        raise ValueError(f"feature {name!r}: unknown type {kind!r}; expected one of {sorted(_ARROW_TYPES)}")
    return _ARROW_TYPES[kind]


@dataclass(frozen=True)
class ReadIssue:
    """One thing in one log file that could not be read as declared (see :func:`read_file`).

    ``kind``: ``unreadable_file`` (the file is left out: not Parquet, corrupt, or no ``ts`` column),
    ``missing_column`` (the column is absent from the file: its rows hold null there) or
    ``wrong_type`` (values that are not of the column's declared type and cannot be read as it:
    they become null). ``rows``: the file's rows for the first two kinds (0 when the file cannot
    even be opened), the bad values for ``wrong_type``.
    """

    kind: str
    file: str
    column: str | None
    rows: int
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.detail}"



def read_file(file: Path, types: Mapping[str, pa.DataType] | None) -> tuple[pa.Table | None, list[ReadIssue]]:
    """One log file conformed to the log's columns and the feature types ``types`` (name -> Arrow type,
    :func:`arrow_type`), or None, with what could not be read as declared.

    A value stored in another type that reads as the declared one (``"42"`` for an int, an int for
    a float, a number for text) is converted; one that does not (``"12k"`` for a number) becomes
    null (``wrong_type``); a missing column becomes null (``missing_column``); a file that cannot
    be opened, or has no ``ts``, is None (``unreadable_file``). Without ``types`` the features are
    read as found, and a file with any issue is None.
    """
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError, ValueError) as exc:
        rows = _footer_rows(file)
        return None, [ReadIssue(UNREADABLE_FILE, str(file), None, rows, f"cannot be read as Parquet ({exc})")]
    n = table.num_rows
    if "ts" not in table.column_names:
        return None, [ReadIssue(UNREADABLE_FILE, str(file), "ts", n,
                                f"has no 'ts' column: its {n} row(s) cannot be placed in time")]
    issues: list[ReadIssue] = []
    feature_types = types if types is not None else {
        name: _plain_type(table.schema.field(name).type) for name in table.column_names if name not in RESERVED
    }
    columns: dict[str, pa.ChunkedArray] = {}
    base = {name: _BASE_TYPES[name] for name in BASE_COLUMNS}
    for name, target in {**base, **feature_types, PREDICTION: pa.float64(), LATENCY: pa.float64(),
                         ROLE: pa.string()}.items():
        if name not in table.column_names:
            if name not in _OPTIONAL and n:
                issues.append(ReadIssue(MISSING_COLUMN, str(file), name, n, f"has no {name!r} column ({n} row(s))"))
            columns[name] = pa.chunked_array([pa.nulls(n, target)], target)
            continue
        values, bad, examples = _coerce(table.column(name), target)
        if bad:
            issues.append(ReadIssue(WRONG_TYPE, str(file), name, bad,
                                    f"column {name!r}: {bad} value(s) of type {table.schema.field(name).type} "
                                    f"cannot be read as {target} (e.g. {', '.join(examples)}): read as null"))
        columns[name] = values
    if issues and types is None:
        return None, issues
    return pa.table(columns), issues


def _footer_rows(file: Path) -> int:
    """The row count in a file's footer when the footer is readable (a corrupt page), else 0."""
    try:
        return pq.ParquetFile(file).metadata.num_rows
    except (pa.ArrowException, OSError, ValueError):
        return 0


def _plain_type(arrow_type: pa.DataType) -> pa.DataType:
    """The type a column found in a file is read as when no type is declared."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_large_string(arrow_type):
        return pa.string()
    return arrow_type


def _coerce(column: pa.ChunkedArray, target: pa.DataType) -> tuple[pa.ChunkedArray, int, list[str]]:
    """``column`` as ``target``: Arrow's cast when it succeeds, else value by value (bad values -> null).

    Returns the values, how many non-null values could not be read, and a few of them (repr).
    """
    if column.type == target:
        return column, 0, []
    try:
        return column.cast(target, safe=not pa.types.is_timestamp(target)), 0, []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    convert = _CONVERTERS[_kind_of(target)]
    out, bad = [], []
    for value in column.to_pylist():
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out.append(None)
            continue
        try:
            out.append(convert(value))
        except (TypeError, ValueError, OverflowError, UnicodeDecodeError):
            out.append(None)
            bad.append(value)
    examples = list(dict.fromkeys(repr(v)[:40] for v in bad))[:_EXAMPLES]
    return pa.chunked_array([pa.array(out, type=target)], target), len(bad), examples


def _kind_of(target: pa.DataType) -> str:
    if pa.types.is_integer(target):
        return "int"
    if pa.types.is_floating(target):
        return "float"
    if pa.types.is_boolean(target):
        return "bool"
    if pa.types.is_timestamp(target):
        return "timestamp"
    return "string"


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _to_float(value: Any) -> float:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, int | float | str | np.number):
        raise TypeError(f"{type(value).__name__} is not a number")
    return float(value)


def _to_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str | int | float | bool | np.number):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not text")


_TRUE, _FALSE = frozenset({"true", "t", "yes", "y", "1"}), frozenset({"false", "f", "no", "n", "0"})


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = _to_str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"{value!r} is not a boolean")


def _to_timestamp(value: Any) -> pd.Timestamp:
    if isinstance(value, bool) or not isinstance(value, str | datetime | pd.Timestamp | np.datetime64):
        raise TypeError(f"{type(value).__name__} is not a timestamp")
    stamp = utc(value)
    if pd.isna(stamp):
        raise ValueError(f"{value!r} is not a timestamp")
    return stamp


_CONVERTERS = {"int": _to_int, "float": _to_float, "string": _to_str, "bool": _to_bool, "timestamp": _to_timestamp}
