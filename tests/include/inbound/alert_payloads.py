"""Drift alert payloads as Alertmanager, Grafana and the project format send them, for the inbound tests."""

from __future__ import annotations

import json

from include.inbound import drift_alerts, payloads

SECRET = "test-secret"
NOW = 1_800_000_000
BODY = b'{"model": "credit_approval", "alert_id": "a-1", "status": "firing"}'


def alertmanager(*alerts: dict, **extra) -> dict:
    return {"version": "4", "groupKey": "{}:{alertname=\"FeatureDrift\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "modelops", "groupLabels": {"alertname": "FeatureDrift"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": list(alerts), **extra}


def am_alert(fingerprint: str = "a1b2c3d4e5f60718", model: str = "credit_approval", status: str = "firing",
             starts_at: str = "2026-11-22T10:00:00Z", **extra) -> dict:
    return {"status": status, "labels": {"alertname": "FeatureDrift", "model": model, "severity": "warning"},
            "annotations": {"summary": "annual_income drifted"}, "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": fingerprint, **extra}


def grafana(*alerts: dict) -> dict:
    return {**alertmanager(*alerts), "version": "1", "orgId": 1, "title": "[FIRING:1] FeatureDrift",
            "state": "alerting", "message": "annual_income drifted"}


def parse(payload: dict) -> list[drift_alerts.DriftAlert]:
    return drift_alerts.normalize(payloads.parse_payload(json.dumps(payload).encode()))
