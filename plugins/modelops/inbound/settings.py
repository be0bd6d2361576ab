"""Where the webhook's settings come from: Airflow's config (``[modelops]`` section) and a connection.

| setting | default | override |
|---|---|---|
| the shared secret | password of connection ``modelops_drift_webhook`` | ``AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK`` |
| connection id | ``modelops_drift_webhook`` | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_CONN_ID`` |
| body size limit | 262144 bytes | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_BODY_BYTES`` |
| timestamp tolerance | 300 s | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_TOLERANCE_SECONDS`` |
| firing drift alerts per request | 20 | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_ALERTS`` |
| alertnames that never start a run | ``DatasourceNoData,DatasourceError,Watchdog,InfoInhibitor`` | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_IGNORED_ALERTNAMES`` |
| the only alertnames that may start a run | empty: any | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_ALERTNAMES`` |

Lists are comma-separated; an empty ``..._IGNORED_ALERTNAMES`` ignores no alertname. Read on every
request, so a rotated secret or a changed limit takes effect without a restart. A value that is not
valid raises :class:`SettingsError`, which names the variable; the webhook answers 503 with it.
"""

from __future__ import annotations

import logging

from include.inbound.drift_alerts import DEFAULT_IGNORED_ALERTNAMES
from include.inbound.signatures import DEFAULT_TOLERANCE_S

log = logging.getLogger("modelops.inbound")

SECTION = "modelops"
DEFAULT_CONN_ID = "modelops_drift_webhook"
DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_MAX_ALERTS = 20


class SettingsError(ValueError):
    """A ``[modelops]`` setting has a value the webhook cannot use; the message names the variable."""


def env_name(key: str) -> str:
    """The environment variable that sets ``key`` of the ``[modelops]`` section."""
    return f"AIRFLOW__{SECTION.upper()}__{key.upper()}"


def _get(key: str) -> str | None:
    from airflow.configuration import conf

    return conf.get(SECTION, key, fallback=None)


def _positive_int(key: str, default: int) -> int:
    raw = _get(key)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{env_name(key)} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise SettingsError(f"{env_name(key)} must be at least 1, got {value}")
    return value


def _names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = _get(key)
    if raw is None:
        return default
    return tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))


def conn_id() -> str:
    return _get("drift_webhook_conn_id") or DEFAULT_CONN_ID


def max_body_bytes() -> int:
    return _positive_int("drift_webhook_max_body_bytes", DEFAULT_MAX_BODY_BYTES)


def tolerance_seconds() -> int:
    return _positive_int("drift_webhook_tolerance_seconds", DEFAULT_TOLERANCE_S)


def max_alerts() -> int:
    """The most firing drift alerts one request may carry (resolved and ignored alerts do not count)."""
    return _positive_int("drift_webhook_max_alerts", DEFAULT_MAX_ALERTS)


def ignored_alertnames() -> tuple[str, ...]:
    """Alert names that never start a retraining run (listed under ``ignored``)."""
    return _names("drift_webhook_ignored_alertnames", DEFAULT_IGNORED_ALERTNAMES)


def alertnames() -> tuple[str, ...]:
    """When not empty, the only alert names (Alertmanager, Grafana) that may start a retraining run."""
    return _names("drift_webhook_alertnames", ())


def secret() -> str | None:
    """The shared secret (the connection's password), or None when it is not configured."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(conn_id())
    except AirflowNotFoundException:
        return None
    return connection.password or None
