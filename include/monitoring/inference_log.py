"""The inference log: every prediction, online or batch, as Parquet partitioned by model, source and hour.

Layout (hive-style, so Spark, pyarrow and DuckDB read it as one dataset)::

    <root>/model=<name>/source=<online|batch>/date=YYYY-MM-DD/hour=HH/<file>.parquet

One row per prediction: ``request_id`` (string), ``ts`` (UTC timestamp of the request; for batch
rows the row's own event time, so a re-run lands in the same partitions), ``model_name``,
``model_version`` (string), one typed column per feature (so drift is computed per feature) and
``prediction`` (float64, the probability of the positive class), ``latency_ms`` (float64, the
server's time for the request; null for batch rows) and ``role`` (``live``: answered a caller;
``shadow``: the challenger's score of a live request, same ``request_id``; ``canary``: the challenger
answered; ``verification``: the deployment's checks; null: ``live``).

Online rows are written by Triton itself (:mod:`include.serving.triton.request_log`, in the python
backend), for every client: buffered, then one new file per flush and hour partition, written to a
dot-file first and renamed into place, so readers never see half a file and concurrent writers never
collide. :func:`log_predictions` appends the same way from Python (tests, back-fills, other writers). Batch scoring (:mod:`include.batch.scoring`) writes the
``source=batch`` partitions from its Spark job (pyarrow in the Python workers with the ONNX scorer,
Spark's writer with ``spark_udf``) and replaces a date's partitions on a re-run. An hour or a range is read
with :func:`read_hour` / :func:`read_range`, which open only the partition folders of the hours asked
for (no scan of the whole log) and raise on a file they cannot read as declared. Hourly monitoring
reads with :func:`read_checked`, which reads every file on its own, conforms it to the declared
types (:func:`include.monitoring.log_schema.read_file`) and reports what it could not read (a
corrupt file, a missing column, text where a number is declared) instead of losing the hour.

The root is a local folder or ``file://`` URI: the ``root`` argument, else ``MODELOPS_INFERENCE_LOG``,
else ``<MODELOPS_HOME or <project>/.modelops>/inference_log``.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from include import settings
from include.data.dataset import local_path
from include.monitoring.log_schema import (
    BASE_COLUMNS,
    CANARY,
    LATENCY,
    LIVE,
    MISSING_COLUMN,
    PREDICTION,
    RESERVED,
    ROLE,
    SHADOW,
    SOURCE_COLUMN,
    TS_TYPE,
    UNREADABLE_FILE,
    ReadIssue,
    arrow_type,
    read_file,
    utc,
)
from include.serving.triton.request_log import write_new_file  # one writer of log files, Triton's and ours

log = logging.getLogger(__name__)

SOURCES = ("online", "batch")

_HOUR = timedelta(hours=1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --- locations -------------------------------------------------------------------------------


def default_root() -> Path:
    """Where the log lives when nothing is configured: ``<state folder>/inference_log``."""
    return settings.state_dir() / "inference_log"


def log_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The log's root folder: ``root``, else ``$MODELOPS_INFERENCE_LOG``, else :func:`default_root`."""
    value = root if root is not None else settings.INFERENCE_LOG.get()
    return local_path(str(value)).expanduser().resolve() if value else default_root()


def hour_floor(when: datetime | pd.Timestamp | str) -> pd.Timestamp:
    """``when`` as a UTC timestamp truncated to its hour; a naive value is taken as UTC."""
    return utc(when).floor("h")


def source_path(model_name: str, source: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/model=<name>/source=<source>``: the folder batch scoring writes into."""
    _check_name(model_name)
    _check_source(source)
    return log_root(root) / f"model={model_name}" / f"source={source}"


def partition_path(
    model_name: str, source: str, hour: datetime | pd.Timestamp | str, root: str | os.PathLike[str] | None = None
) -> Path:
    """The folder that holds ``model_name``'s ``source`` predictions for the hour containing ``hour``."""
    start = hour_floor(hour)
    return source_path(model_name, source, root) / f"date={start:%Y-%m-%d}" / f"hour={start:%H}"


# --- writing ---------------------------------------------------------------------------------


def log_predictions(
    model_name: str,
    version: str | int,
    source: str,
    features: pd.DataFrame,
    predictions: Sequence[float] | np.ndarray | pd.Series,
    *,
    request_ids: Sequence[str] | None = None,
    ts: datetime | pd.Timestamp | str | Sequence | pd.Series | None = None,
    latency_ms: float | None = None,
    root: str | os.PathLike[str] | None = None,
    role: str = LIVE,
) -> list[Path]:
    """Append one prediction per row of ``features`` and return the files written.

    ``predictions`` is the positive-class probability per row; a two-column probability array
    (what the project's pyfunc models return) is accepted and its second column taken.
    ``request_ids`` default to fresh uuid4 strings; ``ts`` (one value for all rows, or one per
    row) defaults to now, UTC. ``latency_ms`` is the request's time (online serving); ``role``: see the module.
    Rows are split by the hour of their ``ts``: one new file per hour
    partition, never an edit of an existing file.
    """
    _check_name(model_name)
    _check_source(source)
    n = len(features)
    clash = sorted(RESERVED & set(map(str, features.columns)))
    if clash:
        raise ValueError(f"feature column(s) {clash} clash with the inference log's own columns")
    scores = _positive_class(predictions, n)
    ids = [str(uuid.uuid4()) for _ in range(n)] if request_ids is None else [str(r) for r in request_ids]
    if len(ids) != n:
        raise ValueError(f"request_ids: got {len(ids)} ids for {n} rows")
    stamps = _timestamps(ts, n)

    frame = pd.DataFrame({"request_id": ids, "ts": stamps, "model_name": model_name, "model_version": str(version)})
    frame = pd.concat([frame, features.reset_index(drop=True)], axis=1)
    frame[PREDICTION] = scores
    if latency_ms is not None:
        frame[LATENCY] = float(latency_ms)
    frame[ROLE] = role
    table = _to_table(frame)

    written = []
    hours = stamps.dt.floor("h")
    for hour in hours.unique():
        rows = np.flatnonzero((hours == hour).to_numpy())
        written.append(write_new_file(table.take(rows), partition_path(model_name, source, hour, root)))
    log.debug("logged %d %s predictions of %s v%s into %d file(s)", n, source, model_name, version, len(written))
    return written


def _positive_class(predictions, n: int) -> np.ndarray:
    values = np.asarray(predictions, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 2:
        values = values[:, 1]
    if values.ndim != 1:
        raise ValueError(f"predictions: expected one probability per row, got an array of shape {values.shape}")
    if len(values) != n:
        raise ValueError(f"predictions: got {len(values)} values for {n} rows")
    return values


def _timestamps(ts, n: int) -> pd.Series:
    """One UTC timestamp per row; naive values are taken as UTC."""
    if ts is None or isinstance(ts, (str, datetime, pd.Timestamp)):
        values = [pd.Timestamp.now(tz="UTC") if ts is None else ts] * n
    else:
        values = list(ts)
        if len(values) != n:
            raise ValueError(f"ts: got {len(values)} timestamps for {n} rows")
    return pd.Series(pd.to_datetime(values, utc=True, format="ISO8601"), dtype="datetime64[us, UTC]")


def _to_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as Arrow with the log's canonical types (int64, float64, string, UTC micros)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for field in table.schema:
        if pa.types.is_dictionary(field.type):
            field = field.with_type(field.type.value_type)
        if pa.types.is_integer(field.type):
            field = field.with_type(pa.int64())
        elif pa.types.is_floating(field.type):
            field = field.with_type(pa.float64())
        elif pa.types.is_large_string(field.type):
            field = field.with_type(pa.string())
        elif pa.types.is_timestamp(field.type):
            field = field.with_type(TS_TYPE)
        fields.append(field.remove_metadata())
    return table.cast(pa.schema(fields))


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRead:
    """What :func:`read_checked` read: the conformed frame, what was wrong, and how many files it opened."""

    frame: pd.DataFrame
    issues: tuple[ReadIssue, ...] = ()
    files: int = 0


def read_hour(
    model_name: str,
    hour_start: datetime | pd.Timestamp | str,
    root: str | os.PathLike[str] | None = None,
    source: str | None = None,
    *,
    features: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Every prediction of ``model_name`` in the hour containing ``hour_start`` (both sources unless given)."""
    start = hour_floor(hour_start)
    return read_range(model_name, start, start + _HOUR, root=root, source=source, features=features)


def read_range(
    model_name: str,
    start: datetime | pd.Timestamp | str,
    end: datetime | pd.Timestamp | str,
    root: str | os.PathLike[str] | None = None,
    source: str | None = None,
    *,
    features: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Predictions of ``model_name`` with ``start <= ts < end``, read from those hours' partitions only.

    Columns: ``request_id, ts, model_name, model_version``, the features, ``prediction``,
    ``latency_ms``, ``role`` and ``source``. ``features`` (name -> type keyword, e.g. a model config's feature types) selects
    and orders the feature columns and types them (each file is read as declared); without it every feature
    column found in the files is returned. No data gives an empty frame with those columns. A file
    missing a column that other files have gives null in its rows.

    Raises ``ValueError`` naming the file and column when a file cannot be read, holds values that
    are not of their declared type, or when a declared feature is in none of the files;
    :func:`read_checked` reads past those and reports them instead.
    """
    if features is not None:
        read = read_checked(model_name, start, end, features=features, root=root, source=source)
        _raise_on(read, features)
        return read.frame
    tables, issues = [], []
    for src, file in _files(model_name, start, end, root, source):
        table, problems = read_file(file, None)
        issues += problems
        if table is not None:
            tables.append(table.append_column(SOURCE_COLUMN, pa.array([src] * table.num_rows, pa.string())))
    if issues:
        raise ValueError("inference log: " + "; ".join(map(str, issues)))
    if not tables:
        return _empty_frame(None)
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"inference log files of {model_name} between {start} and {end} disagree on a column's "
                         f"type ({exc}); pass features= to read them as declared") from exc
    return _in_range(_select_columns(table, None), utc(start), utc(end))


def read_checked(
    model_name: str,
    start: datetime | pd.Timestamp | str,
    end: datetime | pd.Timestamp | str,
    *,
    features: Mapping[str, str],
    root: str | os.PathLike[str] | None = None,
    source: str | None = None,
) -> LogRead:
    """Like :func:`read_range` with declared ``features``, but what cannot be read is reported, not raised.

    Each file is read on its own and conformed to the declared types (``int`` -> int64, ``float``
    -> float64, ``category``/``string`` -> text, ``bool``, ``timestamp`` -> UTC; the log's own
    columns to theirs): a value stored in another type that reads as the declared one (``"42"``
    for an int, an int for a float, a number for text) is converted; one that does not (``"12k"``
    for a number) becomes null and is counted as ``wrong_type``; a missing column becomes null
    (``missing_column``); a file that cannot be opened, or has no readable ``ts``, is left out
    (``unreadable_file``). A zero-row file reads as nothing. The issues name the file.
    """
    types = {name: arrow_type(name, kind) for name, kind in features.items()}
    clash = sorted(RESERVED & set(types))
    if clash:
        raise ValueError(f"feature column(s) {clash} clash with the inference log's own columns")
    tables, issues, files = [], [], 0
    for src, file in _files(model_name, start, end, root, source):
        files += 1
        table, problems = read_file(file, types)
        issues += problems
        if table is not None:
            tables.append(table.append_column(SOURCE_COLUMN, pa.array([src] * table.num_rows, pa.string())))
    if not tables:
        return LogRead(_empty_frame(features), tuple(issues), files)
    table = pa.concat_tables(tables)  # one schema: every file was conformed to it
    return LogRead(_in_range(table, utc(start), utc(end)), tuple(issues), files)


def _files(model_name: str, start, end, root, source: str | None) -> Iterator[tuple[str, Path]]:
    _check_name(model_name)
    sources = SOURCES if source is None else (_check_source(source),)
    lo, hi = utc(start), utc(end)
    if hi < lo:
        raise ValueError(f"end {hi} is before start {lo}")
    for src in sources:
        for folder in _hour_folders(model_name, src, lo, hi, root):
            for file in sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_"))):
                yield src, file


def _raise_on(read: LogRead, features: Mapping[str, str]) -> None:
    """read_range's strictness: what read_checked reports, as one error naming the files."""
    missing = [name for name in features if _missing_everywhere(read, name)]
    if missing:
        raise ValueError(f"feature column(s) {missing} are not in the inference log")
    serious = [i for i in read.issues if i.kind != MISSING_COLUMN]
    if serious:
        raise ValueError("inference log: " + "; ".join(map(str, serious)))


def _missing_everywhere(read: LogRead, name: str) -> bool:
    """Whether no readable file of the read had column ``name`` (with at least one readable file)."""
    readable = read.files - len({i.file for i in read.issues if i.kind == UNREADABLE_FILE})
    lacking = {i.file for i in read.issues if i.kind == MISSING_COLUMN and i.column == name}
    return readable > 0 and len(lacking) >= readable


def _hour_folders(model_name: str, source: str, lo: pd.Timestamp, hi: pd.Timestamp, root) -> Iterator[Path]:
    hour = lo.floor("h")
    while hour < hi:
        folder = partition_path(model_name, source, hour, root)
        if folder.is_dir():
            yield folder
        hour += _HOUR


def _in_range(table: pa.Table, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    frame = table.to_pandas()
    in_range = (frame["ts"] >= lo) & (frame["ts"] < hi)
    return frame[in_range].reset_index(drop=True)


def _select_columns(table: pa.Table, features: Mapping[str, str] | None) -> pa.Table:
    if features is None:
        names = [n for n in table.column_names if n not in RESERVED]
    else:
        missing = [n for n in features if n not in table.column_names]
        if missing:
            raise ValueError(f"feature column(s) {missing} are not in the inference log")
        names = list(features)
    if LATENCY not in table.column_names:
        table = table.append_column(LATENCY, pa.nulls(table.num_rows, pa.float64()))
    if ROLE not in table.column_names:
        table = table.append_column(ROLE, pa.nulls(table.num_rows, pa.string()))
    table = table.select([*BASE_COLUMNS, *names, PREDICTION, LATENCY, ROLE, SOURCE_COLUMN])
    return table.set_column(1, "ts", table.column("ts").cast(TS_TYPE))


def _empty_frame(features: Mapping[str, str] | None) -> pd.DataFrame:
    fields = [
        ("request_id", pa.string()),
        ("ts", TS_TYPE),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
    ]
    for name, kind in (features or {}).items():
        fields.append((name, arrow_type(name, kind)))
    fields += [(PREDICTION, pa.float64()), (LATENCY, pa.float64()), (ROLE, pa.string()), (SOURCE_COLUMN, pa.string())]
    return pa.schema(fields).empty_table().to_pandas()


def split_roles(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows that answered callers with the served version — ``live`` and null roles —, the challenger's
    rows — ``shadow`` and ``canary`` —) of a frame read from the log; ``verification`` rows are in neither."""
    if ROLE not in frame.columns:
        return frame, frame.iloc[0:0]
    role = frame[ROLE]
    live = role.isna() | (role == LIVE)
    challenger = role.isin([SHADOW, CANARY])
    return frame[live.to_numpy()].reset_index(drop=True), frame[challenger.to_numpy()].reset_index(drop=True)


# --- checks ----------------------------------------------------------------------------------


def _check_name(model_name: str) -> str:
    if not _NAME.match(model_name or ""):
        raise ValueError(f"model_name {model_name!r} is not a valid name (letters, digits, '_', '.', '-')")
    return model_name


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is not one of {SOURCES}")
    return source
