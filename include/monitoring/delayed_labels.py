"""Delayed labels (ground truth): what really happened to a prediction, arriving hours or days after it.

The business (a loan book, a CRM…) drops label files keyed by the prediction's request id::

    <outcomes_uri>/date=YYYY-MM-DD/<file>.parquet      # partitioned by the day the labels arrived

with a ``request_id`` column plus the model's target column (the label, e.g. ``defaulted``) and,
when the model has one, its business outcome column (e.g. ``repaid_amount``). Hourly monitoring
joins them to the hour's predictions by request id (:func:`join_labels`), reading only the
partitions that can hold them: from the hour's day to ``outcome_delay_days`` after it. A request
id that arrives twice keeps its latest arrival (corrections win). The config keys keep their
names (``monitoring.outcomes_uri``, ``monitoring.outcome_delay_days``).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from include.config import ModelConfig, resolve_uri
from include.data.dataset import local_path
from include.monitoring.data_quality import OUTCOMES_UNREADABLE, WRONG_TYPE, DataQualityIssue, files_text
from include.monitoring.inference_log import write_new_file
from include.monitoring.log_schema import ReadIssue, utc

log = logging.getLogger(__name__)

REQUEST_ID = "request_id"
ARRIVED_AT = "arrived_at"


def _root(uri: str | os.PathLike[str]) -> Path:
    return local_path(str(uri)).expanduser().resolve()


def log_labels(
    uri: str | os.PathLike[str], frame: pd.DataFrame, *, arrived_at: datetime | pd.Timestamp | str | None = None
) -> Path:
    """Append delayed labels (``request_id`` + label columns) as a new file in their arrival day's partition.

    ``arrived_at``: when they arrived (default: now; without a zone, UTC). Returns the file written.
    Raises ``ValueError`` without a ``request_id`` column or with a row that has none.
    """
    if REQUEST_ID not in frame.columns:
        raise ValueError(f"delayed labels need a {REQUEST_ID!r} column; got columns {sorted(map(str, frame.columns))}")
    if frame[REQUEST_ID].isna().any():
        raise ValueError(f"delayed labels: {int(frame[REQUEST_ID].isna().sum())} row(s) have no {REQUEST_ID}")
    when = utc(arrived_at) if arrived_at is not None else pd.Timestamp.now(tz="UTC")
    out = frame.reset_index(drop=True).assign(**{REQUEST_ID: frame[REQUEST_ID].astype(str).to_numpy()})
    out[ARRIVED_AT] = when
    table = pa.Table.from_pandas(out, preserve_index=False)
    return write_new_file(table, _root(uri) / f"date={when:%Y-%m-%d}")


def read_labels(
    uri: str | os.PathLike[str],
    since: datetime | pd.Timestamp | str,
    until: datetime | pd.Timestamp | str,
    columns: list[str] | None = None,
    *,
    skipped: list[tuple[Path, str]] | None = None,
) -> pd.DataFrame:
    """Delayed labels that arrived on the days from ``since`` to ``until`` (inclusive), one row per request id.

    A file that cannot be read or lacks one of ``columns`` raises ``ValueError`` naming it; when
    ``skipped`` is a list, such a file is left out and ``(path, why)`` appended to it instead.
    """
    lo, hi = utc(since).normalize(), utc(until).normalize()
    root = _root(uri)
    frames = []
    day = lo
    while day <= hi:
        folder = root / f"date={day:%Y-%m-%d}"
        if folder.is_dir():
            for file in sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_"))):
                try:
                    table = pq.read_table(file)
                except (pa.ArrowException, OSError, ValueError) as exc:
                    if skipped is None:
                        raise ValueError(f"label file {file} cannot be read as Parquet ({exc})") from exc
                    skipped.append((file, f"cannot be read as Parquet ({exc})"))
                    continue
                missing = [c for c in [REQUEST_ID, *(columns or [])] if c not in table.column_names]
                if missing:
                    if skipped is None:
                        raise ValueError(f"label file {file} lacks column(s) {missing}")
                    skipped.append((file, f"lacks column(s) {missing}"))
                    continue
                if columns is not None:
                    arrival = [ARRIVED_AT] if ARRIVED_AT in table.column_names else []
                    table = table.select(list(dict.fromkeys([REQUEST_ID, *columns, *arrival])))
                frames.append(table.to_pandas())
        day += timedelta(days=1)
    if not frames:
        return pd.DataFrame({REQUEST_ID: pd.Series(dtype=object), **{c: pd.Series(dtype=float) for c in columns or []}})
    out = pd.concat(frames, ignore_index=True)
    if ARRIVED_AT in out.columns:
        out = out.sort_values(ARRIVED_AT, kind="stable")
    return out.drop_duplicates(REQUEST_ID, keep="last").reset_index(drop=True)


def join_labels(
    config: ModelConfig, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, *,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, list[DataQualityIssue]]:
    """The hour's predictions with the target and outcome columns of the delayed labels that have arrived.

    ``frame``: the hour's predictions (with ``request_id``); the result has the same rows, left-joined.
    Reads ``monitoring.outcomes_uri`` from the hour's day to ``outcome_delay_days`` after it (or
    ``now``). A file that cannot be read or lacks a column is left out (``outcomes_unreadable``);
    values of the target / outcome that are not numbers count as ``wrong_type`` and are null. No
    ``outcomes_uri``: the columns are NaN (KPIs that need labels have no value). Returns the joined
    frame and those data-quality issues.
    """
    mon = config.monitoring
    columns = [config.dataset.target.name, *([config.dataset.outcome.name] if config.dataset.outcome else [])]
    if mon.outcomes_uri is None:
        return frame.assign(**{c: np.nan for c in columns}), []
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    until = min(now, end + pd.Timedelta(days=mon.outcome_delay_days))
    skipped: list[tuple[Path, str]] = []
    arrived = read_labels(resolve_uri(mon.outcomes_uri), start, max(until, start), columns=columns, skipped=skipped)
    issues = []
    if skipped:
        issues.append(DataQualityIssue(
            OUTCOMES_UNREADABLE, None, len(skipped), float(len(skipped)), 1.0,
            f"{len(skipped)} delayed-label file(s) were left out: "
            + files_text([ReadIssue("", str(f), None, 0, why) for f, why in skipped]),
            tuple(str(f) for f, _ in skipped)))
    arrived = arrived.assign(**{REQUEST_ID: arrived[REQUEST_ID].astype(str)})
    for column in columns:
        raw = arrived[column]
        if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_numeric_dtype(raw.dtype):
            numbers = raw.astype("float64")
        else:
            numbers = pd.to_numeric(raw.astype(object), errors="coerce")
        bad = int((raw.notna() & numbers.isna()).sum())
        if bad:
            issues.append(DataQualityIssue(
                WRONG_TYPE, column, bad, bad / max(len(arrived), 1), mon.data_quality_warning,
                f"{bad} of {len(arrived)} arrived label value(s) of {column!r} are not numbers and were read as "
                f"null (e.g. {', '.join(map(repr, raw[raw.notna() & numbers.isna()].unique()[:3]))})"))
        arrived[column] = numbers.astype("float64")
    joined = frame.merge(arrived[[REQUEST_ID, *columns]], on=REQUEST_ID, how="left")
    log.info("%d of %d predictions have their label", int(joined[columns[0]].notna().sum()), len(joined))
    return joined, issues
