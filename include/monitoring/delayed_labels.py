"""Delayed outcomes: what really happened to a prediction, arriving hours or days after it.

The business (a loan book, a CRM…) drops outcome files keyed by the prediction's request id::

    <outcomes_uri>/date=YYYY-MM-DD/<file>.parquet      # partitioned by the day the outcomes arrived

with a ``request_id`` column plus the model's target and outcome columns (e.g. ``defaulted``,
``repaid_amount``). Hourly monitoring joins them to the hour's predictions by request id, reading
only the partitions that can hold them: from the hour's day to ``outcome_delay_days`` after it.
A request id that arrives twice keeps its latest arrival (corrections win).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from include.data.dataset import local_path
from include.monitoring.inference_log import write_new_file

REQUEST_ID = "request_id"
ARRIVED_AT = "arrived_at"


def _root(uri: str | os.PathLike[str]) -> Path:
    return local_path(str(uri)).expanduser().resolve()


def _utc(value: datetime | pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def log_outcomes(
    uri: str | os.PathLike[str], frame: pd.DataFrame, *, arrived_at: datetime | pd.Timestamp | str | None = None
) -> Path:
    """Append outcomes (``request_id`` + outcome columns) as a new file in their arrival day's partition."""
    if REQUEST_ID not in frame.columns:
        raise ValueError(f"outcomes need a {REQUEST_ID!r} column; got columns {sorted(map(str, frame.columns))}")
    if frame[REQUEST_ID].isna().any():
        raise ValueError(f"outcomes: {int(frame[REQUEST_ID].isna().sum())} row(s) have no {REQUEST_ID}")
    when = _utc(arrived_at) if arrived_at is not None else pd.Timestamp.now(tz="UTC")
    out = frame.reset_index(drop=True).assign(**{REQUEST_ID: frame[REQUEST_ID].astype(str).to_numpy()})
    out[ARRIVED_AT] = when
    table = pa.Table.from_pandas(out, preserve_index=False)
    return write_new_file(table, _root(uri) / f"date={when:%Y-%m-%d}")


def read_outcomes(
    uri: str | os.PathLike[str],
    since: datetime | pd.Timestamp | str,
    until: datetime | pd.Timestamp | str,
    columns: list[str] | None = None,
    *,
    skipped: list[tuple[Path, str]] | None = None,
) -> pd.DataFrame:
    """Outcomes that arrived on the days from ``since`` to ``until`` (inclusive), one row per request id.

    A file that cannot be read or lacks one of ``columns`` raises ``ValueError`` naming it; when
    ``skipped`` is a list, such a file is left out and ``(path, why)`` appended to it instead.
    """
    lo, hi = _utc(since).normalize(), _utc(until).normalize()
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
                        raise ValueError(f"outcome file {file} cannot be read as Parquet ({exc})") from exc
                    skipped.append((file, f"cannot be read as Parquet ({exc})"))
                    continue
                missing = [c for c in [REQUEST_ID, *(columns or [])] if c not in table.column_names]
                if missing:
                    if skipped is None:
                        raise ValueError(f"outcome file {file} lacks column(s) {missing}")
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
