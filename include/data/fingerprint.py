"""Full-content, layout-independent dataset fingerprints.

MLflow's own dataset digest (``mlflow.data``) hashes only the first 10,000 rows (md5, 8 hex
characters), so it is not an integrity check. :func:`dataset_fingerprint` covers every cell of
every row, and the training run's logged dataset carries it as its digest instead
(:func:`mlflow_digest`): the digest MLflow shows for the run's dataset names the same data as
the run's and the version's ``data_fingerprint`` tag.

Method
------
1. Canonicalise each column by its declared type keyword: ``int`` -> nullable
   ``Int64`` (so a CSV int column with nulls, read back as float, matches),
   ``float`` -> float64 (-0.0 folded into 0.0), ``category``/``string`` -> str,
   ``bool`` -> boolean, ``timestamp`` -> UTC ``datetime64[ns]``. A column missing
   from ``column_types``, or whose cast fails (bad data must stay fingerprintable
   for quarantine), is hashed by its string form (``str(value)``). With
   ``column_types=None`` the types are inferred from the dtypes.
2. Per column, a 64-bit hash per cell (``pandas.util.hash_array``); nulls get a
   fixed marker, so a null differs from 0, "" or the string "None".
3. Per row, the column hashes are folded in column-name order through a
   splitmix64 step. This is done twice with different keys (a different
   ``hash_key`` for strings, a different salt for numbers), giving a 128-bit row
   digest.
4. The row digests are sorted and SHA-256 is taken over a format tag, the schema
   (sorted ``(column, canonical type)`` pairs), the row count and the sorted
   digests.

Guarantees: the result does not depend on row order, column order, the index or
the file format the data went through (Parquet, CSV, a partitioned Parquet
directory) once ``column_types`` is given; duplicate rows count (a multiset);
any change to one cell, a row added or removed, or a renamed column changes it.
Float values are compared bit for bit (a 1e-12 relative change counts).
This detects accidental change; it is NOT a defence against a deliberate
collision (the 64-bit cell hashes are not cryptographic).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.util import hash_array

log = logging.getLogger(__name__)

FORMAT_TAG = b"include.fingerprint/v1\n"  # a format name, kept when the module moved: fingerprints are long-lived lineage
MLFLOW_DIGEST_CHARS = 32  # MLflow stores at most 36 characters of a dataset's digest
TYPE_KEYWORDS = ("int", "float", "category", "string", "bool", "timestamp")
# Canonical type recorded in the schema: category and string hash alike.
_CANONICAL_TYPE = {
    "int": "int",
    "float": "float",
    "category": "string",
    "string": "string",
    "bool": "bool",
    "timestamp": "timestamp",
}
# One entry per 64-bit half of the row digest.
_HASH_KEYS = ("fingerprint-key1", "fingerprint-key2")
_SALTS = (np.uint64(0x243F6A8885A308D3), np.uint64(0x13198A2E03707344))
_NULL_MARKS = (np.uint64(0xA4093822299F31D0), np.uint64(0x082EFA98EC4E6C89))


def infer_type(series: pd.Series) -> str:
    """Type keyword for a column from its dtype (anything else is ``string``)."""
    if ptypes.is_bool_dtype(series.dtype):
        return "bool"
    if ptypes.is_integer_dtype(series.dtype):
        return "int"
    if ptypes.is_float_dtype(series.dtype):
        return "float"
    if ptypes.is_datetime64_any_dtype(series.dtype):
        return "timestamp"
    return "string"


def _as_string(series: pd.Series) -> pd.Series:
    """Column of ``str`` values with nulls kept as nulls."""
    if series.dtype == object and ptypes.infer_dtype(series, skipna=True) in ("string", "empty"):
        return series
    return series.astype(object).map(str, na_action="ignore")


def _as_bool(series: pd.Series) -> pd.Series:
    """Nullable boolean column; strings must be true/false/1/0 (any case)."""
    if ptypes.is_bool_dtype(series.dtype) or ptypes.is_numeric_dtype(series.dtype):
        return series.astype("boolean")
    words = {"true": True, "1": True, "false": False, "0": False}
    text = series.astype(object).map(lambda v: str(v).strip().lower(), na_action="ignore")
    unknown = text.notna() & ~text.isin(list(words))
    if unknown.any():
        raise ValueError(f"not a boolean: {series[unknown].iloc[0]!r}")
    return text.map(words).astype("boolean")


def _cast(series: pd.Series, type_keyword: str) -> pd.Series:
    """Cast to the canonical dtype of ``type_keyword``; raises when the data does not fit."""
    if type_keyword == "int":
        numeric = series if ptypes.is_numeric_dtype(series.dtype) else pd.to_numeric(series)
        return numeric.astype("Int64")
    if type_keyword == "float":
        numeric = series if ptypes.is_numeric_dtype(series.dtype) else pd.to_numeric(series)
        return pd.Series(numeric.to_numpy(dtype="float64", na_value=np.nan) + 0.0, index=series.index)
    if type_keyword == "bool":
        return _as_bool(series)
    if type_keyword == "timestamp":
        if ptypes.is_datetime64_any_dtype(series.dtype):
            parsed = pd.to_datetime(series, utc=True)
        else:
            parsed = pd.to_datetime(series, utc=True, format="ISO8601")
        return parsed.astype("datetime64[ns, UTC]")
    return _as_string(series)


def canonicalize(
    df: pd.DataFrame, column_types: Mapping[str, str] | None = None
) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Return the canonical columns (sorted by name) and each one's canonical type."""
    names = [str(c) for c in df.columns]
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        raise ValueError(f"duplicate column names cannot be fingerprinted: {duplicated}")
    for column, keyword in (column_types or {}).items():
        if keyword not in TYPE_KEYWORDS:
            raise ValueError(f"unknown type {keyword!r} for column {column!r}; expected one of {TYPE_KEYWORDS}")
    by_name = {name: df.iloc[:, i] for i, name in enumerate(names)}
    columns: dict[str, pd.Series] = {}
    types: dict[str, str] = {}
    for name in sorted(names):
        series = by_name[name]
        keyword = column_types.get(name) if column_types is not None else infer_type(series)
        if keyword is None:
            columns[name], types[name] = _as_string(series), "string"
            continue
        try:
            columns[name], types[name] = _cast(series, keyword), _CANONICAL_TYPE[keyword]
        except (ValueError, TypeError, OverflowError) as exc:
            log.debug("column %s does not cast to %s (%s); hashing its string form", name, keyword, exc)
            columns[name], types[name] = _as_string(series), "string"
    return columns, types


def _cell_hashes(series: pd.Series, kind: str, halves: tuple[int, ...]) -> list[np.ndarray]:
    """64-bit hash per cell for each requested half of the row digest; nulls get a fixed marker."""
    if kind == "string":
        # Hash each distinct value once; factorize marks nulls with code -1.
        codes, uniques = pd.factorize(series.to_numpy(dtype=object))
        null = codes < 0
        out = []
        for half in halves:
            table = hash_array(np.asarray(uniques, dtype=object), hash_key=_HASH_KEYS[half], categorize=False)
            out.append(np.where(null, _NULL_MARKS[half], table[codes]))
        return out
    null = series.isna().to_numpy()
    if kind == "timestamp":
        raw = series.to_numpy(dtype="datetime64[ns]").view(np.int64)  # UTC wall time
    elif kind in ("int", "bool"):
        raw = series.to_numpy(dtype=np.int64, na_value=0)
    else:
        raw = series.to_numpy(dtype=np.float64, na_value=0.0)
    bits = raw.view(np.uint64)
    return [np.where(null, _NULL_MARKS[half], hash_array(bits ^ _SALTS[half], categorize=False)) for half in halves]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _row_hashes(
    n_rows: int, columns: Mapping[str, pd.Series], types: Mapping[str, str], halves: tuple[int, ...]
) -> list[np.ndarray]:
    """Per half, fold the cell hashes of each row in column order."""
    accs = [np.full(n_rows, _SALTS[half], dtype=np.uint64) for half in halves]
    for name, series in columns.items():
        cells = _cell_hashes(series, types[name], halves)
        accs = [_mix(acc + cell) for acc, cell in zip(accs, cells, strict=True)]
    return accs


def row_digests(df: pd.DataFrame, column_types: Mapping[str, str] | None = None) -> np.ndarray:
    """First 64-bit half of each row's digest (uint64), in the frame's row order.

    Depends only on a row's canonical values, so it gives an order-independent,
    deterministic key, e.g. for a train/test split.
    """
    columns, types = canonicalize(df, column_types)
    return _row_hashes(len(df), columns, types, (0,))[0]


def _schema_json(types: Mapping[str, str]) -> bytes:
    return json.dumps(sorted(types.items()), separators=(",", ":")).encode()


def schema_hash(df: pd.DataFrame, column_types: Mapping[str, str] | None = None) -> str:
    """``sha256:<hex>`` over the sorted ``(column, canonical type)`` pairs."""
    _, types = canonicalize(df, column_types)
    return "sha256:" + hashlib.sha256(_schema_json(types)).hexdigest()


def mlflow_digest(fingerprint: str) -> str:
    """The ``digest`` of an MLflow dataset whose :func:`dataset_fingerprint` is ``fingerprint``: the fingerprint's
    first :data:`MLFLOW_DIGEST_CHARS` hex characters (128 bits), as MLflow stores at most 36 characters.

    Raises ValueError for a value that is not ``sha256:<64 hex>``.
    """
    hex_digits = fingerprint.removeprefix("sha256:")
    if not fingerprint.startswith("sha256:") or len(hex_digits) != 64 or not all(c in "0123456789abcdef" for c in hex_digits):
        raise ValueError(f"not a dataset fingerprint (sha256:<64 hex>): {fingerprint!r}")
    return hex_digits[:MLFLOW_DIGEST_CHARS]


def dataset_fingerprint(df: pd.DataFrame, column_types: Mapping[str, str] | None = None) -> str:
    """``sha256:<64 hex>`` over every row of ``df``; see the module docstring."""
    columns, types = canonicalize(df, column_types)
    first, second = _row_hashes(len(df), columns, types, (0, 1))
    order = np.argsort(first)
    if np.any(np.diff(first[order]) == 0):  # equal first halves: order those by the second half
        order = np.lexsort((second, first))
    digests = np.stack([first[order], second[order]], axis=1).astype("<u8")
    sha = hashlib.sha256(FORMAT_TAG)
    sha.update(_schema_json(types) + b"\n")
    sha.update(f"{len(df)}\n".encode())
    sha.update(digests.tobytes())
    return "sha256:" + sha.hexdigest()
