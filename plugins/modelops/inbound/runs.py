"""Starting retraining runs for drift alerts, the way Airflow's own ``POST /api/v2/dags/{id}/dagRuns`` does.

Like the core API's ``trigger_dag_run``: the DAG must be in the metadata DB (not stale, no import
errors, manual runs allowed); the latest serialized version creates the run (``run_type=manual``,
``triggered_by=rest_api``, state queued) and validates the conf against the DAG's params.
Everything is checked before anything is written, and all runs of one request are created in one
transaction.

**One run per model, once per alert.** The firing drift alerts of one model in a request
(:class:`include.inbound.webhook.RetrainGroup`) start at most one run. An alert that an earlier run of the
model's training DAG already covers (its identity is in that run's ``alert.identities``) starts
nothing; the answer names that run. Only the alerts no run covers start a new one, whose id comes
from their identities (:func:`include.inbound.webhook.group_run_id`). So a redelivered group, or the same
group with one alert resolved, starts nothing, and a group that gained an alert starts one run for
the newcomer. Earlier runs are found by id (the ids :attr:`~include.inbound.webhook.DriftAlert.run_id` and
:attr:`~include.inbound.webhook.RetrainGroup.run_id`) and among the webhook's runs of that DAG queued since the
alerts' earliest ``startsAt`` minus :data:`LOOKBACK` (a run cannot cover an alert that had not fired
yet; the day absorbs clock skew between the alert's source and Airflow).

**Which data.** A new run's conf carries the alerts' ``dataset_uri`` (the DAG param) when they name
one; otherwise the run trains on the DAG's default. Alerts of one model that name different ones are
refused (422, :class:`include.inbound.webhook.DatasetUriConflict`). Each outcome says which data its run
trains on and that the run skips itself when a version was already trained from that data, code and
params (:func:`include.inbound.webhook.data_note`); an alert covered by an earlier run does not change that
run's data, and the outcome's note says so when the alert now names other data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from include.config import ConfigError, get_model_config
from include.inbound.webhook import (
    DATASET_URI,
    RUN_ID_PREFIX,
    DatasetUriConflict,
    RetrainGroup,
    data_note,
    identity_kind,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger("modelops.inbound")

TRIGGERING_USER = "drift-webhook"
LOOKBACK = timedelta(days=1)
_SOURCES = ("alertmanager", "grafana", "project")


class TriggerError(Exception):
    """An alert cannot start its run; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, status_code: int, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail  # the answer's ``detail`` when not the message (422: a list of field errors)


@dataclass(frozen=True)
class RunOutcome:
    """The run that covers ``group`` (alerts of this request): started now (``created``) or earlier.

    ``dataset_uri``: the data the run trains on (its conf's, else the DAG's default; None when the DAG
    has no such param); ``dataset_uri_from``: ``"alert"`` or ``"default"``; ``note``: both in a sentence
    (and, for an earlier run, what this delivery's alerts name when it differs).
    """

    group: RetrainGroup
    dag_id: str
    run_id: str
    state: str
    created: bool
    dataset_uri: str | None = None
    dataset_uri_from: str = "default"
    note: str = ""


@cache
def _dag_bag():
    """The same cached DB DAG bag the core API builds (LRU + TTL from ``[api] dag_cache_*``)."""
    from airflow.api_fastapi.common.dagbag import create_dag_bag

    return create_dag_bag()


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


def _identities(conf: Any, kind: str) -> set[str]:
    """The alert identities a run's conf says it was started for (``alert.identities``; a run from an
    earlier release has only ``alert.identity``); none when the conf is not the webhook's."""
    alert = conf.get("alert") if isinstance(conf, dict) else None
    if not isinstance(alert, dict) or alert.get("source") not in _SOURCES or identity_kind(alert["source"]) != kind:
        return set()
    identities = alert.get("identities")
    if not isinstance(identities, list):
        identities = [alert.get("identity")]
    return {i for i in identities if isinstance(i, str)}


def _conf_dataset_uri(conf: Any) -> str | None:
    value = conf.get(DATASET_URI) if isinstance(conf, dict) else None
    return value if isinstance(value, str) and value else None


def covering_runs(session: Session, group: RetrainGroup) -> dict[str, tuple[str, str, str | None]]:
    """``{identity: (run_id, state, dataset_uri)}`` for each alert of ``group`` that an existing run already
    covers; ``dataset_uri`` is the run conf's (None: the run trains on the DAG's default)."""
    from airflow.models import DagRun
    from sqlalchemy import and_, or_, select

    kind = identity_kind(group.source)
    wanted = set(group.identities)
    by_id = {alert.run_id: {alert.identity} for alert in group.alerts} | {group.run_id: wanted}
    found = [DagRun.run_id.in_(list(by_id))]
    starts = [alert.starts_at for alert in group.alerts if alert.starts_at is not None]
    if starts:
        found.append(and_(DagRun.run_id.startswith(RUN_ID_PREFIX, autoescape=True),
                          DagRun.run_after >= min(starts) - LOOKBACK))
    rows = session.execute(
        select(DagRun.run_id, DagRun.state, DagRun.conf)
        .where(DagRun.dag_id == group.dag_id, or_(*found))
        .order_by(DagRun.run_after, DagRun.id)
    )
    covered: dict[str, tuple[str, str, str | None]] = {}
    for run_id, state, conf in rows:
        for identity in (by_id.get(run_id, set()) | _identities(conf, kind)) & wanted:
            covered.setdefault(identity, (run_id, str(state), _conf_dataset_uri(conf)))
    return covered


def _default_dataset_uri(dag) -> str | None:
    """The ``dataset_uri`` param's default of the DAG's latest serialized version (the model's ``dataset.uri``)."""
    value = dag.params[DATASET_URI] if DATASET_URI in dag.params else None
    return value if isinstance(value, str) and value else None


def _earlier_note(group: RetrainGroup, dag_id: str, run_uri: str | None, default: str | None) -> str:
    """What an earlier run covering ``group`` trains on; and, when the alerts now name other data, that
    this delivery does not change it."""
    note = data_note(run_uri or default, from_alert=run_uri is not None)
    try:
        named = group.dataset_uri
    except DatasetUriConflict as exc:
        named = None
        note += f" This delivery's alerts name different {DATASET_URI}s ({', '.join(exc.uris)}): none was used."
    if named is not None and named != run_uri:
        note += (f" This delivery's alerts name {DATASET_URI} {named!r}, but an alert starts one run and that run "
                 f"keeps its data: trigger {dag_id} with {DATASET_URI}={named!r} to train on it.")
    return note


def check_models(groups: list[RetrainGroup]) -> None:
    """404 unless every group's model is configured (``config/models/<model>.yaml``)."""
    for model in dict.fromkeys(g.model for g in groups):
        try:
            get_model_config(model)
        except ConfigError as exc:
            raise TriggerError(404, str(exc)) from None


def start_runs(groups: list[RetrainGroup], session: Session) -> list[RunOutcome]:
    """At most one new run of ``train_<model>`` per group, for the group's alerts no run covers yet,
    and the earlier runs that cover the others (see the module's docstring).

    ``groups`` are the firing drift alerts, one group per model (:func:`include.inbound.webhook.group_by_model`).
    Raises :class:`TriggerError` (404 unknown model or DAG, 409 DAG not triggerable, 422 alerts of one
    model naming different ``dataset_uri`` s, or a conf not valid for the DAG's params) before writing
    anything. The caller commits ``session``.
    """
    from airflow.exceptions import ParamValidationError
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    check_models(groups)
    dags = {dag_id: _triggerable_dag(session, dag_id) for dag_id in dict.fromkeys(g.dag_id for g in groups)}

    outcomes: list[RunOutcome | None] = []
    to_create: list[tuple[int, RetrainGroup, dict[str, Any], str | None]] = []
    for group in groups:
        dag = dags[group.dag_id]
        default = _default_dataset_uri(dag)
        covered = covering_runs(session, group)
        earlier: dict[str, list[str]] = {}
        for identity in group.identities:
            if identity in covered:
                earlier.setdefault(covered[identity][0], []).append(identity)
        for run_id, identities in earlier.items():
            _, state, run_uri = covered[identities[0]]
            part = group.only(identities)
            outcomes.append(RunOutcome(part, group.dag_id, run_id, state, created=False,
                                       dataset_uri=run_uri or default,
                                       dataset_uri_from="alert" if run_uri is not None else "default",
                                       note=_earlier_note(part, group.dag_id, run_uri, default)))
        new = [identity for identity in group.identities if identity not in covered]
        if not new:
            continue
        fresh = group.only(new)
        try:
            conf = fresh.run_conf()
        except DatasetUriConflict as exc:
            loc = ["body"] if fresh.source == "project" else ["body", "alerts"]
            raise TriggerError(422, str(exc), [{"loc": loc, "msg": str(exc), "type": "conflicting_dataset_uri",
                                                "format": fresh.source}]) from None
        try:
            dag.params.deep_merge(conf).validate()
        except ParamValidationError as exc:
            raise TriggerError(422, f"{fresh.dag_id}: the alert does not fit the DAG's params: {exc}") from None
        to_create.append((len(outcomes), fresh, conf, default))
        outcomes.append(None)

    now = datetime.now(UTC)
    for index, fresh, conf, default in to_create:
        try:
            run = dags[fresh.dag_id].create_dagrun(
                run_id=fresh.run_id,
                logical_date=None,
                data_interval=None,
                run_after=now,
                conf=conf,
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.REST_API,
                triggering_user_name=TRIGGERING_USER,
                state=DagRunState.QUEUED,
                note=fresh.note(default),
                session=session,
            )
        except (ParamValidationError, ValueError) as exc:
            raise TriggerError(422, f"{fresh.dag_id}: {exc}") from None
        named = conf.get(DATASET_URI)
        outcomes[index] = RunOutcome(fresh, fresh.dag_id, fresh.run_id, str(run.state), created=True,
                                     dataset_uri=named or default,
                                     dataset_uri_from="alert" if named is not None else "default",
                                     note=data_note(named or default, from_alert=named is not None))
    session.flush()
    return [o for o in outcomes if o is not None]
