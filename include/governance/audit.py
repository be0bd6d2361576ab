"""Audit records for everything that changes what is live (or decides not to).

For now a record is written as a tag on the model version it concerns (``audit.<utc>.<action>``,
JSON value) so it travels with the version in the registry; a dedicated audit log comes later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

AUDIT_PREFIX = "audit."
MAX_TAG_VALUE = 5000  # conservative: older MLflow servers cap tag values at 5,000 characters
MAX_TRIMMED_REASON = 1000
MAX_KEPT_DETAIL = 200
SEARCH_PAGE = 1000


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


def write(client: MlflowClient, record: AuditRecord) -> None:
    """Store ``record`` on its model version (or the registered model when it has no version)."""
    key = f"{AUDIT_PREFIX}{record.at}.{record.action}"
    if record.version is not None:
        client.set_model_version_tag(record.model, record.version, key, record.to_json())
    else:
        client.set_registered_model_tag(record.model, key, record.to_json())
    log.info("AUDIT %s", record.to_json())


def write_on(client: MlflowClient, record: AuditRecord, versions: Iterable[str]) -> None:
    """Store one record (same time, same content) on each of ``versions``: one event that concerns several."""
    for version in dict.fromkeys(versions):
        write(client, replace(record, version=version))


def _records(tags: dict[str, str]) -> list[dict]:
    return [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(AUDIT_PREFIX)]


def read(client: MlflowClient, model: str, version: str) -> list[dict]:
    """The audit records on a version, oldest first."""
    return _records(client.get_model_version(model, version).tags)


def read_model(client: MlflowClient, model: str) -> list[dict]:
    """The audit records on every version of ``model``, oldest first (by ``at``, then action).

    A record written on several versions (:func:`write_on`) appears once per version; each copy's
    ``version`` says where it is stored. An unknown model has no records. Source: the version tags,
    read with paged ``search_model_versions``.
    """
    records: list[dict] = []
    token = None
    while True:
        page = client.search_model_versions(f"name = '{model}'", max_results=SEARCH_PAGE, page_token=token)
        for found in page:
            records.extend(_records(found.tags))
        token = page.token
        if not token:
            break
    return sorted(records, key=lambda r: (r.get("at", ""), r.get("action", ""), str(r.get("version"))))

