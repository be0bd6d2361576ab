"""MLflow tracking and registry access from Airflow, configured by a connection.

Connection ``mlflow_default`` (any conn type, e.g. ``http``): ``extra.tracking_uri`` wins, else
``<schema or http>://host:port/path``. Credentials: ``login`` + ``password`` (basic auth), or
``extra.token`` (bearer token), or userinfo in ``extra.tracking_uri`` (``https://user:pass@host``,
taken out of the URI). They reach MLflow's client through this process's memory, never through
``os.environ`` (:mod:`include.tracking_auth`); a local training process gets them in its own
environment only, and a training pod from a Kubernetes Secret. With no connection the hook falls
back to ``MLFLOW_TRACKING_URI`` (and MLflow's own ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` /
``_TOKEN`` variables), then to the embedded SQLite store.

    AIRFLOW_CONN_MLFLOW_DEFAULT='{"conn_type": "http", "host": "mlflow.internal", "port": 5000,
                                  "login": "airflow", "password": "..."}'
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from typing import NamedTuple

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from include.tracking_auth import Credentials, CredentialsError

log = logging.getLogger(__name__)


class _Target(NamedTuple):
    uri: str
    credentials: Credentials | None
    source: str  # where the URI and credentials came from, for messages
    from_environ: bool  # credentials set with MLflow's own variables (MLflow reads them itself)


class MlflowHook(BaseHook):
    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "http"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def _target(self) -> _Target:
        from include import tracking, tracking_auth

        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            source = f"MLFLOW_TRACKING_URI (no connection {self.mlflow_conn_id!r})"
            try:
                uri, credentials = tracking_auth.split_uri(tracking.tracking_uri())
            except CredentialsError as exc:
                raise ValueError(f"{source}: {exc}") from None
            if credentials is not None:
                return _Target(uri, credentials, source, from_environ=False)
            return _Target(uri, tracking_auth.from_environ(), source, from_environ=True)

        source = f"connection {self.mlflow_conn_id!r}"
        extra = conn.extra_dejson
        try:
            if raw := extra.get("tracking_uri"):
                uri, in_uri = tracking_auth.split_uri(raw)
            elif conn.host:
                port = f":{conn.port}" if conn.port else ""
                uri, in_uri = f"{conn.schema or 'http'}://{conn.host}{port}", None
            else:
                raise CredentialsError("needs a host or extra.tracking_uri")
            given = None
            if conn.login or conn.password or extra.get("token"):
                given = Credentials(username=conn.login or None, password=conn.password or None,
                                    token=extra.get("token") or None)
        except CredentialsError as exc:
            raise ValueError(f"{source}: {exc} (login + password, or extra.token)") from None
        if given and in_uri:
            raise ValueError(f"{source}: credentials both in extra.tracking_uri and in login/password/extra.token: keep one")
        credentials = given or in_uri
        if credentials is not None:
            _mask(credentials)
        return _Target(uri, credentials, source, from_environ=False)

    @property
    def tracking_uri(self) -> str:
        """The server's URI, never with credentials in it (safe to log, to export, to put in a pod spec)."""
        return self._target.uri

    @property
    def ui_url(self) -> str | None:
        """The MLflow web UI's base URL for links people follow: the connection's ``extra.ui_url``, else the
        tracking URI when it is http(s) (:func:`include.links.ui_base`: credentials and query dropped); None
        when neither names a web UI (a local SQLite store), or ``extra.ui_url`` is not an http(s) URL."""
        from include.links import ui_base

        try:
            configured = self.get_connection(self.mlflow_conn_id).extra_dejson.get("ui_url")
        except AirflowNotFoundException:
            configured = None
        if configured:
            base = ui_base(str(configured))
            if base is None:
                log.warning("extra.ui_url of connection %r is not an http(s) URL: %r; no MLflow links",
                            self.mlflow_conn_id, configured)
            return base
        return ui_base(self.tracking_uri)

    @property
    def credentials(self) -> Credentials | None:
        """What authenticates to the server: the connection's, else MLflow's own variables; None if nothing does."""
        return self._target.credentials

    @property
    def source(self) -> str:
        """Where the URI and credentials come from (the connection, or the environment), for messages."""
        return self._target.source

    @cached_property
    def client(self):
        """An ``MlflowClient`` bound to this connection (mlflow's global URI is set to match).

        The connection's credentials authenticate every MLflow request of this process to that server
        (client, fluent API, proxied artifacts); ``os.environ`` gets no secret.
        """
        from include import tracking

        target = self._target
        return tracking.configure(target.uri, credentials=None if target.from_environ else target.credentials)

    def subprocess_environ(self) -> dict[str, str]:
        """The environment for a child process that talks to this server: the worker's, plus the URI and credentials.

        The credentials go into the child's environment only (MLflow's variables); the worker's own
        ``os.environ`` is not changed.
        """
        from include import tracking_auth

        env = tracking_auth.subprocess_environ(os.environ)
        env["MLFLOW_TRACKING_URI"] = self.tracking_uri
        if self.credentials is not None:
            for name in (tracking_auth.USERNAME_ENV, tracking_auth.PASSWORD_ENV, tracking_auth.TOKEN_ENV):
                env.pop(name, None)
            env.update(self.credentials.environ())
        return env


def _mask(credentials: Credentials) -> None:
    """Keep the secrets out of task logs (Airflow masks a connection's password, not a URI's userinfo)."""
    from airflow.sdk.log import mask_secret

    for secret in credentials.secrets():
        mask_secret(secret)
