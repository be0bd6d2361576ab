"""Drift alerts from outside, normalised: which of them mean drift, and one retraining run per model.

The webhook (``plugins/modelops/inbound``) verifies a request (:mod:`include.inbound.signatures`), parses
it (:mod:`include.inbound.payloads`) and hands the alerts to this module: each becomes a
:class:`DriftAlert` with an identity taken from the alert (Alertmanager/Grafana: ``fingerprint`` +
``startsAt``; project: ``alert_id``).

**Only drift starts retraining** (:func:`triage`): resolved alerts, Grafana's ``DatasourceNoData`` /
``DatasourceError`` alerts (they carry the rule's labels, ``model`` included), alerts Grafana fired
because of ``NoData`` or ``Error`` (annotation ``grafana_state_reason``) and always-firing heartbeats
(``Watchdog``, ``InfoInhibitor``) are :class:`Ignored` with a reason.

**One run per model** (:func:`group_by_model`): the firing drift alerts of one model in one request
start one retraining run (:class:`RetrainGroup`), whose run id is derived from the alerts'
identities (:func:`group_run_id`), so a redelivery maps to the same run. The run trains on the one
``dataset_uri`` its alerts name (alerts that name none go with it); alerts of one model that name
different ones cannot share a run (:class:`DatasetUriConflict`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from include import dag_ids
from include.inbound.payloads import (
    ALERTNAME_LABEL,
    DATASET_URI,
    MODEL_LABEL,
    NOTE_LIMIT,
    AlertmanagerPayload,
    CleanFeature,
    CleanKey,
    CleanText,
    CleanUrl,
    DatasetUri,
    GrafanaPayload,
    Identifier,
    ProjectAlert,
    Source,
    Status,
    clean_text,
    data_note,
)

RUN_ID_PREFIX = "drift_webhook__"


# --- normalized alerts -----------------------------------------------------------------------------


class DriftAlert(BaseModel):
    """One alert, whatever format it came in.

    Every text field (summary, label and annotation names and values, URL, features) is passed
    through :func:`clean_text` when the alert is built, so whatever reads it (run note, run conf,
    log, Slack) gets no control or bidirectional formatting characters and bounded lengths:
    :data:`TEXT_LIMIT` characters per value, :data:`KEY_LIMIT` per name, :data:`URL_LIMIT` for the URL.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    source: Source
    status: Status
    identity: Identifier = Field(description="fingerprint@startsAt (Alertmanager, Grafana) or alert_id (project)")
    summary: CleanText | None = None
    labels: dict[CleanKey, CleanText] = Field(default_factory=dict)
    annotations: dict[CleanKey, CleanText] = Field(default_factory=dict)
    starts_at: datetime | None = None
    generator_url: CleanUrl | None = None
    drift_score: float | None = None
    features: list[CleanFeature] = Field(default_factory=list)
    dataset_uri: DatasetUri | None = Field(None, description="The data the alert names to retrain on.")

    @property
    def alertname(self) -> str | None:
        return self.labels.get(ALERTNAME_LABEL)

    @property
    def run_id(self) -> str:
        """The run id this alert gets when it is the only new alert of its model in a request."""
        return run_id_for(self.source, self.identity)

    @property
    def dag_id(self) -> str:
        """The model's training DAG, which the alert starts (:func:`include.dag_ids.dag_id`)."""
        return dag_ids.dag_id(dag_ids.Stage.TRAIN, self.model)

    def to_conf(self) -> dict[str, Any]:
        """The alert as a JSON-safe dict (one entry of the run conf's ``alert.alerts``)."""
        return self.model_dump(mode="json")


def identity_kind(source: str) -> str:
    """The namespace of an alert identity: Grafana speaks Alertmanager's (fingerprint@startsAt)."""
    return "project" if source == "project" else "alertmanager"


def run_id_for(source: str, identity: str) -> str:
    """``drift_webhook__<32 hex>``: the same alert (same identity) always gets the same run id."""
    digest = hashlib.sha256(f"{identity_kind(source)}\n{identity}".encode()).hexdigest()
    return f"{RUN_ID_PREFIX}{digest[:32]}"


def group_run_id(source: str, identities: Iterable[str]) -> str:
    """The run id of one retraining run for several alerts: the same set of identities, in any order,
    gets the same id; a set of one gets :func:`run_id_for` that alert's (so single alerts keep the ids
    earlier releases gave them). Raises ``ValueError`` for an empty set."""
    unique = sorted(set(identities))
    if not unique:
        raise ValueError("a retraining run needs at least one alert")
    if len(unique) == 1:
        return run_id_for(source, unique[0])
    digest = hashlib.sha256("\n".join([identity_kind(source), "group", *unique]).encode()).hexdigest()
    return f"{RUN_ID_PREFIX}{digest[:32]}"


def _summary(annotations: dict[str, str], labels: dict[str, str], fallback: str | None) -> str | None:
    return annotations.get("summary") or annotations.get("description") or fallback or labels.get(ALERTNAME_LABEL)


def normalize(payload: AlertmanagerPayload | GrafanaPayload | ProjectAlert) -> list[DriftAlert]:
    """The payload's alerts as :class:`DriftAlert` s, in order, without duplicates (same identity)."""
    alerts: list[DriftAlert] = []
    if isinstance(payload, ProjectAlert):
        alerts.append(DriftAlert(
            model=payload.model, source="project", status=payload.status, identity=payload.alert_id,
            summary=payload.summary, labels={**payload.labels, MODEL_LABEL: payload.model},
            starts_at=payload.starts_at,
            drift_score=payload.drift_score, features=payload.features, dataset_uri=payload.dataset_uri,
        ))
    else:
        source = "grafana" if isinstance(payload, GrafanaPayload) else "alertmanager"
        fallback = payload.title if isinstance(payload, GrafanaPayload) else None
        for alert in payload.alerts:
            labels = alert.labels.model_dump(exclude_none=True)
            starts_at = alert.startsAt
            alerts.append(DriftAlert(
                model=alert.labels.model, source=source, status=alert.status,
                identity=f"{alert.fingerprint}@{starts_at.isoformat()}",
                summary=_summary(alert.annotations, labels, fallback), labels=labels,
                annotations=alert.annotations, starts_at=starts_at, generator_url=alert.generatorURL,
                dataset_uri=alert.dataset_uri,
            ))
    unique: dict[str, DriftAlert] = {}
    for alert in alerts:
        unique.setdefault(alert.identity, alert)
    return list(unique.values())


# --- which alerts mean drift -----------------------------------------------------------------------

#: Grafana's annotation that says why an alert is in its state (``NoData``, ``Error``, ``NoData, KeepLast``…).
STATE_REASON_ANNOTATION = "grafana_state_reason"
#: State reasons of an alert that fires because its query returned nothing or failed, not because of drift.
NOT_DRIFT_STATE_REASONS = frozenset({"NoData", "Error"})
#: Alert names that never mean drift: Grafana's no-data and error alerts (they carry the rule's labels,
#: so also its ``model``) and the always-firing heartbeat alerts of kube-prometheus (``Watchdog``,
#: ``InfoInhibitor``).
DEFAULT_IGNORED_ALERTNAMES = ("DatasourceNoData", "DatasourceError", "Watchdog", "InfoInhibitor")
_KNOWN = {
    "DatasourceNoData": "Grafana's no-data alert: the rule's query returned no data",
    "DatasourceError": "Grafana's error alert: the rule's query failed",
    "Watchdog": "an always-firing heartbeat alert",
    "InfoInhibitor": "an always-firing alert that only inhibits others",
}


@dataclass(frozen=True)
class Ignored:
    """An alert that starts nothing, and why (``reason``, a sentence for people)."""

    alert: DriftAlert
    reason: str


def not_drift_reason(alert: DriftAlert, *, ignored_alertnames: Iterable[str] = DEFAULT_IGNORED_ALERTNAMES,
                     alertnames: Iterable[str] = ()) -> str | None:
    """Why ``alert`` must not start retraining, or None when it is a firing drift alert.

    In this order: a resolved alert (``"resolved"``); an ``alertname`` label in ``ignored_alertnames``;
    a ``grafana_state_reason`` annotation naming ``NoData`` or ``Error`` (a Grafana rule set to fire on
    no data or on errors fires under its own name: the reason is the only sign); and, when
    ``alertnames`` is not empty, an Alertmanager or Grafana alert whose ``alertname`` is not in it (the
    project format is a drift alert by definition and is not held to that list).
    """
    if alert.status != "firing":
        return "resolved"
    name = alert.alertname
    if name is not None and name in set(ignored_alertnames):
        return f"not a drift alert: {name} is " + _KNOWN.get(name, "in the ignored alertnames")
    reasons = {part.strip() for part in alert.annotations.get(STATE_REASON_ANNOTATION, "").split(",")}
    if hit := sorted(reasons & NOT_DRIFT_STATE_REASONS):
        return (f"not a drift alert: {STATE_REASON_ANNOTATION} is {alert.annotations[STATE_REASON_ANNOTATION]} "
                f"(Grafana fired it because its query {'returned no data' if 'NoData' in hit else 'failed'})")
    allowed = set(alertnames)
    if allowed and alert.source != "project" and name not in allowed:
        what = f"alertname {name}" if name is not None else "an alert without an alertname label"
        return f"not a drift alert: {what} is not one of the drift alertnames"
    return None


def triage(alerts: Iterable[DriftAlert], *, ignored_alertnames: Iterable[str] = DEFAULT_IGNORED_ALERTNAMES,
           alertnames: Iterable[str] = ()) -> tuple[list[DriftAlert], list[Ignored]]:
    """Split ``alerts`` into the firing drift alerts and the :class:`Ignored` rest (see :func:`not_drift_reason`)."""
    ignored_alertnames, alertnames = tuple(ignored_alertnames), tuple(alertnames)
    drift: list[DriftAlert] = []
    ignored: list[Ignored] = []
    for alert in alerts:
        reason = not_drift_reason(alert, ignored_alertnames=ignored_alertnames, alertnames=alertnames)
        if reason is None:
            drift.append(alert)
        else:
            ignored.append(Ignored(alert, reason))
    return drift, ignored


# --- one retraining run per model ------------------------------------------------------------------


class DatasetUriConflict(ValueError):
    """The alerts of one model name different ``dataset_uri`` s, so no one run can train on what they ask.

    ``model``; ``uris``: each named URI and the identities of the alerts that name it, in order.
    """

    def __init__(self, model: str, uris: dict[str, list[str]]) -> None:
        self.model = model
        self.uris = uris
        named = "; ".join(f"{uri!r} (alert{'s' if len(ids) > 1 else ''} {', '.join(ids)})" for uri, ids in uris.items())
        super().__init__(
            f"the firing drift alerts about {model} name {len(uris)} different {DATASET_URI}s: {named}. One retraining "
            f"run trains on one dataset: give these alerts the same {DATASET_URI}, or send them in separate requests "
            "(each then starts its own run); nothing was started")


@dataclass(frozen=True)
class RetrainGroup:
    """The firing drift alerts of one model in one request: they start one retraining run together.

    One run per model is what the alerts mean (retrain the model on fresh data); N runs of the same
    DAG would queue behind each other (``max_active_runs=1``) and repeat the same work.
    """

    alerts: tuple[DriftAlert, ...]

    def __post_init__(self) -> None:
        if not self.alerts:
            raise ValueError("a retraining group needs at least one alert")
        if len({(a.model, identity_kind(a.source)) for a in self.alerts}) != 1:
            raise ValueError("the alerts of a retraining group must be about one model and from one format")

    @property
    def model(self) -> str:
        return self.alerts[0].model

    @property
    def source(self) -> str:
        return self.alerts[0].source

    @property
    def dag_id(self) -> str:
        return self.alerts[0].dag_id

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(a.identity for a in self.alerts)

    @property
    def run_id(self) -> str:
        """:func:`group_run_id` of the identities: a redelivery of the same alerts finds this run."""
        return group_run_id(self.source, self.identities)

    def only(self, identities: Iterable[str]) -> RetrainGroup:
        """The group of just the alerts with these identities (in this group's order)."""
        keep = set(identities)
        return RetrainGroup(tuple(a for a in self.alerts if a.identity in keep))

    def _summaries(self) -> str:
        return "; ".join(dict.fromkeys(a.summary or a.identity for a in self.alerts))

    @property
    def summary(self) -> str | None:
        """The alert's summary; for several alerts ``"<n> alerts: <summary>; <summary>…"`` (cleaned, capped)."""
        if len(self.alerts) == 1:
            return self.alerts[0].summary
        return clean_text(f"{len(self.alerts)} alerts: {self._summaries()}")

    @property
    def dataset_uri(self) -> str | None:
        """The data the alerts name to retrain on, or None when none names any (the DAG's default applies).

        Alerts that name none go with the one that does (they ask for fresh data without saying where
        it is). Raises :class:`DatasetUriConflict` when alerts name different URIs.
        """
        uris: dict[str, list[str]] = {}
        for alert in self.alerts:
            if alert.dataset_uri is not None:
                uris.setdefault(alert.dataset_uri, []).append(alert.identity)
        if len(uris) > 1:
            raise DatasetUriConflict(self.model, uris)
        return next(iter(uris), None)

    def note(self, default_dataset_uri: str | None = None) -> str:
        """The run's note, one line (Markdown in the UI): where the alerts came from, what they say, and
        which data the run trains on (:func:`data_note`: the alerts' ``dataset_uri``, else
        ``default_dataset_uri``, the DAG's default). At most :data:`NOTE_LIMIT` characters, cleaned like
        every alert text; the summaries are cut first. Raises :class:`DatasetUriConflict`."""
        uri = self.dataset_uri
        data = clean_text(data_note(uri or default_dataset_uri, from_alert=uri is not None), NOTE_LIMIT // 2 + 150)
        head = (f"Drift alert from {self.source}" if len(self.alerts) == 1
                else f"{len(self.alerts)} drift alerts from {self.source}")
        alerts = clean_text(f"{head}: {self._summaries()}", NOTE_LIMIT - len(data) - 3)
        return f"{alerts} — {data}"

    def to_conf(self) -> dict[str, Any]:
        """The run's ``alert`` param (JSON-safe): the first alert's fields at the top level (as when one
        alert started a run), plus ``run_id``, ``identities``, the earliest ``starts_at``, the highest
        ``drift_score``, all ``features``, the named ``dataset_uri`` (None: none) and each alert under
        ``alerts``. Raises :class:`DatasetUriConflict`."""
        entries = [a.to_conf() for a in self.alerts]
        timed = [(a.starts_at, e["starts_at"]) for a, e in zip(self.alerts, entries, strict=True) if a.starts_at]
        scores = [a.drift_score for a in self.alerts if a.drift_score is not None]
        return {
            **entries[0],
            "summary": self.summary,
            "starts_at": min(timed)[1] if timed else None,
            "drift_score": max(scores) if scores else None,
            "features": list(dict.fromkeys(f for a in self.alerts for f in a.features)),
            DATASET_URI: self.dataset_uri,
            "run_id": self.run_id,
            "identities": list(self.identities),
            "alerts": entries,
        }

    def run_conf(self) -> dict[str, Any]:
        """The conf of the training run: ``{"alert": to_conf()}``, plus ``dataset_uri`` (the DAG param
        validation reads) when the alerts name one. Raises :class:`DatasetUriConflict`."""
        uri = self.dataset_uri
        return {"alert": self.to_conf(), **({DATASET_URI: uri} if uri is not None else {})}


def group_by_model(alerts: Iterable[DriftAlert]) -> list[RetrainGroup]:
    """One :class:`RetrainGroup` per model, in the order the models first appear; alerts keep their order."""
    by_model: dict[str, list[DriftAlert]] = {}
    for alert in alerts:
        by_model.setdefault(alert.model, []).append(alert)
    return [RetrainGroup(tuple(group)) for group in by_model.values()]
