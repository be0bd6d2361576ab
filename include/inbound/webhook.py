"""Drift alerts from outside: request signatures, the three payload formats, which alerts mean drift.

**Signature.** A sender signs every request with a shared secret::

    X-Modelops-Timestamp: <unix seconds>
    X-Modelops-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>

:func:`verify` accepts it only if the MAC matches (constant-time comparison) and the timestamp is
within ``tolerance_s`` (default 300 s) of now, either way, so a captured request cannot be replayed
later. In a shell::

    ts=$(date +%s)
    sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$secret" -hex | sed 's/^.* //')

**Payloads** (:func:`parse_payload`), told apart by their shape:

* Alertmanager webhook, ``"version": "4"``: each alert in ``alerts``;
* Grafana alerting webhook, ``"version": "1"`` (unified alerting; Alertmanager's shape plus
  ``orgId``, ``title``, ``state``, ``message``): each alert in ``alerts``;
* the project format, one alert per request, for services that sign their own requests::

    {"model": "credit_approval", "alert_id": "evidently-2026-11-22T10", "status": "firing",
     "summary": "...", "drift_score": 0.41, "features": ["annual_income"], "labels": {...},
     "dataset_uri": "s3://features/credit_approval/snapshot=2026-11-22T10"}

In Alertmanager and Grafana alerts the model is the alert label ``model`` (add it in the alert
rule). Every alert becomes a :class:`DriftAlert`, its text cleaned (:func:`clean_text`: no control or
bidirectional formatting characters, bounded lengths) and its identity taken from the alert
(Alertmanager/Grafana: ``fingerprint`` + ``startsAt``; project: ``alert_id``).

**Which data** (:func:`check_dataset_uri`): an alert may name the data to retrain on, the project
format in its ``dataset_uri`` field, Alertmanager and Grafana alerts in the annotation (or label)
``dataset_uri``. It becomes the run's ``dataset_uri`` param; an alert that names none leaves the
training DAG's default (``dataset.uri`` of the model's config). The value is a local path or a
``scheme://`` URI of at most :data:`DATASET_URI_LIMIT` characters, with no control or bidirectional
formatting characters and no ``${...}`` (the training DAG expands those from its own environment);
anything else is refused naming the field. The training DAG's validation refuses what it cannot read.
A run skips itself when a version was already trained from the same data, code and params, so an
alert on unchanged data retrains nothing: the webhook's answer and the run's note say which data the
run trains on (:func:`data_note`).

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
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

TIMESTAMP_HEADER = "X-Modelops-Timestamp"
SIGNATURE_HEADER = "X-Modelops-Signature"
SIGNATURE_SCHEME = "sha256"
DEFAULT_TOLERANCE_S = 300
RUN_ID_PREFIX = "drift_webhook__"
MODEL_LABEL = "model"
ALERTNAME_LABEL = "alertname"
#: The annotation (Alertmanager, Grafana), label or field (project format) naming the data to retrain on,
#: and the training DAG's param it sets.
DATASET_URI = "dataset_uri"

_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


# --- signatures ------------------------------------------------------------------------------------


class SignatureError(ValueError):
    """A request's signature headers are missing, malformed, stale or wrong; ``reason`` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "missing", "malformed", "stale" or "mismatch"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Modelops-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_SCHEME}={mac.hexdigest()}"


def signed_headers(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Both signature headers for ``body``, timestamped now unless ``timestamp`` is given."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, body)}


def verify(
    secret: str | bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a request's signature headers against ``body``; returns the timestamp.

    Raises :class:`SignatureError` for a missing or malformed header, a signature that does not
    match (compared in constant time), or an authentic request older or newer than ``tolerance_s``.
    """
    if not _key(secret):
        raise ValueError("the webhook secret is empty")
    missing = [h for h, v in ((TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)) if not v]
    if missing:
        raise SignatureError("missing", f"missing header {' and '.join(missing)}")
    timestamp, signature = timestamp.strip(), signature.strip()
    if not _TIMESTAMP.match(timestamp):
        raise SignatureError("malformed", f"{TIMESTAMP_HEADER} must be unix seconds (an integer)")
    if not _SIGNATURE.match(signature):
        raise SignatureError("malformed", f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 hex digits")
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise SignatureError("mismatch", f"{SIGNATURE_HEADER} does not match the body and timestamp")
    ts = int(timestamp)
    skew = (time.time() if now is None else now) - ts
    if abs(skew) > tolerance_s:
        raise SignatureError("stale", f"{TIMESTAMP_HEADER} is {abs(int(skew))} s off the server clock "
                                      f"(tolerance {tolerance_s} s)")
    return ts


# --- text that came with an alert ------------------------------------------------------------------

TEXT_LIMIT = 1024
KEY_LIMIT = 128
URL_LIMIT = 2048
NOTE_LIMIT = 900

#: Unicode's bidirectional formatting characters (UAX #9): embeddings and overrides U+202A-U+202E,
#: isolates U+2066-U+2069, and the marks U+200E, U+200F, U+061C. They make text read differently
#: from what it is ("Trojan Source"), so alert text never keeps them.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_BREAKS = re.compile("[\t\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029]+")
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{BIDI_CONTROLS}\u2028\u2029]")


def clean_text(value: str, limit: int = TEXT_LIMIT) -> str:
    """``value`` made safe for a run note, a log line, the Airflow UI or Slack; at most ``limit`` characters.

    Line and paragraph breaks and tabs (``\\t \\n \\v \\f \\r``, U+001C-U+001E, U+0085, U+2028, U+2029)
    become one space, so a value cannot forge a log line; every other C0/C1 control character (U+0000-
    U+001F, U+007F-U+009F) and every bidirectional formatting character (:data:`BIDI_CONTROLS`) is
    removed; the ends are stripped and a longer text is cut to ``limit - 1`` characters plus ``…``.
    """
    text = _UNSAFE.sub("", _BREAKS.sub(" ", value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean(value: str) -> str:
    return clean_text(value, TEXT_LIMIT)


def _clean_key(value: str) -> str:
    return clean_text(value, KEY_LIMIT)


def _clean_url(value: str) -> str:
    return clean_text(value, URL_LIMIT)


def _clean_feature(value: str) -> str:
    return clean_text(value, 256)


def _no_unsafe_characters(value: str) -> str:
    if _UNSAFE.search(value):
        raise ValueError("must not contain control characters or bidirectional formatting characters")
    return value


# --- the data an alert names -----------------------------------------------------------------------

#: The longest ``dataset_uri`` an alert may name, in characters (it must fit the run's note, 1000 characters).
DATASET_URI_LIMIT = 512
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def check_dataset_uri(value: str) -> str:
    """``value`` (ends stripped) if it can name a dataset; raises ``ValueError`` saying why not.

    Accepted: a local path (``/data/credit/2026-11-22.parquet``, ``data/x.csv``) or a URI with a scheme
    (``file:///data/x.parquet``, ``s3://bucket/key``), 1 to :data:`DATASET_URI_LIMIT` characters. Refused:
    control characters (line breaks included) and bidirectional formatting characters, ``${...}``
    (the training DAG would expand it from its own environment: an alert must not read it), a
    ``://`` that does not follow a scheme (``://x``, ``1s3://x``) and a scheme with no location after it.
    Whether the data exists and can be read is checked by the training DAG's validation, on the worker.
    """
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > DATASET_URI_LIMIT:
        raise ValueError(f"must be at most {DATASET_URI_LIMIT} characters, got {len(value)}")
    if _UNSAFE.search(value):
        raise ValueError("must not contain control characters or bidirectional formatting characters")
    if "${" in value:
        raise ValueError("must not contain ${...}: environment references are expanded only in config files")
    scheme = _URI_SCHEME.match(value)
    if "://" in value and scheme is None:
        raise ValueError("must be a local path or a URI that starts with a scheme, e.g. file:///data/x.parquet "
                         "or s3://bucket/key")
    if scheme is not None and len(value) == scheme.end():
        raise ValueError(f"names no location after {scheme.group(0)}")
    return value


#: A ``dataset_uri`` field: the JSON schema bounds its length, :func:`check_dataset_uri` the rest.
DatasetUri = Annotated[str, StringConstraints(min_length=1, max_length=DATASET_URI_LIMIT),
                       AfterValidator(check_dataset_uri)]


def _code(text: str) -> str:
    """``text`` as a Markdown code span (the run note is Markdown): fenced with more backticks than it holds."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def data_note(dataset_uri: str | None, *, from_alert: bool) -> str:
    """One sentence on the data a retraining run trains on and when it skips itself, e.g.
    ``Trains on `s3://…` (the alert's dataset_uri); skips itself if a version was already trained from
    that data, code and params.`` ``dataset_uri`` None: the DAG has no default to name."""
    if from_alert:
        where = f"{_code(clean_text(dataset_uri or '', DATASET_URI_LIMIT))} (the alert's {DATASET_URI})"
    elif dataset_uri:
        where = (f"{_code(clean_text(dataset_uri, DATASET_URI_LIMIT))} (the DAG's default {DATASET_URI}: "
                 f"the alert names none)")
    else:
        where = f"the DAG's default {DATASET_URI} (the alert names none)"
    return f"Trains on {where}; skips itself if a version was already trained from that data, code and params."


CleanText = Annotated[str, AfterValidator(_clean)]
CleanKey = Annotated[str, AfterValidator(_clean_key)]
CleanUrl = Annotated[str, AfterValidator(_clean_url)]
CleanFeature = Annotated[str, AfterValidator(_clean_feature)]
Identifier = Annotated[str, AfterValidator(_no_unsafe_characters)]


# --- payloads --------------------------------------------------------------------------------------

def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date out of range once converted to UTC") from None


ModelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Status = Literal["firing", "resolved"]
Source = Literal["alertmanager", "grafana", "project"]
ShortText = Annotated[str, StringConstraints(max_length=4096)]


class AlertLabels(BaseModel):
    """Alert labels (strings); ``model`` names the model the alert is about."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str] = Field(init=False)

    model: ModelName = Field(description="The configured model the alert is about (label `model`).")
    dataset_uri: DatasetUri | None = Field(
        None, description="The data to retrain on, when no annotation `dataset_uri` names it: a local path or a "
                          "scheme:// URI (see the annotation).")


def _annotations(value: dict[str, str]) -> dict[str, str]:
    if DATASET_URI in value:
        try:
            return {**value, DATASET_URI: check_dataset_uri(value[DATASET_URI])}
        except ValueError as exc:
            raise ValueError(f"annotation {DATASET_URI}: {exc}") from None
    return value


class AlertmanagerAlert(BaseModel):
    """One alert as Alertmanager (and Grafana) send it."""

    model_config = ConfigDict(extra="ignore")

    status: Status
    labels: AlertLabels
    annotations: Annotated[dict[str, str], AfterValidator(_annotations)] = Field(
        default_factory=dict,
        description="Text about the alert. `summary` (or `description`) describes it; `dataset_uri` names the data "
                    f"to retrain on: a local path or a scheme:// URI, at most {DATASET_URI_LIMIT} characters, "
                    "no control characters, no ${...}. Without it the run trains on the model's configured data.")
    startsAt: UtcDatetime  # noqa: N815 - the wire name
    endsAt: UtcDatetime | None = None  # noqa: N815
    generatorURL: str | None = None  # noqa: N815
    fingerprint: Annotated[Identifier, StringConstraints(min_length=1, max_length=128)]

    @model_validator(mode="after")
    def _one_dataset_uri(self) -> AlertmanagerAlert:
        label, annotation = self.labels.dataset_uri, self.annotations.get(DATASET_URI)
        if label is not None and annotation is not None and label != annotation:
            raise ValueError(f"label {DATASET_URI} ({label!r}) and annotation {DATASET_URI} ({annotation!r}) "
                             "name different data; set one of them")
        return self

    @property
    def dataset_uri(self) -> str | None:
        """The data the alert names: its ``dataset_uri`` annotation, else its label."""
        return self.annotations.get(DATASET_URI) or self.labels.dataset_uri


class GrafanaAlert(AlertmanagerAlert):
    silenceURL: str | None = None  # noqa: N815
    dashboardURL: str | None = None  # noqa: N815
    panelURL: str | None = None  # noqa: N815
    values: dict[str, float | None] | None = None
    valueString: str | None = None  # noqa: N815


class AlertmanagerPayload(BaseModel):
    """Alertmanager's webhook payload, version 4."""

    model_config = ConfigDict(extra="ignore", title="AlertmanagerWebhook")

    version: Literal["4"]
    groupKey: str | None = None  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815
    status: Status
    receiver: str | None = None
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str | None = None  # noqa: N815
    alerts: list[AlertmanagerAlert] = Field(min_length=1)


class GrafanaPayload(AlertmanagerPayload):
    """Grafana alerting's webhook payload, version 1: Alertmanager's shape plus a few fields.

    ``state`` is ``alerting`` when any alert of the notification fires and ``ok`` otherwise; it says
    nothing about a single alert, so only each alert's ``status``, labels and annotations are read.
    """

    model_config = ConfigDict(extra="ignore", title="GrafanaWebhook")

    version: Literal["1"]
    orgId: int | None = None  # noqa: N815
    title: str | None = None
    state: str | None = None
    message: str | None = None
    alerts: list[GrafanaAlert] = Field(min_length=1)


class ProjectAlert(BaseModel):
    """The project's own format: one drift alert per request, from a service that signs it."""

    model_config = ConfigDict(extra="forbid", title="ProjectDriftAlert")

    model: ModelName = Field(description="The configured model the alert is about.")
    alert_id: Annotated[Identifier, StringConstraints(min_length=1, max_length=200)] = Field(
        description="Stable id of this alert; the same id never starts a second retraining run. "
                    "No control or bidirectional formatting characters.")
    status: Status
    summary: ShortText | None = None
    drift_score: float | None = Field(None, allow_inf_nan=False)
    features: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        default_factory=list, description="The drifted features.")
    labels: dict[str, str] = Field(default_factory=dict)
    starts_at: UtcDatetime | None = None
    dataset_uri: DatasetUri | None = Field(
        None, description="The data to retrain on: a local path or a scheme:// URI (file://, s3://…), at most "
                          f"{DATASET_URI_LIMIT} characters, no control characters, no ${{...}}. Without it the run "
                          "trains on the model's configured data (dataset.uri), and skips itself if a version was "
                          "already trained from that data, code and params.")


def _payload_kind(value: Any) -> str:
    if isinstance(value, dict) and ("alerts" in value or "version" in value):
        if value.get("version") == "1" or ("orgId" in value and value.get("version") != "4"):
            return "grafana"
        return "alertmanager"
    return "project"


DriftPayload = Annotated[
    Annotated[AlertmanagerPayload, Tag("alertmanager")]
    | Annotated[GrafanaPayload, Tag("grafana")]
    | Annotated[ProjectAlert, Tag("project")],
    Discriminator(_payload_kind),
]
_ADAPTER: TypeAdapter[AlertmanagerPayload | GrafanaPayload | ProjectAlert] = TypeAdapter(DriftPayload)


def payload_json_schema(ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """JSON schema of the accepted payloads (a ``oneOf`` of the three formats)."""
    return _ADAPTER.json_schema(ref_template=ref_template)


class PayloadError(ValueError):
    """The payload is not JSON or not one of the formats; ``errors`` name each field (pydantic's loc).

    Each error is ``{"loc": [...], "msg": str, "type": str, "format"?: str}``; names in ``loc`` that
    came from the body (keys) are passed through :func:`clean_text`, so the message is safe to log.
    """

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc'])) or '<body>'}: {e['msg']}" for e in errors))


def parse_payload(body: bytes | str) -> AlertmanagerPayload | GrafanaPayload | ProjectAlert:
    """Validate a raw JSON body as one of the three formats; :class:`PayloadError` names the field."""
    try:
        return _ADAPTER.validate_json(body)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = [clean_text(part, KEY_LIMIT) if isinstance(part, str) else part for part in err["loc"]]
            fmt = loc.pop(0) if loc and loc[0] in ("alertmanager", "grafana", "project") else None
            errors.append({"loc": loc, "msg": err["msg"], "type": err["type"], **({"format": fmt} if fmt else {})})
        raise PayloadError(errors) from None


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
        return f"train_{self.model}"

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
