"""Audit records for everything that changes what is live (or decides not to).

A record is appended to the audit ledger (:mod:`include.governance.ledger`: hash-chained, the record
of truth for history) and also written as a tag on each model version it concerns
(``audit.<utc>.<action>``, JSON value), so it is visible beside the version in the MLflow UI. Reads
(:func:`read`, :func:`read_model`) come from the ledger: a tag edited or deleted in the registry
changes nothing the product decides.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from include.governance.ledger import Ledger, default_ledger

log = logging.getLogger(__name__)

AUDIT_PREFIX = "audit."
MAX_TAG_VALUE = 5000  # conservative: older MLflow servers cap tag values at 5,000 characters
MAX_TRIMMED_REASON = 1000
MAX_KEPT_DETAIL = 200


@dataclass(frozen=True)
class AuditRecord:
    action: str  # e.g. "promote", "reject", "register", "quarantine"
    model: str
    version: str | None
    actor: str  # who or what: user name, "scheduler", "asset:<uri>"
    reason: str
    dag_id: str | None = None
    run_id: str | None = None
    details: dict = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    def to_json(self) -> str:
        """The record as JSON of at most :data:`MAX_TAG_VALUE` characters.

        Too long a record keeps the short scalar details (versions, flags: what queries over the
        records rely on) and the first :data:`MAX_TRIMMED_REASON` characters of the reason; the
        other details are replaced by ``"truncated": true``.
        """
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        if len(text) > MAX_TAG_VALUE:
            kept = {k: v for k, v in self.details.items()
                    if isinstance(v, str | int | float | bool | None) and len(str(v)) <= MAX_KEPT_DETAIL}
            trimmed = {**asdict(self), "reason": self.reason[:MAX_TRIMMED_REASON],
                       "details": {**kept, "truncated": True}}
            text = json.dumps(trimmed, sort_keys=True, default=str)
        return text


def write(client: MlflowClient | None, record: AuditRecord, *, versions: Iterable[str] = (),
          key: str | None = None, discriminator: str | None = None, ledger: Ledger | None = None) -> dict:
    """Append ``record`` to the ledger, then tag it on each version it concerns; the stored record.

    ``versions``: other versions the one event concerns (the record is stored once, and tagged on
    each); ``key`` / ``discriminator``: see :meth:`include.governance.ledger.Ledger.append` (a
    record of the same Airflow run, action, model and versions is written once). With ``client``
    None, or a record without a version, no tag is written (a record without a version is tagged
    on the registered model when it exists; the ledger keeps it either way).
    The tag copy is cut to :data:`MAX_TAG_VALUE` characters (:meth:`AuditRecord.to_json`); the ledger
    keeps the whole record.
    Raises :class:`include.governance.ledger.LedgerError` when the ledger cannot be written.
    """
    entry = (ledger or default_ledger()).append(
        action=record.action, model=record.model, actor=record.actor, reason=record.reason,
        version=record.version, versions=versions, details=record.details, dag_id=record.dag_id,
        run_id=record.run_id, at=record.at, key=key, discriminator=discriminator)
    if client is not None:
        stored, tag = replace(record, at=entry.at), f"{AUDIT_PREFIX}{entry.at}.{record.action}"
        for version in entry.versions:
            client.set_model_version_tag(record.model, version, tag, replace(stored, version=version).to_json())
        if not entry.versions:
            try:
                client.set_registered_model_tag(record.model, tag, stored.to_json())
            except MlflowException as exc:  # no registry entry (yet): the ledger holds the record
                log.info("%s has no registry entry for the audit tag: %s", record.model, exc)
    log.info("AUDIT %s", record.to_json())
    return entry.as_dict()


def write_on(client: MlflowClient | None, record: AuditRecord, versions: Iterable[str]) -> dict:
    """Store one record that concerns several ``versions`` (the first is its ``version``): one event."""
    ordered = [str(v) for v in dict.fromkeys(versions) if v is not None]
    return write(client, replace(record, version=ordered[0] if ordered else record.version), versions=ordered)


def read(client: MlflowClient | None, model: str, version: str, *, ledger: Ledger | None = None) -> list[dict]:
    """The ledger's records concerning ``model`` ``version``, oldest first (``client`` is not used: kept
    for callers that pass it)."""
    return [e.as_dict() for e in (ledger or default_ledger()).records(model=model, version=str(version))]


def read_model(client: MlflowClient | None, model: str, *, ledger: Ledger | None = None) -> list[dict]:
    """The ledger's records on ``model``, oldest first (chain order). An unknown model has none.

    A record that concerns several versions appears once; its ``versions`` lists them.
    """
    return [e.as_dict() for e in (ledger or default_ledger()).records(model=model)]
