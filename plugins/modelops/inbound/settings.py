"""Where the webhook's settings come from: Airflow's config (``[modelops]`` section) and a connection.

| setting | default | override |
|---|---|---|
| the HMAC secret (project and Grafana signatures) | password of connection ``modelops_drift_webhook`` | ``AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK`` |
| its connection id | ``modelops_drift_webhook`` | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_CONN_ID`` |
| the bearer token (Alertmanager) | password of connection ``modelops_drift_webhook_bearer`` | ``AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK_BEARER`` |
| its connection id | ``modelops_drift_webhook_bearer`` | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_BEARER_CONN_ID`` |
| Grafana's signature header names | ``X-Grafana-Alerting-Signature,X-Grafana-Alert-Signature`` | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_SIGNATURE_HEADERS`` |
| Grafana's timestamp header name | empty: none, Grafana signs the body alone | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_TIMESTAMP_HEADER`` |
| body size limit | 262144 bytes | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_BODY_BYTES`` |
| timestamp tolerance | 300 s | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_TOLERANCE_SECONDS`` |
| firing drift alerts per request | 20 | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_ALERTS`` |
| alertnames that never start a run | ``DatasourceNoData,DatasourceError,Watchdog,InfoInhibitor`` | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_IGNORED_ALERTNAMES`` |
| the only alertnames that may start a run | empty: any | ``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_ALERTNAMES`` |

Lists are comma-separated; an empty ``..._IGNORED_ALERTNAMES`` ignores no alertname, an empty
``..._GRAFANA_SIGNATURE_HEADERS`` turns Grafana's scheme off. The tolerance also bounds Grafana's
timestamp when a timestamp header is set. Read on every request, so a rotated secret or a changed
limit takes effect without a restart. A value that is not valid raises :class:`SettingsError`, which
names the variable (or the connection, never its secret); the webhook answers 503 with it.

**Why the bearer token has a connection of its own** rather than a key in the extra of
``modelops_drift_webhook``: a bearer token travels in clear in every request (proxies and Alertmanager's
own config hold it), while the HMAC secret never leaves the two ends. Kept apart, the token is rotated
(or the scheme turned off, by deleting the connection) without touching the secret that Grafana and the
project's senders sign with, a secrets backend holds each under its own name and access policy, and
the password field is what Airflow masks everywhere. The two must differ: a token equal to the HMAC
secret would let whoever sees one request sign any body (:class:`SettingsError`).
"""

from __future__ import annotations

import logging

from include.inbound.authentication import (
    AUTHORIZATION_HEADER,
    BEARER_TOKEN,
    HEADER_NAME,
    AuthConfig,
)
from include.inbound.drift_alerts import DEFAULT_IGNORED_ALERTNAMES
from include.inbound.signatures import (
    DEFAULT_TOLERANCE_S,
    GRAFANA_SIGNATURE_HEADERS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)

log = logging.getLogger("modelops.inbound")

SECTION = "modelops"
DEFAULT_CONN_ID = "modelops_drift_webhook"
DEFAULT_BEARER_CONN_ID = "modelops_drift_webhook_bearer"
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


def _password(conn: str) -> str | None:
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(conn)
    except AirflowNotFoundException:
        return None
    return connection.password or None


def secret() -> str | None:
    """The HMAC secret (the connection's password) of both HMAC schemes, or None when it is not configured."""
    return _password(conn_id())


def bearer_conn_id() -> str:
    return _get("drift_webhook_bearer_conn_id") or DEFAULT_BEARER_CONN_ID


def bearer_token() -> str | None:
    """The bearer token Alertmanager sends (password of :func:`bearer_conn_id`), or None: bearer not accepted."""
    return _password(bearer_conn_id())


def _header_names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    names = _names(key, default)
    for name in names:
        if not HEADER_NAME.match(name):
            raise SettingsError(f"{env_name(key)} must be HTTP header names, got {name!r}")
    return names


def grafana_signature_headers() -> tuple[str, ...]:
    """The headers Grafana's signature may come in (any of them); empty turns the ``grafana_hmac`` scheme off."""
    return _header_names("drift_webhook_grafana_signature_headers", GRAFANA_SIGNATURE_HEADERS)


def grafana_timestamp_header() -> str | None:
    """The header Grafana's contact point puts its timestamp in, or None (Grafana signs the body alone)."""
    names = _header_names("drift_webhook_grafana_timestamp_header", ())
    if len(names) > 1:
        raise SettingsError(f"{env_name('drift_webhook_grafana_timestamp_header')} must be one header name, "
                            f"got {len(names)}")
    return names[0] if names else None


def auth_config() -> AuthConfig:
    """Everything :func:`include.inbound.authentication.authenticate` needs, read now and checked.

    Raises :class:`SettingsError`: a header name that is not one, Grafana's header names colliding with
    each other or with the project's and ``Authorization``, a bearer token that is not printable ASCII
    without spaces, or a bearer token equal to the HMAC secret. Messages name variables and connections,
    never a secret.
    """
    signature_headers, timestamp_header = grafana_signature_headers(), grafana_timestamp_header()
    taken = {h.lower(): "the project's scheme" for h in (TIMESTAMP_HEADER, SIGNATURE_HEADER)}
    taken[AUTHORIZATION_HEADER.lower()] = "the bearer scheme"
    for key, names in (("drift_webhook_grafana_signature_headers", signature_headers),
                       ("drift_webhook_grafana_timestamp_header", (timestamp_header,) if timestamp_header else ())):
        for name in names:
            if name.lower() in taken:
                raise SettingsError(f"{env_name(key)}: {name} is already used by {taken[name.lower()]}")
            taken[name.lower()] = env_name(key)
    hmac_secret, token = secret(), bearer_token()
    if token is not None and not BEARER_TOKEN.match(token):
        raise SettingsError(f"connection {bearer_conn_id()!r}: its password (the bearer token) must be printable "
                            "ASCII without spaces")
    if token is not None and token == hmac_secret:
        raise SettingsError(f"connection {bearer_conn_id()!r}: its password (the bearer token) must differ from the "
                            f"password of connection {conn_id()!r} (the HMAC secret): a bearer token is sent in every "
                            "request, and must not be able to sign one")
    return AuthConfig(hmac_secret=hmac_secret, bearer_token=token, grafana_signature_headers=signature_headers,
                      grafana_timestamp_header=timestamp_header, tolerance_s=tolerance_seconds())
