"""The audit ledger: one append-only, hash-chained table of everything that changes what is live.

Each record (:class:`Entry`) holds the time (UTC), the actor, the model, the version(s), the action,
the reason, the details, the Airflow run that wrote it, an idempotency key, and the SHA-256 of the
record before it (``prev_hash``); its own ``hash`` is SHA-256 over ``prev_hash`` and a canonical
serialisation of its content (:func:`canonical`: JSON, sorted keys, no whitespace, ASCII). The first
record links to :data:`GENESIS`. Editing, inserting, deleting or reordering a record breaks the chain
at that record; :mod:`include.governance.integrity` walks it and names the record, and anchors the
head outside the database so that a truncated tail is found too.

Storage: one SQL table through SQLAlchemy, ``sqlite:///<state folder>/ledger.db`` by default,
PostgreSQL in production (``MODELOPS_LEDGER_URL``, :func:`include.settings.ledger_url`).

Concurrency: appends are serialised so that two writers (two DAG runs, two processes) never fork
the chain: ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL; and
whatever the database, ``seq`` is the primary key and ``prev_hash`` is unique, so a fork cannot be
stored even if the lock were bypassed: the losing writer gets an integrity error and retries on
the new head.

Idempotency: a record written by an Airflow run carries an idempotency key derived from the run, the
action, the model and the version(s) (:func:`idempotency_key`); it is unique, so a retried task
that writes the same record again gets the stored one back and the chain does not grow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from include import settings

log = logging.getLogger(__name__)

GENESIS = "0" * 64  # the prev_hash of the first record ever written
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
MAX_APPEND_ATTEMPTS = 20
_PG_LOCK_KEY = 0x6D6F_6465_6C6F_7073  # "modelops": the advisory lock that serialises appends
_KEY_LENGTH = 71  # "sha256:" + 64 hex

metadata = sa.MetaData()
records_table = sa.Table(
    "modelops_ledger",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(250), nullable=False),
    sa.Column("model", sa.String(250), nullable=False),
    sa.Column("version", sa.String(64)),
    sa.Column("versions", sa.Text, nullable=False),  # JSON list: every version the record concerns
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON object
    sa.Column("dag_id", sa.String(250)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("idempotency_key", sa.String(_KEY_LENGTH), unique=True),
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Index("ix_modelops_ledger_model_version", "model", "version"),
    sa.Index("ix_modelops_ledger_model_action", "model", "action"),
    sa.Index("ix_modelops_ledger_at", "at"),
)

CONTENT_FIELDS = ("at", "actor", "model", "version", "versions", "action", "reason", "details", "dag_id", "run_id",
                  "idempotency_key")


class LedgerError(RuntimeError):
    """The ledger could not be written or read (the message names the database and the cause)."""


def utc_now() -> str:
    """The current UTC time as the ledger writes it: ISO 8601 with microseconds and ``Z``."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


def as_time(value: datetime | str) -> str:
    """``value`` in the ledger's time format; a naive datetime is taken as UTC. Raises ValueError on bad text
    or a time that falls outside years 1–9999 once in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC).strftime(TIME_FORMAT)
    except OverflowError:
        raise ValueError(f"time out of range once in UTC: {value.isoformat()}") from None


def canonical(content: Mapping[str, object]) -> bytes:
    """The bytes a record's hash covers: JSON with sorted keys, no whitespace, ASCII only.

    Values that are not JSON types are written with ``str()``, so what is hashed is what is stored.
    """
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


def chain_hash(prev_hash: str, content: Mapping[str, object]) -> str:
    """SHA-256 (hex) of ``prev_hash``, a newline and :func:`canonical` ``content``."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(content)).hexdigest()


def idempotency_key(*, dag_id: str | None, run_id: str | None, action: str, model: str,
                    versions: Sequence[str], discriminator: str | None = None) -> str | None:
    """``sha256:<hex>`` naming one record of one Airflow run, or None for a record no run wrote.

    The same run, action, model, versions and ``discriminator`` (e.g. the alias an ``alias_set``
    record moves) give the same key, so the record is written once however often the task retries.
    """
    if not run_id:
        return None
    payload = {"dag_id": dag_id, "run_id": run_id, "action": action, "model": model, "versions": list(versions),
               "discriminator": discriminator}
    return "sha256:" + hashlib.sha256(canonical(payload)).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One stored record. ``details`` is a JSON object; ``versions`` every version it concerns."""

    seq: int
    at: str
    actor: str
    model: str
    version: str | None
    versions: tuple[str, ...]
    action: str
    reason: str
    details: dict = field(default_factory=dict)
    dag_id: str | None = None
    run_id: str | None = None
    idempotency_key: str | None = None
    prev_hash: str = GENESIS
    hash: str = ""

    def content(self) -> dict:
        """What the hash covers (everything but ``seq``, ``prev_hash`` and ``hash``)."""
        return {"at": self.at, "actor": self.actor, "model": self.model, "version": self.version,
                "versions": list(self.versions), "action": self.action, "reason": self.reason,
                "details": self.details, "dag_id": self.dag_id, "run_id": self.run_id,
                "idempotency_key": self.idempotency_key}

    def as_dict(self) -> dict:
        """The record as plain JSON types (``versions`` a list), as exported and served."""
        data = asdict(self)
        data["versions"] = list(self.versions)
        return data

    def concerns(self, version: str) -> bool:
        return version == self.version or version in self.versions


def entry_from_row(row: Mapping) -> Entry:
    """An :class:`Entry` from a stored row (a mapping of the table's columns); text that is not JSON is kept as text so a tampered row stays readable."""
    def _json(text: str, default):
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            return default if text is None else text

    versions = _json(row["versions"], [])
    return Entry(seq=int(row["seq"]), at=row["at"], actor=row["actor"], model=row["model"], version=row["version"],
                 versions=tuple(str(v) for v in versions) if isinstance(versions, list) else (str(versions),),
                 action=row["action"], reason=row["reason"], details=_json(row["details"], {}), dag_id=row["dag_id"],
                 run_id=row["run_id"], idempotency_key=row["idempotency_key"], prev_hash=row["prev_hash"],
                 hash=row["hash"])


@cache
def _engine(url: str) -> Engine:
    sqlite = url.startswith("sqlite")
    engine = sa.create_engine(url, future=True, pool_pre_ping=not sqlite,
                              connect_args={"timeout": 60} if sqlite else {})
    if sqlite:
        # pysqlite opens transactions lazily and as DEFERRED: two writers both read the head and one
        # fails late. Take the write lock when the transaction begins instead (SQLAlchemy's recipe).
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA busy_timeout=60000")

        @event.listens_for(engine, "begin")
        def _begin(connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    return engine


class Ledger:
    """The ledger at ``url`` (default :func:`include.settings.ledger_url`); the table is created on first use.

    Raises :class:`LedgerError` naming the database when it cannot be reached or written.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url or settings.ledger_url()
        self.engine = _engine(self.url)
        if self.url.startswith("sqlite:///"):
            from pathlib import Path

            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except OperationalError as exc:  # two processes creating the table at once: the loser finds it made
            if "already exists" not in str(exc):
                raise LedgerError(f"audit ledger {self.display_url}: {exc.orig}") from exc

    @property
    def display_url(self) -> str:
        """The URL without its password, for messages."""
        return sa.make_url(self.url).render_as_string(hide_password=True)

    # --- writing ---------------------------------------------------------------------------

    def append(self, *, action: str, model: str, actor: str, reason: str = "", version: str | None = None,
               versions: Iterable[str] = (), details: Mapping | None = None, dag_id: str | None = None,
               run_id: str | None = None, at: str | None = None, key: str | None = None,
               discriminator: str | None = None) -> Entry:
        """Append one record at the head of the chain and return it as stored.

        ``versions``: every version the record concerns (``version`` first, added when missing);
        ``key``: an explicit idempotency key (e.g. a webhook delivery's), else one derived from the
        Airflow run (:func:`idempotency_key`, with ``discriminator``). A record whose key is already
        stored is not written again: the stored one is returned. ``at`` defaults to now (UTC).
        Raises :class:`LedgerError` when the database cannot be written after retries.
        """
        all_versions = tuple(dict.fromkeys([*([str(version)] if version is not None else []),
                                             *(str(v) for v in versions)]))
        content = {
            "at": as_time(at) if at else utc_now(), "actor": actor or "unknown", "model": model,
            "version": None if version is None else str(version), "versions": list(all_versions),
            "action": action, "reason": reason or "", "details": json.loads(canonical(dict(details or {}))),
            "dag_id": dag_id, "run_id": run_id,
            "idempotency_key": key or idempotency_key(dag_id=dag_id, run_id=run_id, action=action, model=model,
                                                      versions=all_versions, discriminator=discriminator),
        }
        for attempt in range(MAX_APPEND_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                    if content["idempotency_key"] and (found := self._by_key(conn, content["idempotency_key"])):
                        return found
                    head = conn.execute(sa.select(records_table.c.seq, records_table.c.hash)
                                        .order_by(records_table.c.seq.desc()).limit(1)).first()
                    seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
                    digest = chain_hash(prev, content)
                    row = {**content, "versions": json.dumps(content["versions"]),
                           "details": canonical(content["details"]).decode(), "seq": seq, "prev_hash": prev,
                           "hash": digest}
                    conn.execute(records_table.insert().values(**row))
                entry = entry_from_row(row)
                log.info("LEDGER #%s %s %s v%s by %s: %s", seq, action, model, entry.version, entry.actor,
                         reason.splitlines()[0] if reason else "")
                return entry
            except IntegrityError:  # another writer took this head (or stored the same key) first
                if content["idempotency_key"]:
                    with self.engine.connect() as conn:
                        if found := self._by_key(conn, content["idempotency_key"]):
                            return found
            except OperationalError as exc:  # locked beyond the busy timeout, connection lost
                if attempt == MAX_APPEND_ATTEMPTS - 1:
                    raise LedgerError(f"audit ledger {self.display_url}: {exc.orig}") from exc
            time.sleep(min(0.05 * (attempt + 1), 0.5))
        raise LedgerError(f"audit ledger {self.display_url}: could not append {action} for {model} after "
                          f"{MAX_APPEND_ATTEMPTS} attempts (other writers kept moving the head)")

    @staticmethod
    def _by_key(conn: sa.Connection, key: str) -> Entry | None:
        row = conn.execute(sa.select(records_table).where(records_table.c.idempotency_key == key)).mappings().first()
        return entry_from_row(row) if row else None

    # --- reading ---------------------------------------------------------------------------

    def records(self, *, model: str | None = None, version: str | None = None,
                actions: Iterable[str] | None = None, since: datetime | str | None = None,
                until: datetime | str | None = None, run_id: str | None = None) -> list[Entry]:
        """Stored records, oldest first (chain order), filtered by model, version (any it concerns),
        action, Airflow run and time (``since`` inclusive, ``until`` exclusive)."""
        t = records_table.c
        query = sa.select(records_table).order_by(t.seq)
        if model is not None:
            query = query.where(t.model == model)
        if version is not None:
            query = query.where(sa.or_(t.version == str(version), t.versions.contains(json.dumps(str(version)))))
        if actions is not None:
            query = query.where(t.action.in_(list(actions)))
        if since is not None:
            query = query.where(t.at >= as_time(since))
        if until is not None:
            query = query.where(t.at < as_time(until))
        if run_id is not None:
            query = query.where(t.run_id == run_id)
        with self.engine.connect() as conn:
            entries = [entry_from_row(row) for row in conn.execute(query).mappings()]
        return [e for e in entries if e.concerns(str(version))] if version is not None else entries

    def rows(self) -> list[dict]:
        """Every stored row as the database holds it, in ``seq`` order (for verification)."""
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(sa.select(records_table).order_by(records_table.c.seq))
                    .mappings()]

    def head(self) -> Entry | None:
        """The newest record, or None for an empty ledger."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(records_table).order_by(records_table.c.seq.desc()).limit(1)).mappings() \
                .first()
        return entry_from_row(row) if row else None

    def first(self) -> Entry | None:
        """The oldest record kept, or None for an empty ledger."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(records_table).order_by(records_table.c.seq).limit(1)).mappings().first()
        return entry_from_row(row) if row else None

    def models(self) -> list[str]:
        """The models that have records, sorted."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(sa.select(records_table.c.model).distinct()).scalars())

    def delete_before(self, seq: int) -> int:
        """Delete every record with a ``seq`` below ``seq``; the number deleted. Only retention calls this
        (:func:`include.governance.integrity.prune`), after anchoring the first record it keeps."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            return conn.execute(records_table.delete().where(records_table.c.seq < seq)).rowcount


_ledgers: dict[str, Ledger] = {}


def default_ledger() -> Ledger:
    """The installation's ledger (:func:`include.settings.ledger_url`, read on every call)."""
    url = settings.ledger_url()
    if url not in _ledgers:
        _ledgers[url] = Ledger(url)
    return _ledgers[url]
