"""Read and write tabular datasets by URI.

A URI is a local path or a ``file://`` URI. The format follows from the path:

* ``*.parquet`` - a single Parquet file;
* ``*.csv`` - a single CSV file (header row, no index column);
* a directory (on write: a path without a suffix) - a Parquet dataset of one or
  more files, read with :mod:`pyarrow.dataset`. Hive-style partition folders
  (``region=north/``) are discovered and their keys come back as ordinary
  columns, appended after the file columns, with inferred types (e.g. an int
  key reads back as int32). Row order across files is not guaranteed.

CSV is lossy about types (timestamps read back as strings, an int column with
nulls as float), so compare CSV data through
:func:`include.fingerprint.dataset_fingerprint` with declared column types.
Other schemes (``s3://`` ...) are rejected with a ``ValueError``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

FILE_FORMATS = (".parquet", ".csv")


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


def read_dataset(uri: str) -> pd.DataFrame:
    """Read the dataset at ``uri`` into a DataFrame with a fresh RangeIndex."""
    path = local_path(uri)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {uri}")
    if path.is_dir():
        table = pads.dataset(path, format="parquet", partitioning="hive").to_table()
        df = table.to_pandas()
    elif path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        # Only empty fields are nulls (that is how to_csv writes them): strings such
        # as "N/A" stay strings. round_trip parses floats back to the exact value.
        df = pd.read_csv(path, keep_default_na=False, na_values=[""], float_precision="round_trip")
    else:
        raise ValueError(f"unknown dataset format {path.suffix!r} for {uri}; expected {FILE_FORMATS} or a directory")
    log.debug("read %d rows x %d columns from %s", len(df), df.shape[1], uri)
    return df.reset_index(drop=True)


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
