"""Starting retraining runs for drift alerts, the way Airflow's own ``POST /api/v2/dags/{id}/dagRuns`` does.

Like the core API's ``trigger_dag_run``: the DAG must be in the metadata DB (not stale, no import
errors, manual runs allowed); the latest serialized version creates the run (``run_type=manual``,
``triggered_by=rest_api``, state queued) and validates the conf against the DAG's params. The run id
comes from the alert (:attr:`include.webhook.DriftAlert.run_id`), so an alert delivered twice finds its
run instead of starting another. Everything is checked before anything is written, and all runs of
one request are created in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from include.config import ConfigError, get_model_config
from include.webhook import DriftAlert

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger("modelops.webhook")

TRIGGERING_USER = "drift-webhook"
NOTE_LIMIT = 900


class TriggerError(Exception):
    """An alert cannot start its run; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class RunOutcome:
    alert: DriftAlert
    dag_id: str
    run_id: str
    state: str
    created: bool


@cache
def _dag_bag():
    """The same cached DB DAG bag the core API builds (LRU + TTL from ``[api] dag_cache_*``)."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag

    return create_dag_bag()


def _existing_run(session: Session, dag_id: str, run_id: str):
    from airflow.models import DagRun
    from sqlalchemy import select

    return session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))


def _triggerable_dag(session: Session, dag_id: str):
    """The latest serialized version of ``dag_id``, checked as the core API checks it."""
    from airflow.models import DagModel
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    dag_model = session.scalar(select(DagModel).where(~DagModel.is_stale, DagModel.dag_id == dag_id).limit(1))
    if dag_model is None:
        raise TriggerError(404, f"DAG {dag_id!r} is not in Airflow's metadata database (not parsed yet?)")
    if dag_model.has_import_errors:
        raise TriggerError(409, f"DAG {dag_id!r} has import errors and cannot be triggered")
    if dag_model.allowed_run_types is not None and DagRunType.MANUAL not in dag_model.allowed_run_types:
        raise TriggerError(409, f"DAG {dag_id!r} does not allow manual runs")
    dag = _dag_bag().get_latest_version_of_dag(dag_id, session=session)
    if dag is None:
        raise TriggerError(404, f"DAG {dag_id!r} has no serialized version yet")
    return dag


def _conf(alert: DriftAlert) -> dict[str, Any]:
    return {"alert": alert.to_conf()}


def _note(alert: DriftAlert) -> str:
    text = f"Drift alert from {alert.source}: {alert.summary or alert.identity}"
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 1] + "…"


def check_models(alerts: list[DriftAlert]) -> None:
    """404 unless every alert's model is configured (``config/models/<model>.yaml``)."""
    for model in dict.fromkeys(a.model for a in alerts):
        try:
            get_model_config(model)
        except ConfigError as exc:
            raise TriggerError(404, str(exc)) from None


def start_runs(alerts: list[DriftAlert], session: Session) -> list[RunOutcome]:
    """One run of ``train_<model>`` per firing alert, or the run an earlier delivery started.

    Raises :class:`TriggerError` before writing anything when any alert cannot start its run.
    The caller commits ``session``.
    """
    from airflow.exceptions import ParamValidationError
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    firing = [a for a in alerts if a.status == "firing"]
    check_models(firing)
    dags = {dag_id: _triggerable_dag(session, dag_id) for dag_id in dict.fromkeys(a.dag_id for a in firing)}

    outcomes: list[RunOutcome | None] = []
    to_create: list[tuple[int, DriftAlert]] = []
    for alert in firing:
        existing = _existing_run(session, alert.dag_id, alert.run_id)
        if existing is not None:
            outcomes.append(RunOutcome(alert, alert.dag_id, alert.run_id, str(existing.state), created=False))
            continue
        try:
            dags[alert.dag_id].params.deep_merge(_conf(alert)).validate()
        except ParamValidationError as exc:
            raise TriggerError(422, f"{alert.dag_id}: the alert does not fit the DAG's params: {exc}") from None
        to_create.append((len(outcomes), alert))
        outcomes.append(None)

    now = datetime.now(UTC)
    for index, alert in to_create:
        try:
            run = dags[alert.dag_id].create_dagrun(
                run_id=alert.run_id,
                logical_date=None,
                data_interval=None,
                run_after=now,
                conf=_conf(alert),
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.REST_API,
                triggering_user_name=TRIGGERING_USER,
                state=DagRunState.QUEUED,
                note=_note(alert),
                session=session,
            )
        except (ParamValidationError, ValueError) as exc:
            raise TriggerError(422, f"{alert.dag_id}: {exc}") from None
        outcomes[index] = RunOutcome(alert, alert.dag_id, alert.run_id, str(run.state), created=True)
    session.flush()
    return [o for o in outcomes if o is not None]
