"""Drift alerts from outside: request signatures, the three payload formats, one normalized alert each.

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
     "summary": "...", "drift_score": 0.41, "features": ["annual_income"], "labels": {...}}

In Alertmanager and Grafana alerts the model is the alert label ``model`` (add it in the alert
rule). Every alert becomes a :class:`DriftAlert` whose :attr:`~DriftAlert.run_id` is derived from
the alert's identity (Alertmanager/Grafana: ``fingerprint`` + ``startsAt``; project: ``alert_id``),
so a redelivered alert maps to the same retraining run.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
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
)

TIMESTAMP_HEADER = "X-Modelops-Timestamp"
SIGNATURE_HEADER = "X-Modelops-Signature"
SIGNATURE_SCHEME = "sha256"
DEFAULT_TOLERANCE_S = 300
RUN_ID_PREFIX = "drift_webhook__"
MODEL_LABEL = "model"

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


# --- payloads --------------------------------------------------------------------------------------

def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date out of range once converted to UTC") from None


ModelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Status = Literal["firing", "resolved"]
ShortText = Annotated[str, StringConstraints(max_length=4096)]


class AlertLabels(BaseModel):
    """Alert labels (strings); ``model`` names the model the alert is about."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str] = Field(init=False)

    model: ModelName = Field(description="The configured model the alert is about (label `model`).")


class AlertmanagerAlert(BaseModel):
    """One alert as Alertmanager (and Grafana) send it."""

    model_config = ConfigDict(extra="ignore")

    status: Status
    labels: AlertLabels
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: UtcDatetime  # noqa: N815 - the wire name
    endsAt: UtcDatetime | None = None  # noqa: N815
    generatorURL: str | None = None  # noqa: N815
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=128)]


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
    """Grafana alerting's webhook payload, version 1: Alertmanager's shape plus a few fields."""

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
    alert_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="Stable id of this alert; the same id never starts a second retraining run.")
    status: Status
    summary: ShortText | None = None
    drift_score: float | None = Field(None, allow_inf_nan=False)
    features: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        default_factory=list, description="The drifted features.")
    labels: dict[str, str] = Field(default_factory=dict)
    starts_at: UtcDatetime | None = None


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
    """The payload is not JSON or not one of the formats; ``errors`` name each field (pydantic's loc)."""

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
            loc = list(err["loc"])
            fmt = loc.pop(0) if loc and loc[0] in ("alertmanager", "grafana", "project") else None
            errors.append({"loc": loc, "msg": err["msg"], "type": err["type"], **({"format": fmt} if fmt else {})})
        raise PayloadError(errors) from None


# --- normalized alerts -----------------------------------------------------------------------------


class DriftAlert(BaseModel):
    """One alert, whatever format it came in; ``run_id`` is its retraining run."""

    model_config = ConfigDict(frozen=True)

    model: str
    source: Literal["alertmanager", "grafana", "project"]
    status: Status
    identity: str = Field(description="fingerprint@startsAt (Alertmanager, Grafana) or alert_id (project)")
    summary: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    generator_url: str | None = None
    drift_score: float | None = None
    features: list[str] = Field(default_factory=list)

    @property
    def run_id(self) -> str:
        return run_id_for(self.source, self.identity)

    @property
    def dag_id(self) -> str:
        return f"train_{self.model}"

    def to_conf(self) -> dict[str, Any]:
        """The JSON-safe dict passed as the run's ``alert`` param."""
        return {**self.model_dump(mode="json"), "run_id": self.run_id}


def run_id_for(source: str, identity: str) -> str:
    """``drift_webhook__<32 hex>``: the same alert (same identity) always gets the same run id."""
    kind = "project" if source == "project" else "alertmanager"  # Grafana speaks Alertmanager's identity
    digest = hashlib.sha256(f"{kind}\n{identity}".encode()).hexdigest()
    return f"{RUN_ID_PREFIX}{digest[:32]}"


def _summary(annotations: dict[str, str], labels: dict[str, str], fallback: str | None) -> str | None:
    return annotations.get("summary") or annotations.get("description") or fallback or labels.get("alertname")


def normalize(payload: AlertmanagerPayload | GrafanaPayload | ProjectAlert) -> list[DriftAlert]:
    """The payload's alerts as :class:`DriftAlert` s, in order, without duplicates (same identity)."""
    alerts: list[DriftAlert] = []
    if isinstance(payload, ProjectAlert):
        alerts.append(DriftAlert(
            model=payload.model, source="project", status=payload.status, identity=payload.alert_id,
            summary=payload.summary, labels={**payload.labels, MODEL_LABEL: payload.model},
            starts_at=payload.starts_at,
            drift_score=payload.drift_score, features=payload.features,
        ))
    else:
        source = "grafana" if isinstance(payload, GrafanaPayload) else "alertmanager"
        fallback = payload.title if isinstance(payload, GrafanaPayload) else None
        for alert in payload.alerts:
            labels = alert.labels.model_dump()
            starts_at = alert.startsAt
            alerts.append(DriftAlert(
                model=alert.labels.model, source=source, status=alert.status,
                identity=f"{alert.fingerprint}@{starts_at.isoformat()}",
                summary=_summary(alert.annotations, labels, fallback), labels=labels,
                annotations=alert.annotations, starts_at=starts_at, generator_url=alert.generatorURL,
            ))
    unique: dict[str, DriftAlert] = {}
    for alert in alerts:
        unique.setdefault(alert.run_id, alert)
    return list(unique.values())
