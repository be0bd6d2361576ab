"""Alerts: what crossed which threshold, what was done about it, and a Slack Block Kit rendering of it.

An :class:`Alert` is plain data (it goes into audit records via :meth:`Alert.as_dict`); :func:`send`
writes it to the log, :func:`slack_message` renders it for Slack's incoming webhooks. Delivery to
Slack lives on the Airflow side (``modelops.notify``), because it needs an Airflow connection.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

log = logging.getLogger("modelops.alerts")

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}

# Block Kit limits (https://api.slack.com/reference/block-kit): characters unless said otherwise.
MAX_BLOCKS = 50
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_BUTTON_TEXT = 75
MAX_BUTTON_URL = 3000
MAX_ACTION_ELEMENTS = 25
MAX_FALLBACK_TEXT = 3000  # the notification / fallback text; Slack truncates messages past 40,000
ELLIPSIS = "…"


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"unknown alert level {level!r}; expected one of {', '.join(LEVELS)}")
    return level


@dataclass(frozen=True)
class Condition:
    """A measured ``value`` that crossed its ``threshold`` (``detail``: the evidence, in words)."""

    name: str
    value: float
    threshold: float
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("condition name: must not be empty")
        for key in ("value", "threshold"):
            raw = getattr(self, key)
            if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
                raise ValueError(f"condition {self.name!r} {key}: expected a number, got {raw!r}")
            object.__setattr__(self, key, float(raw))


@dataclass(frozen=True)
class Alert:
    """One alert about one model: its level, what crossed which threshold, what was done, where to look.

    ``level``: ``info``, ``warning`` or ``critical``. ``summary``: optional free text shown under
    the header (e.g. which task of a failed run failed). ``links``: label → URL (e.g. "Airflow run",
    "MLflow version", "Evidently report").
    """

    level: str
    model: str
    version: str | None
    title: str
    conditions: tuple[Condition, ...] = ()
    actions: tuple[str, ...] = ()
    links: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        _check_level(self.level)
        if not self.model:
            raise ValueError("alert model: must not be empty")
        if not self.title:
            raise ValueError("alert title: must not be empty")
        if self.version is not None:
            object.__setattr__(self, "version", str(self.version))
        conditions = tuple(self.conditions)
        for i, condition in enumerate(conditions):
            if not isinstance(condition, Condition):
                raise ValueError(f"alert conditions[{i}]: expected a Condition, got {type(condition).__name__}")
        object.__setattr__(self, "conditions", conditions)
        if isinstance(self.actions, str):
            raise ValueError("alert actions: expected a sequence of strings, got one string")
        object.__setattr__(self, "actions", tuple(str(a) for a in self.actions))
        object.__setattr__(self, "links", {str(k): str(v) for k, v in dict(self.links).items()})

    def as_dict(self) -> dict:
        """JSON-ready: for audit records and log lines."""
        return {
            "level": self.level,
            "model": self.model,
            "version": self.version,
            "title": self.title,
            "summary": self.summary,
            "conditions": [asdict(c) for c in self.conditions],
            "actions": list(self.actions),
            "links": dict(self.links),
        }


def send(level: str | Alert, message: str | None = None, **context: object) -> dict:
    """Write an alert to the log at its level; returns what was sent.

    Either ``send(alert)`` with an :class:`Alert`, or ``send(level, message, **context)``
    (``level``: info, warning, critical; context values that are ``None`` are left out).
    """
    if isinstance(level, Alert):
        if message is not None or context:
            raise TypeError("send(alert) takes no message or context: they are part of the Alert")
        payload = level.as_dict()
        level = level.level
    else:
        _check_level(level)
        if not message:
            raise ValueError("alert message: must not be empty")
        payload = {"level": level, "message": message, **{k: v for k, v in context.items() if v is not None}}
    log.log(LEVELS[level], "ALERT %s", json.dumps(payload, sort_keys=True, default=str))
    return payload


# --- Slack Block Kit -----------------------------------------------------------------------------

_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return _PARTIAL_ENTITY.sub("", text[: limit - len(ELLIPSIS)]) + ELLIPSIS


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters (&, <, >) as entities, so user text cannot become a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


def _plain(text: str, limit: int) -> dict:
    return {"type": "plain_text", "text": _truncate(text, limit), "emoji": True}


def _mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> dict:
    return {"type": "mrkdwn", "text": _truncate(text, limit)}


def _section(text: str) -> dict:
    return {"type": "section", "text": _mrkdwn(text)}


def condition_text(condition: Condition) -> str:
    """``*data_drift*: 0.56 ≥ threshold 0.5`` and the detail on the next line (mrkdwn, escaped)."""
    sign = "≥" if condition.value >= condition.threshold else "&lt;"
    line = (f"*{_escape(condition.name)}*: value *{_number(condition.value)}* {sign} "
            f"threshold {_number(condition.threshold)}")
    return f"{line}\n{_escape(condition.detail)}" if condition.detail else line


def _link_blocks(links: Mapping[str, str]) -> list[dict]:
    buttons = []
    for i, (label, url) in enumerate(links.items()):
        if len(url) > MAX_BUTTON_URL or not url.startswith(("http://", "https://")):
            log.warning("Alert link %r left out of the Slack message: not an http(s) URL of <= %d characters",
                        label, MAX_BUTTON_URL)
            continue
        buttons.append({"type": "button", "action_id": f"link_{i}", "text": _plain(label, MAX_BUTTON_TEXT),
                        "url": url})
    return [{"type": "actions", "elements": buttons[i:i + MAX_ACTION_ELEMENTS]}
            for i in range(0, len(buttons), MAX_ACTION_ELEMENTS)]


def fallback_text(alert: Alert) -> str:
    """The notification text (shown where blocks are not): ``[WARNING] model v3: title``."""
    version = f" v{alert.version}" if alert.version else ""
    parts = [f"[{alert.level.upper()}] {alert.model}{version}: {alert.title}"]
    parts += [f"{c.name} {_number(c.value)} (threshold {_number(c.threshold)})" for c in alert.conditions]
    parts += [f"action: {a}" for a in alert.actions]
    return _truncate(_escape("; ".join(parts)), MAX_FALLBACK_TEXT)


def slack_message(alert: Alert, *, channel: str | None = None) -> dict:
    """The alert as a Slack message: ``{"text": fallback, "blocks": [Block Kit]}`` (+ ``channel``).

    Blocks: a header (level, model, title); the model and version as fields; the summary; one
    section per condition (what crossed which threshold, value and threshold, detail); the actions
    taken; a button per link. Texts are cut to Slack's limits and at most 50 blocks are sent: extra
    conditions are counted in one closing section.
    """
    header = f"{ICONS[alert.level]} {alert.level.upper()} · {alert.model}: {alert.title}"
    blocks: list[dict] = [
        {"type": "header", "text": _plain(header, MAX_HEADER_TEXT)},
        {"type": "section", "fields": [
            _mrkdwn(f"*Model*\n{_escape(alert.model)}", MAX_FIELD_TEXT),
            _mrkdwn(f"*Version*\n{_escape(alert.version) if alert.version else 'none'}", MAX_FIELD_TEXT),
        ]},
    ]
    if alert.summary:
        blocks.append(_section(_escape(alert.summary)))
    tail: list[dict] = []
    if alert.actions:
        tail.append(_section("*Actions taken*\n" + "\n".join(f"• {_escape(a)}" for a in alert.actions)))
    tail += _link_blocks(alert.links)
    tail = tail[: MAX_BLOCKS - len(blocks) - 1]  # keep room for at least one condition or the overflow note
    room = MAX_BLOCKS - len(blocks) - len(tail)
    conditions = list(alert.conditions)
    if len(conditions) > room:
        shown, rest = conditions[: room - 1], conditions[room - 1:]
        blocks += [_section(condition_text(c)) for c in shown]
        blocks.append(_section(f"… and {len(rest)} more conditions: " + ", ".join(_escape(c.name) for c in rest)))
    else:
        blocks += [_section(condition_text(c)) for c in conditions]
    blocks += tail
    message: dict = {"text": fallback_text(alert), "blocks": blocks}
    if channel:
        message["channel"] = channel
    return message


# --- message kinds -------------------------------------------------------------------------------

#: A retraining run an alert started skipped itself: nothing changed, but the alert is still unanswered.
RETRAINING_SKIPPED_LEVEL = "warning"
#: Sources of the ``alert`` param the drift webhook sets (:mod:`include.inbound.webhook`); monitoring sets ``monitoring``.
WEBHOOK_SOURCES = ("alertmanager", "grafana", "project")
_TRIGGER_TEXT = 300


def _text(value: object, limit: int = _TRIGGER_TEXT) -> str | None:
    """A value from a run's ``alert`` param, made safe and short (a person may have typed the conf)."""
    from include.inbound.webhook import clean_text

    if value is None or isinstance(value, (dict, list)):
        return None
    text = clean_text(str(value), limit)
    return text or None


def describe_trigger(alert: Mapping) -> str:
    """Which alert started a run, in words, from its ``alert`` param (the shapes the drift webhook and
    monitoring write; anything else is described by its ``source``). Text is cleaned and capped.

    ``drift alert FeatureDrift from grafana (2 alerts, first fingerprint@startsAt): summary``;
    ``monitoring alert (run scheduled__…, version 3): reason``.
    """
    source = _text(alert.get("source"), 40) or "unknown source"
    summary = _text(alert.get("summary") or alert.get("reason"))
    if source in WEBHOOK_SOURCES:
        labels = alert.get("labels")
        name = _text(labels.get("alertname"), 120) if isinstance(labels, Mapping) else None
        identities = alert.get("identities")
        count = len(identities) if isinstance(identities, list) and identities else 1
        first = _text(alert.get("identity"), 200)
        what = f"drift alert {name} from {source}" if name else f"drift alert from {source}"
        detail = ", ".join(p for p in (f"{count} alerts" if count > 1 else None,
                                       f"{'first ' if count > 1 else ''}{first}" if first else None) if p)
    elif source == "monitoring":
        what = "monitoring alert"
        run, version = _text(alert.get("monitor_run_id"), 250), _text(alert.get("version"), 20)
        detail = ", ".join(p for p in (f"run {run}" if run else None, f"version {version}" if version else None) if p)
    else:
        what, detail = f"alert from {source}", ""
    return f"{what}{f' ({detail})' if detail else ''}{f': {summary}' if summary else ''}"


def retraining_skipped(
    *,
    model: str,
    version: str,
    trigger: Mapping,
    dataset_uri: str,
    data_fingerprint: str,
    dag_id: str,
    run_id: str,
    trained_from: str | None = None,
    links: Mapping[str, str] | None = None,
) -> Alert:
    """The warning sent when a run an alert started (``trigger``: its ``alert`` param) skipped itself
    because ``version`` was already trained from the same data, code and params.

    It names the alert (:func:`describe_trigger`), the data (``dataset_uri``, its ``data_fingerprint``
    and ``trained_from``, the ``dataset_uri`` tag of ``version``), the existing version, and how to
    point the alert at new data: the alert's ``dataset_uri`` (annotation or label for Alertmanager and
    Grafana, field for the project format) or the model's ``dataset.uri`` kept on the feature
    pipeline's latest snapshot; ``force=true`` retrains on the same data.
    """
    source = trigger.get("source")
    named = _text(trigger.get("dataset_uri"), 1000)
    same = trained_from is None or trained_from == dataset_uri
    lines = [
        f"Run `{run_id}` of `{dag_id}` trained nothing: version {version} was already trained from the same "
        "data, code and params.",
        f"Started by: {describe_trigger(trigger)}",
        f"Data: `{dataset_uri}` (fingerprint `{data_fingerprint}`)"
        + ("." if same else f"; version {version} was trained from `{trained_from}`, with the same content."),
    ]
    if named:
        lines.append("The alert named this data in its `dataset_uri`, and it has not changed since: point the "
                     "alert at the new snapshot (Alertmanager/Grafana: annotation `dataset_uri`; project format: "
                     "field `dataset_uri`).")
    elif source in WEBHOOK_SOURCES:
        lines.append(f"The alert named no data, so the run read the model's default `dataset.uri`, which holds data "
                     f"already trained on. Point the alert at new data: annotation `dataset_uri` (Alertmanager, "
                     f"Grafana) or field `dataset_uri` (project format), or keep `dataset.uri` in "
                     f"config/models/{model}.yaml pointed at the feature pipeline's latest snapshot.")
    else:
        lines.append(f"The run read the model's default `dataset.uri`, which holds data already trained on: keep "
                     f"`dataset.uri` in config/models/{model}.yaml pointed at the feature pipeline's latest "
                     f"snapshot.")
    lines.append(f"To retrain on this data anyway, trigger `{dag_id}` with `force=true`.")
    return Alert(
        level=RETRAINING_SKIPPED_LEVEL, model=model, version=version,
        title="retraining skipped: the data was already trained on",
        summary="\n".join(lines),
        actions=(f"nothing retrained: {dag_id} run {run_id} skipped; version {version} is unchanged",),
        links=dict(links or {}),
    )
