"""Starting retraining runs for drift alerts, the way Airflow's own ``POST /api/v2/dags/{id}/dagRuns`` does.

Like the core API's ``trigger_dag_run``: the DAG must be in the metadata DB (not stale, no import
errors, manual runs allowed); the latest serialized version creates the run (``run_type=manual``,
``triggered_by=rest_api``, state queued) and validates the conf against the DAG's params. Those
Airflow core calls live in :mod:`modelops.inbound.airflow_core` (why, and how they are pinned: there).
Everything is checked before anything is written, and all runs of one request are created in one
transaction.

**One run per model, once per alert.** The firing drift alerts of one model in a request
(:class:`include.inbound.drift_alerts.RetrainGroup`) start at most one run. An alert that an earlier run of the
model's training DAG already covers (its identity is in that run's ``alert.identities``) starts
nothing; the answer names that run. Only the alerts no run covers start a new one, whose id comes
from their identities (:func:`include.inbound.drift_alerts.group_run_id`). So a redelivered group, or the same
group with one alert resolved, starts nothing, and a group that gained an alert starts one run for
the newcomer. Earlier runs are found by id (the ids :attr:`~include.inbound.drift_alerts.DriftAlert.run_id` and
:attr:`~include.inbound.drift_alerts.RetrainGroup.run_id`) and among the webhook's runs of that DAG queued since the
alerts' earliest ``startsAt`` minus :data:`LOOKBACK` (a run cannot cover an alert that had not fired
yet; the day absorbs clock skew between the alert's source and Airflow).

**Which data.** A new run's conf carries the alerts' ``dataset_uri`` (the DAG param) when they name
one; otherwise the run trains on the DAG's default. Alerts of one model that name different ones are
refused (422, :class:`include.inbound.drift_alerts.DatasetUriConflict`). Each outcome says which data its run
trains on and that the run skips itself when a version was already trained from that data, code and
params (:func:`include.inbound.payloads.data_note`); an alert covered by an earlier run does not change that
run's data, and the outcome's note says so when the alert now names other data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from include.config import ConfigError, get_model_config
from include.inbound.drift_alerts import RUN_ID_PREFIX, DatasetUriConflict, RetrainGroup, identity_kind
from include.inbound.payloads import DATASET_URI, data_note
from modelops.inbound import airflow_core

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
    kind = identity_kind(group.source)
    wanted = set(group.identities)
    by_id = {alert.run_id: {alert.identity} for alert in group.alerts} | {group.run_id: wanted}
    starts = [alert.starts_at for alert in group.alerts if alert.starts_at is not None]
    rows = airflow_core.runs_of(session, group.dag_id, run_ids=list(by_id), id_prefix=RUN_ID_PREFIX,
                                run_after_from=min(starts) - LOOKBACK if starts else None)
    covered: dict[str, tuple[str, str, str | None]] = {}
    for run_id, state, conf in rows:
        for identity in (by_id.get(run_id, set()) | _identities(conf, kind)) & wanted:
            covered.setdefault(identity, (run_id, state, _conf_dataset_uri(conf)))
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
    """At most one new run of the model's training DAG (``train_<model>``) per group, for the group's alerts no run covers yet,
    and the earlier runs that cover the others (see the module's docstring).

    ``groups`` are the firing drift alerts, one group per model (:func:`include.inbound.drift_alerts.group_by_model`).
    Raises :class:`TriggerError` (404 unknown model or DAG, 409 DAG not triggerable, 422 alerts of one
    model naming different ``dataset_uri`` s, or a conf not valid for the DAG's params) before writing
    anything. The caller commits ``session``.
    """
    from airflow.sdk.exceptions import ParamValidationError

    check_models(groups)
    dags = {}
    for training_dag in dict.fromkeys(g.dag_id for g in groups):
        try:
            dags[training_dag] = airflow_core.latest_triggerable_dag(session, training_dag)
        except airflow_core.NotTriggerable as exc:
            raise TriggerError(exc.status_code, str(exc)) from None

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
            state = airflow_core.create_manual_run(
                dags[fresh.dag_id], session, run_id=fresh.run_id, conf=conf, note=fresh.note(default),
                triggering_user=TRIGGERING_USER, run_after=now,
            )
        except ValueError as exc:  # ParamValidationError included
            raise TriggerError(422, f"{fresh.dag_id}: {exc}") from None
        named = conf.get(DATASET_URI)
        outcomes[index] = RunOutcome(fresh, fresh.dag_id, fresh.run_id, state, created=True,
                                     dataset_uri=named or default,
                                     dataset_uri_from="alert" if named is not None else "default",
                                     note=data_note(named or default, from_alert=named is not None))
    session.flush()
    return [o for o in outcomes if o is not None]
