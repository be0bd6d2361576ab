"""Read and write tabular datasets by URI, typed as the model's configuration declares them.

A URI is a local path or a ``file://`` URI. The format follows from the path:

* ``*.parquet`` - a single Parquet file;
* ``*.csv`` - a single CSV file (a header row, no index column);
* a directory (on write: a path without a suffix) - a Parquet dataset of one or more files,
  possibly in hive-style partition folders (``region=north/``). Names starting with ``_`` or ``.``
  (``_SUCCESS``, ``.crc`` files, staging folders) are skipped, as Spark and pyarrow skip them.

**The typed reader.** :func:`read_dataset` with ``column_types`` (``{column: type keyword}``, the
keywords of :data:`TYPE_KEYWORDS`, e.g. ``ModelConfig.dataset.column_types``) is the one way the
lifecycle reads data: validation, fingerprinting, training, evaluation, parity checks and batch
scoring's planning (:func:`inspect_dataset`) all go through it, so every step sees the same values:

* every declared column comes back with its declared type: ``int`` as ``int64`` (``Int64`` when it
  has nulls), ``float`` as ``float64``, ``category``/``string`` as text (``"01234"`` stays
  ``"01234"``), ``bool`` as ``bool`` (``boolean`` with nulls), ``timestamp`` as UTC
  ``datetime64[ns, UTC]`` (naive values are taken as UTC);
* CSV is read as text and each column is converted from text by its declared type: ints must be
  whole numbers, timestamps ISO 8601, bools ``true``/``false``/``1``/``0``; only an empty field is a
  null (``"N/A"`` stays a string);
* Parquet values are converted only where no information is lost (``int32`` -> ``int64``, a whole
  ``float`` -> ``int``, dictionary-encoded text -> text); text where a number is declared, a
  number where text is declared, a fraction in an ``int`` column is refused;
* hive partition keys are typed from the configuration, never inferred;
* zero-row files are skipped (pandas writes an empty frame's text columns with the ``null`` type);
  a column that is entirely null in a file fits any declared type;
* a file whose columns or types disagree with the declaration is refused with a
  :class:`DatasetError` naming the file, the column, the expected and the found type; so is an
  undeclared column (unless ``extra="ignore"``), a declared column some file lacks, a duplicated
  CSV header and a file that cannot be read at all (corrupt bytes).

The result does not depend on file order: a folder's files are read in sorted path order.

Without ``column_types`` the reader infers types (each file's own, CSV types guessed by pandas); use
that only for data that is not a model's.

Other schemes (``s3://`` ...) are rejected with a ``ValueError``.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

FILE_FORMATS = (".parquet", ".csv")
TYPE_KEYWORDS = ("int", "float", "category", "string", "bool", "timestamp")
# What each declared type is read as.
ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "category": pa.string(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ns", tz="UTC"),
}
_TEXT_TYPES = ("category", "string")
_SKIPPED_PREFIXES = ("_", ".")
_WHOLE_NUMBER = re.compile(r"^[+-]?[0-9]+(\.0*)?$")
_BOOL_WORDS = {"true": True, "1": True, "false": False, "0": False}
_EXAMPLES = 3
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # how pyarrow and Spark name the folder of a null partition value

Extra = Literal["error", "ignore"]


class DatasetError(ValueError):
    """The data cannot be read as declared; the message names the file, the column, expected and found."""


def local_path(uri: str) -> Path:
    """Return the local path a dataset URI points to (``file://`` or a plain path)."""
    parsed = urlparse(str(uri))
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URI with a remote host is not supported: {uri}")
        return Path(unquote(parsed.path))
    # One-letter schemes are Windows drive letters, not URI schemes.
    if len(parsed.scheme) > 1:
        raise ValueError(f"unsupported URI scheme {parsed.scheme!r} in {uri}; use a local path or file://")
    return Path(uri)


@dataclass(frozen=True)
class DataFile:
    """One Parquet file of a dataset: its path, rows and the hive partition values of its folders."""

    path: Path
    rows: int
    partitions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DatasetPlan:
    """What :func:`inspect_dataset` found: the files to read and the columns they give, typed.

    ``files`` are the non-empty data files in sorted path order; ``skipped`` the zero-row ones;
    ``schema`` the columns read (declared ones with their :data:`ARROW_TYPES`, in declaration order,
    then partition keys not declared when ``extra="ignore"`` drops nothing else); ``partition_keys``
    the hive keys of the folder layout; ``rows`` the total row count (from the footers).
    """

    uri: str
    files: tuple[DataFile, ...]
    schema: pa.Schema
    partition_keys: tuple[str, ...] = ()
    skipped: tuple[Path, ...] = field(default=())

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def _check_types(column_types: Mapping[str, str]) -> None:
    for column, keyword in column_types.items():
        if keyword not in TYPE_KEYWORDS:
            raise ValueError(f"unknown type {keyword!r} for column {column!r}; expected one of {TYPE_KEYWORDS}")


def _fits(found: pa.DataType, keyword: str) -> bool:
    """Whether a Parquet column of type ``found`` can hold values of the declared ``keyword`` losslessly."""
    if pa.types.is_null(found):  # all values null: fits anything
        return True
    if pa.types.is_dictionary(found):
        found = found.value_type
    if keyword == "int":
        return pa.types.is_integer(found) or pa.types.is_floating(found) or pa.types.is_decimal(found)
    if keyword == "float":
        return pa.types.is_integer(found) or pa.types.is_floating(found) or pa.types.is_decimal(found)
    if keyword in _TEXT_TYPES:
        return pa.types.is_string(found) or pa.types.is_large_string(found)
    if keyword == "bool":
        return pa.types.is_boolean(found)
    return pa.types.is_timestamp(found) or pa.types.is_date(found)


def _describe_type(kind: pa.DataType) -> str:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text (string)"
    return str(kind)


def _data_files(root: Path) -> list[Path]:
    """Every file under ``root`` in sorted path order, skipping names (and folders) starting with ``_`` or ``.``."""
    found = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(part.startswith(_SKIPPED_PREFIXES) for part in parts):
            continue
        if path.is_file():
            found.append(path)
    return found


def _partitions(root: Path, path: Path) -> tuple[tuple[str, str], ...]:
    """The ``key=value`` folders between ``root`` and ``path``, values URL-decoded as pyarrow and Spark write them."""
    pairs = []
    for part in path.relative_to(root).parts[:-1]:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise DatasetError(f"{path}: folder {part!r} is not a hive partition (key=value)")
        pairs.append((unquote(key), unquote(value)))
    return tuple(pairs)


def inspect_dataset(
    uri: str,
    column_types: Mapping[str, str],
    *,
    required: Sequence[str] | None = None,
    extra: Extra = "error",
) -> DatasetPlan:
    """Check a Parquet file or folder against ``column_types`` from the footers alone; nothing is read yet.

    ``required``: columns every non-empty file must have (default: every declared column); other declared
    columns may be absent from all files, but not from some. ``extra``: what to do with a column (or a
    partition key) that is not declared, ``"error"`` (refuse, naming it) or ``"ignore"`` (not read).
    Raises :class:`DatasetError` (a ``ValueError``) naming the file and the column when the data
    disagrees with the declaration, ``FileNotFoundError`` when nothing is at ``uri``.
    """
    _check_types(column_types)
    path = local_path(uri)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {uri}")
    if path.is_dir():
        candidates = _data_files(path)
        if not candidates:
            raise DatasetError(f"dataset folder {uri} holds no data files")
        root = path
    elif path.suffix == ".parquet":
        candidates, root = [path], path.parent
    else:
        raise ValueError(f"{uri}: only Parquet files and folders can be inspected; got {path.suffix!r}")
    needed = list(column_types) if required is None else list(required)
    unknown = [c for c in needed if c not in column_types]
    if unknown:
        raise ValueError(f"required column(s) {unknown} have no declared type")

    files: list[DataFile] = []
    skipped: list[Path] = []
    seen: dict[str, Path] = {}  # declared column -> first file that has it
    file_columns: dict[Path, set[str]] = {}
    partition_keys: tuple[str, ...] | None = None
    for file in candidates:
        partitions = _partitions(root, file) if path.is_dir() else ()
        keys = tuple(k for k, _ in partitions)
        if partition_keys is None:
            partition_keys = keys
        elif keys != partition_keys:
            raise DatasetError(
                f"{file}: partition folders {list(keys)} differ from the other files' {list(partition_keys)}"
            )
        try:
            metadata = pq.read_metadata(file)
            schema = metadata.schema.to_arrow_schema()
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"cannot read {file} as Parquet: {exc}") from exc
        if metadata.num_rows == 0:
            skipped.append(file)
            continue
        names = list(schema.names)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise DatasetError(f"{file}: column(s) {duplicated} appear more than once")
        for key in keys:
            if key in names:
                raise DatasetError(f"{file}: {key!r} is both a partition folder and a column of the file")
            if key not in column_types and extra == "error":
                raise DatasetError(f"{file}: partition key {key!r} is not a declared column")
        for name in names:
            if name not in column_types:
                if extra == "error":
                    raise DatasetError(f"{file}: column {name!r} is not declared (declared: {list(column_types)})")
                continue
            found = schema.field(name).type
            if not _fits(found, column_types[name]):
                raise DatasetError(
                    f"{file}: column {name!r} is {_describe_type(found)}, declared {column_types[name]}"
                )
            seen.setdefault(name, file)
        present = set(names) | set(keys)
        missing = [c for c in needed if c not in present]
        if missing:
            raise DatasetError(f"{file}: missing declared column(s) {missing}")
        files.append(DataFile(file, metadata.num_rows, partitions))
        file_columns[file] = present
    # A declared, optional column that some files have and others lack would be null in part of the rows.
    for name, first in seen.items():
        lacking = [f.path for f in files if name not in file_columns[f.path]]
        if lacking:
            raise DatasetError(f"{lacking[0]}: missing column {name!r}, which {first} has")
    keys = partition_keys or ()
    # No file has rows: every declared column, typed, so that an empty dataset reads as zero rows.
    columns = [c for c in column_types if c in seen or c in keys or not files]
    schema = pa.schema([pa.field(c, ARROW_TYPES[column_types[c]]) for c in columns])
    if skipped:
        log.info("%s: skipped %d file(s) with no rows: %s", uri, len(skipped), ", ".join(map(str, skipped)))
    return DatasetPlan(uri, tuple(files), schema, keys, tuple(skipped))


def _cast(array: pa.ChunkedArray | pa.Array, keyword: str, where: str) -> pa.ChunkedArray | pa.Array:
    """Convert a Parquet column to the declared type without losing information; else DatasetError."""
    target = ARROW_TYPES[keyword]
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if keyword == "timestamp":
        if pa.types.is_date(array.type):
            array = array.cast(pa.timestamp("s"))
        if array.type.tz is None:  # naive: the wall time is taken as UTC
            array = array.cast(pa.timestamp(array.type.unit, tz="UTC"))
    try:
        return array.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DatasetError(f"{where}: values do not fit the declared type {keyword}: {exc}") from exc


def _read_parquet_file(file: DataFile, column_types: Mapping[str, str], columns: Sequence[str]) -> pa.Table:
    partition_values = dict(file.partitions)
    in_file = [c for c in columns if c not in partition_values]
    try:
        table = pq.read_table(file.path, columns=in_file)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"cannot read {file.path}: {exc}") from exc
    arrays = []
    for name in columns:
        where = f"{file.path}: column {name!r}"
        if name in partition_values:
            raw = partition_values[name]
            value = _text_to_arrow(pd.Series([None if raw == HIVE_NULL else raw]), column_types[name],
                                   f"{where} (partition folder)")
            arrays.append(pa.repeat(value[0], file.rows).cast(ARROW_TYPES[column_types[name]]))
        else:
            arrays.append(_cast(table.column(name), column_types[name], where))
    return pa.table(arrays, names=list(columns))


def _text_to_arrow(text: pd.Series, keyword: str, where: str) -> pa.Array:
    """Parse a column of text (nulls as None) by its declared type; DatasetError names bad values."""
    values = text.astype(object)
    present = values.notna()

    def refuse(bad: pd.Series, what: str) -> DatasetError:
        rows = [f"row {i + 1}: {v!r}" for i, v in bad.head(_EXAMPLES).items()]
        return DatasetError(f"{where}: {len(bad)} value(s) are not {what}, e.g. {'; '.join(rows)}")

    if keyword in _TEXT_TYPES:
        return pa.array(values.where(present, None), type=pa.string())
    stripped = values[present].map(lambda v: str(v).strip())
    if keyword == "int":
        bad = stripped[~stripped.str.match(_WHOLE_NUMBER)]
        if len(bad):
            raise refuse(values[bad.index], "whole numbers")
        numbers = pd.Series(pd.NA, index=values.index, dtype="object")
        try:
            numbers[present] = [int(v.split(".")[0]) for v in stripped]
            return pa.array(numbers.where(present, None).tolist(), type=pa.int64())
        except (OverflowError, pa.ArrowInvalid) as exc:
            raise DatasetError(f"{where}: a value is out of the 64-bit integer range: {exc}") from exc
    if keyword == "float":
        parsed = pd.to_numeric(stripped, errors="coerce")
        bad = stripped[parsed.isna() & ~stripped.str.lower().isin(["nan"])]
        if len(bad):
            raise refuse(values[bad.index], "numbers")
        out = pd.Series(np.nan, index=values.index, dtype="float64")
        out[present] = parsed.astype("float64")
        return pa.array(out.to_numpy(), type=pa.float64(), from_pandas=True)
    if keyword == "bool":
        lowered = stripped.str.lower()
        bad = lowered[~lowered.isin(list(_BOOL_WORDS))]
        if len(bad):
            raise refuse(values[bad.index], "true/false/1/0")
        words = dict(zip(lowered.index, lowered.map(_BOOL_WORDS), strict=True))
        return pa.array([words.get(i) for i in values.index], type=pa.bool_())
    parsed = pd.to_datetime(stripped, utc=True, format="ISO8601", errors="coerce")
    bad = stripped[parsed.isna()]
    if len(bad):
        raise refuse(values[bad.index], "ISO 8601 timestamps")
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    try:
        out[present] = parsed.astype("datetime64[ns, UTC]")
    except (OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
        raise DatasetError(f"{where}: a timestamp is out of range: {exc}") from exc
    return pa.array(out, type=ARROW_TYPES["timestamp"])


def _read_csv(path: Path, uri: str, column_types: Mapping[str, str], required: Sequence[str], extra: Extra) -> pa.Table:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not part of a name
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {uri} as UTF-8 CSV: {exc}") from exc
    if not header:
        raise DatasetError(f"{uri}: the file is empty (no header row)")
    duplicated = sorted({n for n in header if header.count(n) > 1})
    if duplicated or "" in header:
        raise DatasetError(f"{uri}: the header has {'duplicated' if duplicated else 'empty'} column name(s) {duplicated}")
    undeclared = [c for c in header if c not in column_types]
    if undeclared and extra == "error":
        raise DatasetError(f"{uri}: column(s) {undeclared} in the header are not declared")
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{uri}: the header lacks declared column(s) {missing}")
    try:
        # Everything as text: only an empty field is a null; each column is then parsed by its declared type.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DatasetError(f"cannot read {uri} as CSV: {exc}") from exc
    columns = [c for c in column_types if c in header]
    arrays = [_text_to_arrow(frame[c], column_types[c], f"{uri}: column {c!r}") for c in columns]
    return pa.table(arrays, names=columns)


def _to_pandas(table: pa.Table, column_types: Mapping[str, str]) -> pd.DataFrame:
    """Arrow -> pandas with the declared dtypes (``Int64``/``boolean`` only where there are nulls)."""
    out = {}
    for name in table.column_names:
        column, keyword = table.column(name), column_types[name]
        if keyword == "int":
            out[name] = column.to_pandas().astype("Int64" if column.null_count else "int64")
        elif keyword == "bool":
            out[name] = column.to_pandas().astype("boolean" if column.null_count else "bool")
        elif keyword == "timestamp":
            out[name] = column.to_pandas().astype("datetime64[ns, UTC]")
        elif keyword == "float":
            out[name] = column.to_pandas().astype("float64")
        else:
            out[name] = column.to_pandas().astype(object)
    return pd.DataFrame(out, columns=table.column_names)


def read_dataset(
    uri: str,
    column_types: Mapping[str, str] | None = None,
    *,
    required: Sequence[str] | None = None,
    extra: Extra = "error",
) -> pd.DataFrame:
    """Read the dataset at ``uri`` into a DataFrame with a fresh RangeIndex.

    With ``column_types`` (see the module docstring) the columns are the declared ones the data has, in
    declaration order, each of its declared type; ``required`` and ``extra`` as in :func:`inspect_dataset`.
    Raises :class:`DatasetError` (a ``ValueError``) naming the file, the column, the expected and found
    type or the bad values; ``FileNotFoundError`` when nothing is at ``uri``.
    """
    path = local_path(uri)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {uri}")
    if path.suffix not in FILE_FORMATS and not path.is_dir():
        raise ValueError(f"unknown dataset format {path.suffix!r} for {uri}; expected {FILE_FORMATS} or a directory")
    if column_types is None:
        df = _read_untyped(path, uri)
    else:
        _check_types(column_types)
        needed = list(column_types) if required is None else list(required)
        if path.suffix == ".csv":
            table = _read_csv(path, uri, column_types, needed, extra)
        else:
            plan = inspect_dataset(uri, column_types, required=needed, extra=extra)
            columns = plan.schema.names
            tables = [_read_parquet_file(f, column_types, columns) for f in plan.files]
            table = pa.concat_tables(tables) if tables else plan.schema.empty_table()
        df = _to_pandas(table, column_types)
    log.debug("read %d rows x %d columns from %s", len(df), df.shape[1], uri)
    return df.reset_index(drop=True)


def _read_untyped(path: Path, uri: str) -> pd.DataFrame:
    """Types as stored (Parquet) or guessed (CSV): for data that belongs to no model configuration."""
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, na_values=[""], float_precision="round_trip")
        if path.is_file():
            return pq.read_table(path).to_pandas()
        files = _data_files(path)
        tables = []
        for file in files:
            metadata = pq.read_metadata(file)
            if metadata.num_rows == 0:
                continue
            table = pq.read_table(file)
            for key, value in _partitions(path, file):
                table = table.append_column(key, pa.array([value] * table.num_rows, type=pa.string()))
            tables.append(table)
        if not tables:
            return pd.DataFrame()
        first = tables[0].schema
        for file, table in zip(files, tables, strict=False):
            if not table.schema.equals(first):
                raise DatasetError(f"{file}: its schema differs from the first file's; read it with column_types")
        return pa.concat_tables(tables).to_pandas()
    except (OSError, pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {uri}: {exc}") from exc


def _clear_dataset_dir(path: Path, uri: str) -> None:
    """Remove a previous Parquet dataset at ``path`` so a rewrite does not append to it."""
    if not path.exists():
        return
    if not path.is_dir() or any(p.is_file() and p.suffix != ".parquet" for p in path.rglob("*")):
        raise FileExistsError(f"refusing to replace {uri}: it is not a directory of Parquet files")
    shutil.rmtree(path)


def write_dataset(df: pd.DataFrame, uri: str, *, partition_cols: Sequence[str] | None = None) -> None:
    """Write ``df`` (without its index) to ``uri``, creating parent folders.

    A path without a suffix is written as a Parquet dataset directory, partitioned
    hive-style by ``partition_cols`` when given. An existing directory is replaced,
    but only if it holds nothing but Parquet files (otherwise FileExistsError).
    """
    path = local_path(uri)
    if path.suffix and partition_cols:
        raise ValueError(f"partition_cols need a directory URI without a suffix, got {uri}")
    if path.suffix and path.suffix not in FILE_FORMATS:
        raise ValueError(f"unknown dataset format {path.suffix!r} for {uri}; expected {FILE_FORMATS} or a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        _clear_dataset_dir(path, uri)
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_to_dataset(table, path, partition_cols=list(partition_cols) if partition_cols else None)
    log.info("wrote %d rows x %d columns to %s", len(df), df.shape[1], uri)
