"""Audit records for everything that changes what is live (or decides not to).

For now a record is written as a tag on the model version it concerns (``audit.<utc>.<action>``,
JSON value) so it travels with the version in the registry; a dedicated audit log comes later.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

AUDIT_PREFIX = "audit."
MAX_TAG_VALUE = 5000  # conservative: older MLflow servers cap tag values at 5,000 characters


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
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        if len(text) > MAX_TAG_VALUE:
            trimmed = {**asdict(self), "details": {"truncated": True}}
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


def read(client: MlflowClient, model: str, version: str) -> list[dict]:
    """The audit records on a version, oldest first."""
    tags = client.get_model_version(model, version).tags
    return [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(AUDIT_PREFIX)]
