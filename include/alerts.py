"""Alerts: a log line and an audit-friendly structure now; Slack delivery comes with monitoring."""

from __future__ import annotations

import json
import logging

log = logging.getLogger("modelops.alerts")

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


def send(level: str, message: str, **context: object) -> dict:
    """Emit an alert at ``level`` (info, warning, critical) with its context; returns what was sent."""
    if level not in LEVELS:
        raise ValueError(f"unknown alert level {level!r}; expected one of {', '.join(LEVELS)}")
    alert = {"level": level, "message": message, **{k: v for k, v in context.items() if v is not None}}
    log.log(LEVELS[level], "ALERT %s", json.dumps(alert, sort_keys=True, default=str))
    return alert
