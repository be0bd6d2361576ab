"""Task functions of the ``audit_ledger`` DAG: verify the chain → anchor its head → apply retention."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from modelops.context import actor, ids
from modelops.mlflow_hook import MlflowHook

log = logging.getLogger(__name__)

LEDGER_MODEL = "(ledger)"  # the model column of records about the ledger itself


def _anchors():
    from include.governance.integrity import MlflowAnchorStore
    from include.governance.ledger import default_ledger

    return MlflowAnchorStore(MlflowHook().client, default_ledger())


@task
def verify() -> dict[str, Any]:
    """Walk the chain against its anchors; a tampered ledger fails the run (for good), naming the first record."""
    from include.governance import integrity

    store = _anchors()
    report = integrity.verify(store.ledger, store)
    if not report.ok:
        lines = [f"- {p.kind} at #{p.seq}: {p.detail}" for p in report.problems[:20]]
        raise AirflowFailException(f"{report.summary()}\n" + "\n".join(lines))
    log.info("%s", report.summary())
    return report.as_dict()


@task
def anchor(report: dict[str, Any]) -> dict[str, Any] | None:
    """Anchor the verified head on the ledger's MLflow run; the anchor is also in this task's log."""
    from include.governance import integrity

    made = integrity.anchor(_anchors())
    if made is None:
        log.info("the ledger is empty: nothing to anchor")
        return None
    log.info("LEDGER ANCHOR seq=%s hash=%s (verified %s records)", made.seq, made.hash, report.get("checked"))
    return asdict(made)


@task
def apply_retention(anchored: dict[str, Any] | None, **context: Any) -> int:
    """Delete records past retention (``MODELOPS_LEDGER_RETENTION_DAYS``), anchoring where the chain now
    starts; a ``ledger_pruned`` record says how many and up to when."""
    from include import settings
    from include.governance import audit, integrity

    store = _anchors()
    days = settings.ledger_retention_days()
    deleted = integrity.prune(store, retention_days=days)
    if deleted:
        genesis = store.genesis()
        audit.write(None, audit.AuditRecord(
            action="ledger_pruned", model=LEDGER_MODEL, version=None, actor=actor(context),
            reason=f"{deleted} record(s) older than {days} days deleted",
            details={"deleted": deleted, "retention_days": days, "first_kept": genesis.seq if genesis else None},
            **ids(context)))
    return deleted
