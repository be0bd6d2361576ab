"""The server-side inference log: what Triton's python backend scored, buffered and written as Parquet row groups.

:func:`include.serving.triton.repository.export_version` copies this file unchanged beside ``model.py``
in every version folder; ``model.py`` imports it there (Triton puts the version folder on the stub's
``sys.path``). Like ``model.py`` it runs in Triton's own virtualenv, so it imports only the standard
library, numpy and pyarrow: the layout it writes is the one :mod:`include.monitoring.inference_log`
reads (``<root>/model=<name>/source=online/date=YYYY-MM-DD/hour=HH/part-*.parquet``, the columns of
:mod:`include.monitoring.log_schema`), and a test holds the two to the same paths and columns.

:class:`RequestLog` buffers the rows of each executed batch in memory (``append`` only keeps references
to the batch's arrays: the request path does no Parquet work) and a background thread writes them:
when ``flush_rows`` rows are waiting or ``flush_seconds`` after the oldest waiting row, whichever
comes first, as one new file per hour partition (one row group), written to a dot-file and renamed
into place, so a reader never sees half a file. ``close()`` (the model's ``finalize``, on unload and on
server shutdown) writes what is left. A process killed without ``finalize`` (SIGKILL, a crash of the
stub) loses what was buffered: at most ``flush_rows`` rows or ``flush_seconds`` of traffic per model
instance. A write that fails (disk full, permissions) is reported on stderr (Triton's log) and its
rows are kept for the next flush (``flush_seconds`` later), up to ``max_buffered_rows``; beyond that the oldest are dropped and
counted in :attr:`RequestLog.dropped`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SOURCE = "online"
LIVE, SHADOW, CANARY, VERIFICATION = "live", "shadow", "canary", "verification"
ROLES = (LIVE, SHADOW, CANARY, VERIFICATION)
ROOT_ENV = "MODELOPS_INFERENCE_LOG"
TS_TYPE = pa.timestamp("us", tz="UTC")
_ARROW = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "category": pa.string(), "string": pa.string()}
_US_PER_HOUR = 3_600_000_000


def partition(root: Path, model: str, hour_start_us: int) -> Path:
    """``<root>/model=<model>/source=online/date=YYYY-MM-DD/hour=HH`` of the hour starting at ``hour_start_us``
    (microseconds since the epoch, UTC)."""
    stamp = time.gmtime(hour_start_us // 1_000_000)
    return root / f"model={model}" / f"source={SOURCE}" / time.strftime("date=%Y-%m-%d", stamp) / time.strftime(
        "hour=%H", stamp)


def write_new_file(table: pa.Table, folder: Path) -> Path:
    """``table`` as a new, uniquely named Parquet file in ``folder``: written to a dot-file, then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.time_ns()}-{uuid.uuid4().hex}.parquet"
    target, temp = folder / name, folder / f".{name}.tmp"
    try:
        pq.write_table(table, temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


class Batch(tuple):
    """The rows of one executed request as the backend scored them: a plain tuple, cheap to make on the request path.

    ``(request_ids, ts_us, version, numeric, categorical, scores, latency_ms, role)``: one id per row;
    when the request was executed (µs since the epoch, UTC); the version that scored it;
    ``numeric`` ``[N, k]`` float64 in the order of the log's numeric columns (or None); ``categorical``
    ``[N, m]`` of str (or None); ``scores`` ``[N]`` or ``[N, 1]`` positive-class probability; the
    server's time for the request (ms, one value); its role.
    """

    __slots__ = ()

    def __new__(cls, request_ids, ts_us, version, numeric, categorical, scores, latency_ms, role):
        return tuple.__new__(cls, (request_ids, ts_us, version, numeric, categorical, scores, latency_ms, role))


class RequestLog:
    """One model instance's writer of the inference log; ``append`` per batch, ``close`` at ``finalize``.

    ``columns``: the feature columns in the order the packed inputs carry them: ``numeric`` then
    ``categorical``, each ``[(name, type keyword)]`` (``int``, ``float``, ``bool``, ``category``, ``string``).
    """

    def __init__(self, root: Path | str, model: str, numeric: list[tuple[str, str]],
                 categorical: list[tuple[str, str]], *, flush_rows: int = 10_000, flush_seconds: float = 5.0,
                 max_buffered_rows: int = 1_000_000) -> None:
        if flush_rows < 1 or flush_seconds <= 0:
            raise ValueError(f"flush_rows must be >= 1 and flush_seconds > 0, got {flush_rows} and {flush_seconds}")
        self.root = Path(root)
        self.model = model
        self.numeric = numeric
        self.categorical = categorical
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_buffered_rows = max_buffered_rows
        self.written_rows = 0
        self.dropped = 0
        self.files = 0
        self._pending: list[Batch] = []
        self._pending_rows = 0
        self._oldest: float | None = None
        self._retry_at = 0.0  # after a failed write, not before this (monotonic seconds)
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"inference-log-{model}", daemon=True)
        self._thread.start()

    def append(self, batch: Batch) -> None:
        """Queue ``batch``'s rows (a reference, no copy); the writer thread flushes them (never the caller)."""
        rows = len(batch[0])
        if rows == 0:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("the inference log is closed")
            self._pending.append(batch)
            self._pending_rows += rows
            first = self._oldest is None
            if first:
                self._oldest = time.monotonic()
            if first or self._pending_rows >= self.flush_rows:  # the writer sets its deadline, or flushes
                self._lock.notify()

    def flush(self) -> int:
        """Write every queued row now (the caller's thread); returns how many were written."""
        with self._lock:
            batches, self._pending, self._pending_rows, self._oldest = self._pending, [], 0, None
        return self._write(batches)

    def close(self) -> None:
        """Stop the writer thread and write what is left; a second call does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify()
        self._thread.join()
        self.flush()

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:  # Linux: this thread alone at the lowest CPU priority, so on a busy machine requests go first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        while True:
            with self._lock:
                while not self._closed and not self._due():
                    if self._oldest is None:
                        timeout = None
                    else:
                        due = max(self._oldest + self.flush_seconds, self._retry_at)
                        timeout = max(0.01, due - time.monotonic())
                    self._lock.wait(timeout)
                if self._closed:
                    return
                batches, self._pending, self._pending_rows, self._oldest = self._pending, [], 0, None
            self._write(batches)

    def _due(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        return self._pending_rows >= self.flush_rows or (
            self._oldest is not None and now - self._oldest >= self.flush_seconds)

    def _write(self, batches: list[Batch]) -> int:
        if not batches:
            return 0
        try:
            written = 0
            for hour, group in _by_hour(batches).items():
                write_new_file(self.table(group), partition(self.root, self.model, hour))
                written += sum(len(b[0]) for b in group)
                self.files += 1
            self.written_rows += written
            return written
        except Exception as exc:  # keep the rows for the next flush; never take the server down
            self._requeue(batches)
            print(f"modelops inference log: writing {sum(len(b[0]) for b in batches)} row(s) of {self.model} under "
                  f"{self.root} failed ({type(exc).__name__}: {exc}); kept for the next flush", file=sys.stderr,
                  flush=True)
            return 0

    def _requeue(self, batches: list[Batch]) -> None:
        with self._lock:
            self._pending = batches + self._pending
            self._pending_rows += sum(len(b[0]) for b in batches)
            self._oldest = time.monotonic()
            self._retry_at = self._oldest + self.flush_seconds  # back off: a full disk is not fixed in a loop
            while self._pending_rows > self.max_buffered_rows and self._pending:
                dropped = self._pending.pop(0)
                self._pending_rows -= len(dropped[0])
                self.dropped += len(dropped[0])

    def table(self, batches: list[Batch]) -> pa.Table:
        """The batches' rows as the log's Arrow table (columns of :mod:`include.monitoring.log_schema` + ``role``)."""
        counts = np.fromiter((len(b[0]) for b in batches), dtype=np.int64, count=len(batches))
        rows = int(counts.sum())
        columns: dict[str, pa.Array] = {
            "request_id": pa.array([r for b in batches for r in b[0]], pa.string()),
            "ts": pa.array(np.repeat(np.fromiter((b[1] for b in batches), np.int64, len(batches)), counts),
                           pa.int64()).cast(TS_TYPE),
            "model_name": pa.array([self.model], pa.string()).take(pa.array(np.zeros(rows, dtype=np.int64))),
            "model_version": _repeat([b[2] for b in batches], counts),
        }
        if self.numeric:
            matrix = np.concatenate([b[3] for b in batches]).astype(np.float64, copy=False)
            for i, (name, kind) in enumerate(self.numeric):
                columns[name] = _numeric(matrix[:, i], kind)
        if self.categorical:
            matrix = np.concatenate([b[4] for b in batches])
            for j, (name, _) in enumerate(self.categorical):
                text = pa.array(matrix[:, j], pa.string())
                columns[name] = pc.if_else(pc.equal(text, ""), None, text)  # the client sends a missing value as ""
        scores = np.concatenate([np.asarray(b[5], dtype=np.float64).reshape(-1) for b in batches])
        columns["prediction"] = pa.array(scores, pa.float64())
        latency = np.repeat(np.fromiter((b[6] for b in batches), np.float64, len(batches)), counts)
        columns["latency_ms"] = pa.array(latency, pa.float64())
        columns["role"] = _repeat([b[7] for b in batches], counts)
        return pa.table(columns)


def _repeat(values: list[str], counts: np.ndarray) -> pa.Array:
    """One text value per batch, repeated for its rows."""
    return pa.array(np.repeat(np.array(values, dtype=object), counts), pa.string())


def _numeric(values: np.ndarray, kind: str) -> pa.Array:
    """A float64 column as its declared type; NaN is null, and so is a value the type cannot hold."""
    floats = values.astype(np.float64)
    target = _ARROW.get(kind, pa.float64())
    if target == pa.float64():
        return pa.array(floats, pa.float64(), from_pandas=True)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(floats) & (floats == np.round(floats)) & (np.abs(floats) < 2.0**63)
    if target == pa.bool_():
        return pa.array(np.where(usable, floats, 0) != 0, pa.bool_(), mask=~usable)
    return pa.array(np.where(usable, floats, 0).astype(np.int64), pa.int64(), mask=~usable)


def _by_hour(batches: list[Batch]) -> dict[int, list[Batch]]:
    hours: dict[int, list[Batch]] = {}
    for batch in batches:
        hours.setdefault(batch[1] - batch[1] % _US_PER_HOUR, []).append(batch)
    return hours
