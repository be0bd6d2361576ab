"""Where the webhook's settings come from: Airflow's config (``[modelops]`` section) and a connection.

| setting | default | override |
|---|---|---|
| the shared secret | password of connection ``modelops_drift_webhook`` | ``AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK`` |
| connection id | ``modelops_drift_webhook`` | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_CONN_ID`` |
| body size limit | 262144 bytes | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_BODY_BYTES`` |
| timestamp tolerance | 300 s | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_TOLERANCE_SECONDS`` |

Read on every request, so a rotated secret takes effect without a restart.
"""

from __future__ import annotations

import logging

from include.webhook import DEFAULT_TOLERANCE_S

log = logging.getLogger("modelops.webhook")

SECTION = "modelops"
DEFAULT_CONN_ID = "modelops_drift_webhook"
DEFAULT_MAX_BODY_BYTES = 256 * 1024


def conn_id() -> str:
    from airflow.configuration import conf

    return conf.get(SECTION, "drift_webhook_conn_id", fallback=DEFAULT_CONN_ID)


def max_body_bytes() -> int:
    from airflow.configuration import conf

    return conf.getint(SECTION, "drift_webhook_max_body_bytes", fallback=DEFAULT_MAX_BODY_BYTES)


def tolerance_seconds() -> int:
    from airflow.configuration import conf

    return conf.getint(SECTION, "drift_webhook_tolerance_seconds", fallback=DEFAULT_TOLERANCE_S)


def secret() -> str | None:
    """The shared secret (the connection's password), or None when it is not configured."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(conn_id())
    except AirflowNotFoundException:
        return None
    return connection.password or None
