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
