"""Inbound: drift alerts sent to the webhook by Alertmanager, Grafana or the project's own format —
signatures, payloads, and which alerts start which retraining run."""
