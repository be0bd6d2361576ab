"""The Airflow core calls behind the drift webhook: the one place this plugin reaches past Airflow's public interface.

Airflow 3's public interface is the Task SDK (``airflow.sdk``: DAG authoring and running tasks), the
REST API and its Python client. None of them lets a plugin route running inside the API server create
runs: the Task SDK creates a DAG run only from a running task, and the REST API, called by the API
server itself, would need an Airflow user and token for the webhook (whose own authentication is the
request's signature) and one HTTP request per run, outside the one database transaction in which a
delivery's runs are all created or none is, after the lookup of the runs that already cover its alerts.

So the webhook does what Airflow's own ``POST /api/v2/dags/{dag_id}/dagRuns`` does (3.3:
``airflow.api_fastapi.core_api.routes.public.dag_run.trigger_dag_run``), with the same internal calls,
here and nowhere else: the DAG must be in the metadata database, not stale, without import errors and
allow manual runs (``DagModel``); the latest serialized version (the API's cached DB DAG bag) creates
the run. ``tests/plugins/inbound/test_airflow_core.py`` runs these functions next to that endpoint on
the same database, so an Airflow release that changes what it checks or how it creates a run fails a
test, not the webhook. What the webhook decides (which alerts a run covers, its conf and note) lives in
:mod:`modelops.inbound.runs` and :mod:`include.inbound.drift_alerts`, without Airflow internals.

Airflow is imported inside the functions: the plugin's app is imported when the API server starts.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.serialization.definitions.dag import SerializedDAG
    from sqlalchemy.orm import Session


class NotTriggerable(Exception):
    """``dag_id`` cannot be triggered now; ``status_code``: 404 (not in the database, stale, not serialized)
    or 409 (import errors, manual runs not allowed)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@cache
def _dag_bag():
    """The cached DB DAG bag the core API builds (LRU + TTL from ``[api] dag_cache_size`` / ``dag_cache_ttl``)."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag

    return create_dag_bag()


def latest_triggerable_dag(session: Session, dag_id: str) -> SerializedDAG:
    """The latest serialized version of ``dag_id``, when a manual run of it may start (as the core API checks).

    Raises :class:`NotTriggerable`. The result's ``params`` (an ``airflow.sdk`` ``ParamsDict``) are the
    DAG's params as last parsed.
    """
    from airflow.models import DagModel
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    dag_model = session.scalar(select(DagModel).where(~DagModel.is_stale, DagModel.dag_id == dag_id).limit(1))
    if dag_model is None:
        raise NotTriggerable(404, f"DAG {dag_id!r} is not in Airflow's metadata database (not parsed yet?)")
    if dag_model.has_import_errors:
        raise NotTriggerable(409, f"DAG {dag_id!r} has import errors and cannot be triggered")
    if dag_model.allowed_run_types is not None and DagRunType.MANUAL not in dag_model.allowed_run_types:
        raise NotTriggerable(409, f"DAG {dag_id!r} does not allow manual runs")
    dag = _dag_bag().get_latest_version_of_dag(dag_id, session=session)
    if dag is None:
        raise NotTriggerable(404, f"DAG {dag_id!r} has no serialized version yet")
    return dag


def create_manual_run(
    dag: SerializedDAG, session: Session, *, run_id: str, conf: dict[str, Any], note: str, triggering_user: str,
    run_after: datetime,
) -> str:
    """Add a queued manual run ``run_id`` of ``dag`` (from :func:`latest_triggerable_dag`) to ``session``, as
    ``POST /api/v2/dags/{dag_id}/dagRuns`` with ``"logical_date": null`` does: no logical date or data
    interval, ``triggered_by=rest_api``, ``triggering_user`` as the user, ``note`` as the run's note.
    Returns the run's state (``"queued"``).

    Raises ``airflow.sdk.exceptions.ParamValidationError`` (a ``ValueError``) when ``conf`` does not fit the
    DAG's params, ``ValueError`` for a run id Airflow refuses. The caller commits ``session``.
    """
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    run = dag.create_dagrun(
        run_id=run_id, logical_date=None, data_interval=None, run_after=run_after, conf=conf,
        run_type=DagRunType.MANUAL, triggered_by=DagRunTriggeredByType.REST_API,
        triggering_user_name=triggering_user, state=DagRunState.QUEUED, note=note, session=session,
    )
    return str(run.state)


def runs_of(
    session: Session, dag_id: str, *, run_ids: list[str], id_prefix: str | None = None,
    run_after_from: datetime | None = None,
) -> list[tuple[str, str, Any]]:
    """``(run_id, state, conf)`` of the runs of ``dag_id`` whose id is in ``run_ids``, and (with both
    ``id_prefix`` and ``run_after_from``) those whose id starts with ``id_prefix`` (taken literally) and
    that may run from ``run_after_from`` on; oldest first."""
    from airflow.models import DagRun
    from sqlalchemy import and_, or_, select

    found = [DagRun.run_id.in_(run_ids)]
    if id_prefix is not None and run_after_from is not None:
        found.append(and_(DagRun.run_id.startswith(id_prefix, autoescape=True), DagRun.run_after >= run_after_from))
    rows = session.execute(
        select(DagRun.run_id, DagRun.state, DagRun.conf)
        .where(DagRun.dag_id == dag_id, or_(*found))
        .order_by(DagRun.run_after, DagRun.id)
    )
    return [(run_id, str(state), conf) for run_id, state, conf in rows]
