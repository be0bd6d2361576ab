"""Alerts: what crossed which threshold, what was done about it, and a Slack Block Kit rendering of it.

An :class:`Alert` is plain data (it goes into log lines via :meth:`Alert.as_dict`); its
:class:`~include.monitoring.findings.Finding` s are the assessment's own. :func:`send` writes it to
the log, :func:`slack_message` renders it for Slack's incoming webhooks with ``slack_sdk``'s Block
Kit models, which refuse a block past Slack's limits. Delivery to Slack lives on the Airflow side
(``modelops.notify``), because it needs an Airflow connection.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from include.monitoring.findings import Finding

log = logging.getLogger("modelops.alerts")

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}

# Slack's limits that slack_sdk's block models do not check (https://api.slack.com/reference/block-kit);
# the others are the models' own (HeaderBlock.text_max_length, ButtonElement.url_max_length, ...).
MAX_BLOCKS = 50  # blocks in one message
MAX_FIELD_TEXT = 2000  # characters of a section field
MAX_FALLBACK_TEXT = 3000  # the notification / fallback text; Slack truncates messages past 40,000
ELLIPSIS = "…"


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"unknown alert level {level!r}; expected one of {', '.join(LEVELS)}")
    return level


@dataclass(frozen=True)
class Alert:
    """One alert about one model: its level, what crossed which threshold, what was done, where to look.

    ``level``: ``info``, ``warning`` or ``critical``. ``findings``: what crossed which threshold.
    ``summary``: optional free text shown under the header (e.g. which task of a failed run failed).
    ``links``: label → URL (e.g. "Airflow run", "MLflow version", "Evidently report").
    """

    level: str
    model: str
    version: str | None
    title: str
    findings: tuple[Finding, ...] = ()
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
        findings = tuple(self.findings)
        for i, finding in enumerate(findings):
            if not isinstance(finding, Finding):
                raise ValueError(f"alert findings[{i}]: expected a Finding, got {type(finding).__name__}")
        object.__setattr__(self, "findings", findings)
        if isinstance(self.actions, str):
            raise ValueError("alert actions: expected a sequence of strings, got one string")
        object.__setattr__(self, "actions", tuple(str(a) for a in self.actions))
        object.__setattr__(self, "links", {str(k): str(v) for k, v in dict(self.links).items()})

    def as_dict(self) -> dict:
        """JSON-ready: for log lines (the findings as their fields, as in the alert's audit record)."""
        return {
            "level": self.level,
            "model": self.model,
            "version": self.version,
            "title": self.title,
            "summary": self.summary,
            "findings": [asdict(f) for f in self.findings],
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


def finding_text(finding: Finding) -> str:
    """``*data_drift*: value *0.56* ≥ threshold 0.5`` and the detail on the next line (mrkdwn, escaped)."""
    sign = "≥" if finding.value >= finding.threshold else "&lt;"
    line = (f"*{_escape(finding.name)}*: value *{_number(finding.value)}* {sign} "
            f"threshold {_number(finding.threshold)}")
    return f"{line}\n{_escape(finding.detail)}" if finding.detail else line


def fallback_text(alert: Alert) -> str:
    """The notification text (shown where blocks are not): ``[WARNING] model v3: title; …``."""
    version = f" v{alert.version}" if alert.version else ""
    parts = [f"[{alert.level.upper()}] {alert.model}{version}: {alert.title}"]
    parts += [f"{f.name} {_number(f.value)} (threshold {_number(f.threshold)})" for f in alert.findings]
    parts += [f"action: {a}" for a in alert.actions]
    return _truncate(_escape("; ".join(parts)), MAX_FALLBACK_TEXT)


def slack_message(alert: Alert, *, channel: str | None = None) -> dict:
    """The alert as a Slack message: ``{"text": fallback, "blocks": [Block Kit]}`` (+ ``channel``).

    Blocks: a header (level, model, title); the model and version as fields; the summary; one
    section per finding (what crossed which threshold, value and threshold, detail); the actions
    taken; a button per http(s) link (others are left out, with a warning). Texts are cut to
    Slack's limits (ending in "…") and at most 50 blocks are sent: extra findings are counted in
    one closing section. The blocks are built as ``slack_sdk.models.blocks`` models, whose
    ``to_dict`` raises ``slack_sdk.errors.SlackObjectFormationError`` for a block past Slack's limits.
    """
    bk = _block_kit()
    header = f"{ICONS[alert.level]} {alert.level.upper()} · {alert.model}: {alert.title}"
    blocks = [
        bk.HeaderBlock(text=_plain(header, bk.HeaderBlock.text_max_length)),
        bk.SectionBlock(fields=[
            _mrkdwn(f"*Model*\n{_escape(alert.model)}", MAX_FIELD_TEXT),
            _mrkdwn(f"*Version*\n{_escape(alert.version) if alert.version else 'none'}", MAX_FIELD_TEXT),
        ]),
    ]
    if alert.summary:
        blocks.append(_section(_escape(alert.summary)))
    tail = []
    if alert.actions:
        tail.append(_section("*Actions taken*\n" + "\n".join(f"• {_escape(a)}" for a in alert.actions)))
    tail += _link_blocks(alert.links)
    tail = tail[: MAX_BLOCKS - len(blocks) - 1]  # keep room for at least one finding or the overflow note
    room = MAX_BLOCKS - len(blocks) - len(tail)
    findings = list(alert.findings)
    if len(findings) > room:
        shown, rest = findings[: room - 1], findings[room - 1:]
        blocks += [_section(finding_text(f)) for f in shown]
        blocks.append(_section(f"… and {len(rest)} more conditions: " + ", ".join(_escape(f.name) for f in rest)))
    else:
        blocks += [_section(finding_text(f)) for f in findings]
    blocks += tail
    message: dict = {"text": fallback_text(alert), "blocks": [block.to_dict() for block in blocks]}
    if channel:
        message["channel"] = channel
    return message


def _block_kit():
    """``slack_sdk.models.blocks``, imported on first use (DAG files import this module; slack_sdk loads slowly)."""
    from slack_sdk.models import blocks

    return blocks


def _plain(text: str, limit: int):
    return _block_kit().PlainTextObject(text=_truncate(text, limit), emoji=True)


def _mrkdwn(text: str, limit: int):
    return _block_kit().MarkdownTextObject(text=_truncate(text, limit))


def _section(text: str):
    bk = _block_kit()
    return bk.SectionBlock(text=_mrkdwn(text, bk.SectionBlock.text_max_length))


def _link_blocks(links: Mapping[str, str]) -> list:
    """One button per http(s) link, in ``actions`` blocks of as many buttons as Slack allows in one."""
    bk = _block_kit()
    longest = bk.ButtonElement.url_max_length
    buttons = []
    for i, (label, url) in enumerate(links.items()):
        if len(url) > longest or not url.startswith(("http://", "https://")):
            log.warning("Alert link %r left out of the Slack message: not an http(s) URL of <= %d characters",
                        label, longest)
            continue
        buttons.append(bk.ButtonElement(action_id=f"link_{i}", url=url,
                                        text=_plain(label, bk.ButtonElement.text_max_length)))
    per_block = bk.ActionsBlock.elements_max_length
    return [bk.ActionsBlock(elements=buttons[i:i + per_block]) for i in range(0, len(buttons), per_block)]


# --- message kinds -------------------------------------------------------------------------------

#: A retraining run an alert started skipped itself: nothing changed, but the alert is still unanswered.
RETRAINING_SKIPPED_LEVEL = "warning"
#: Sources of the ``alert`` param the drift webhook sets (:mod:`include.inbound.drift_alerts`); monitoring sets ``monitoring``.
WEBHOOK_SOURCES = ("alertmanager", "grafana", "project")
_TRIGGER_TEXT = 300


def _text(value: object, limit: int = _TRIGGER_TEXT) -> str | None:
    """A value from a run's ``alert`` param, made safe and short (a person may have typed the conf)."""
    from include.inbound.payloads import clean_text

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
