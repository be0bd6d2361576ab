"""The promotion DAG's operators: the human approval (its answer in the audit ledger) and the wait for live evidence."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.exceptions import HITLTimeoutError
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator

from modelops.context import ids


def _user_name(responded_by: Any) -> str:
    """The responder's name from the HITL event's ``responded_by_user`` (``{"id", "name"}``), else its id."""
    if isinstance(responded_by, dict):
        return str(responded_by.get("name") or responded_by.get("id") or "unknown")
    return str(getattr(responded_by, "name", None) or getattr(responded_by, "id", None) or responded_by or "unknown")


class AuditedApprovalOperator(ApprovalOperator):
    """Airflow's :class:`ApprovalOperator` (Approve / Reject in the UI or the REST API's ``hitlDetails``)
    whose outcome is a ledger record on the candidate version: ``approve`` or ``reject`` with the
    responder as actor, or ``approval_timeout`` when nobody answered in time.

    Reject skips the promotion (the operator's own behaviour); the candidate is read from the
    ``resolve_candidate`` task's XCom.
    """

    def __init__(self, *, model: str, candidate_task_id: str = "resolve_candidate", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.candidate_task_id = candidate_task_id

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        version = context["ti"].xcom_pull(task_ids=self.candidate_task_id)
        if "error" in event:
            try:
                return super().execute_complete(context=context, event=event)
            except HITLTimeoutError:
                self._record(context, "approval_timeout", version, "scheduler",
                             f"no answer within {self.response_timeout}; not promoted", {})
                raise
        # Recorded before the parent acts on it: a Reject ends the task by skipping downstream tasks.
        chosen = list(event.get("chosen_options") or [])
        self.validate_chosen_options(chosen)
        approved = chosen[:1] == [self.APPROVE]
        responded_at = event.get("responded_at")
        self._record(context, "approve" if approved else "reject", version, _user_name(event.get("responded_by_user")),
                     f"{chosen[0]} in the approval of {self.model} version {version}",
                     {"chosen_options": chosen, "params_input": event.get("params_input") or {},
                      "responded_at": responded_at.isoformat() if hasattr(responded_at, "isoformat") else responded_at})
        return super().execute_complete(context=context, event=event)

    def _record(self, context: Any, action: str, version: str | None, actor: str, reason: str, details: dict) -> None:
        from include.governance import audit
        from modelops.mlflow_hook import MlflowHook

        audit.write(MlflowHook().client, audit.AuditRecord(
            action=action, model=self.model, version=str(version) if version else None, actor=actor, reason=reason,
            details=details, **ids(context)))


class ShadowEvidenceSensor(BaseOperator):
    """Waits, deferred (no worker slot held), for the live evidence the ``shadow`` gate needs of ``version``.

    Returns the evidence (:meth:`include.monitoring.challenger.Evidence.as_dict`) when it is enough or when
    ``gates.shadow.deadline_hours`` have passed since the wait began; the gate task judges it.
    """

    template_fields: Sequence[str] = ("version",)

    def __init__(self, *, model: str, version: str, deadline_hours: float, poll_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.version = version
        self.deadline_hours = deadline_hours
        self.poll_seconds = poll_seconds

    def execute(self, context: Any) -> dict:
        from modelops.promotion.triggers import ShadowEvidenceTrigger, challenger_evidence

        evidence, ready = challenger_evidence(self.model, str(self.version))
        if ready:
            return evidence
        self.log.info("%s version %s: waiting up to %sh for live evidence (so far %s)", self.model, self.version,
                      self.deadline_hours, evidence)
        self.defer(
            trigger=ShadowEvidenceTrigger(model=self.model, version=str(self.version),
                                          deadline=time.time() + self.deadline_hours * 3600,
                                          poll_seconds=self.poll_seconds),
            method_name="execute_complete",
            timeout=timedelta(hours=self.deadline_hours, minutes=30),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict:
        self.log.info("%s version %s: %s with evidence %s", self.model, self.version, event["status"], event["evidence"])
        return event["evidence"] or {}
