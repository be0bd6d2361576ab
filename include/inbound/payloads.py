"""What a drift alert says: the three payload formats, their text cleaned, and the data they name.

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
"""

from __future__ import annotations

import re
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

MODEL_LABEL = "model"
ALERTNAME_LABEL = "alertname"
#: The annotation (Alertmanager, Grafana), label or field (project format) naming the data to retrain on,
#: and the training DAG's param it sets.
DATASET_URI = "dataset_uri"


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
