"""Credentials for an MLflow tracking server, handed to MLflow's HTTP client without ``os.environ``.

MLflow itself reads a server's credentials from ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` or ``MLFLOW_TRACKING_TOKEN`` on every request. A long-lived worker
should not keep a password there: every subprocess inherits it, and it outlives the task that
needed it. :func:`register` instead keeps credentials in this process's memory, keyed by the
server's origin (scheme, host, port), and a request-auth provider (MLflow's plugin interface, named
by ``MLFLOW_TRACKING_AUTH=modelops``, which holds no secret) adds the ``Authorization`` header to
requests for that origin only: the tracking and registry APIs and proxied artifacts
(``mlflow-artifacts:``) alike.

A tracking URI may carry credentials as userinfo (``https://user:pass@host``): :func:`split_uri`
takes them out, so that the URI can be logged, set as ``MLFLOW_TRACKING_URI`` or put in a pod spec.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

AUTH_PROVIDER_NAME = "modelops"
AUTH_ENV = "MLFLOW_TRACKING_AUTH"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
_HTTP = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CredentialsError(ValueError):
    """Credentials for an MLflow server are incomplete, contradictory or cannot be used."""


@dataclass(frozen=True)
class Credentials:
    """Basic auth (``username`` + ``password``) or a bearer ``token`` for an MLflow server.

    Raises :class:`CredentialsError` when neither or both are complete. The secrets stay out of ``repr``.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        basic = bool(self.username) or bool(self.password)
        if self.token and basic:
            raise CredentialsError("give either a token or a username and password, not both")
        if not self.token and not (self.username and self.password):
            missing = "password" if self.username else "username" if self.password else "username and password"
            raise CredentialsError(f"the {missing} is missing")

    def header(self) -> str:
        """The ``Authorization`` header value: ``Basic <base64>`` or ``Bearer <token>``."""
        if self.token:
            return f"Bearer {self.token}"
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")

    def environ(self) -> dict[str, str]:
        """MLflow's own variables for these credentials, for a subprocess's environment only."""
        if self.token:
            return {TOKEN_ENV: self.token}
        return {USERNAME_ENV: self.username or "", PASSWORD_ENV: self.password or ""}

    def secrets(self) -> list[str]:
        """The values to mask in logs."""
        return [s for s in (self.password, self.token) if s]


def from_environ(environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """Credentials set with MLflow's variables (basic auth wins, as in MLflow), or None."""
    username, password, token = (environ.get(k) for k in (USERNAME_ENV, PASSWORD_ENV, TOKEN_ENV))
    if username and password:
        return Credentials(username=username, password=password)
    if token:
        return Credentials(token=token)
    return None


def redact(uri: str) -> str:
    """``uri`` with the password of its userinfo (if any) replaced by ``***``, for messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    userinfo, _, hostport = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hostport}"))


def split_uri(uri: str) -> tuple[str, Credentials | None]:
    """An http(s) tracking URI without its userinfo, and the credentials the userinfo held.

    Percent-escapes in the userinfo are decoded (``p%40ss`` is ``p@ss``). Other schemes (``sqlite``,
    ``postgresql``, ``databricks``…) are returned unchanged with None: their credentials cannot be
    sent another way (see :func:`has_password`). Raises :class:`CredentialsError` for a user name
    without a password.
    """
    parts = urlsplit(uri)
    if parts.scheme.lower() not in _HTTP or "@" not in parts.netloc:
        return uri, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    username, has_colon, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=hostport))
    if not has_colon or not password:
        raise CredentialsError(f"tracking URI {clean}: the userinfo has a user name but no password")
    return clean, Credentials(username=unquote(username), password=unquote(password))


def has_password(uri: str) -> bool:
    """Whether ``uri`` still carries a password in its userinfo (e.g. a database URI)."""
    return urlsplit(uri).password is not None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


_by_origin: dict[tuple[str, str, int], Credentials] = {}


def registered(uri: str) -> Credentials | None:
    """The credentials :func:`register` holds for ``uri``'s origin, or None."""
    return _by_origin.get(_origin(uri))


def register(uri: str, credentials: Credentials) -> None:
    """Authenticate this process's MLflow requests to ``uri``'s origin with ``credentials``.

    Nothing secret is written to ``os.environ``: only ``MLFLOW_TRACKING_AUTH=modelops``, the name
    of the provider that looks the credentials up. Registering the same origin again replaces its
    credentials. Raises :class:`CredentialsError` for a URI that is not http(s), or when
    ``MLFLOW_TRACKING_AUTH`` already names another provider (the two would fight over the header).
    """
    if urlsplit(uri).scheme.lower() not in _HTTP:
        raise CredentialsError(f"tracking URI {redact(uri)}: credentials can be sent to http(s) servers only")
    current = os.environ.get(AUTH_ENV)
    if current and current != AUTH_PROVIDER_NAME:
        raise CredentialsError(
            f"{AUTH_ENV}={current} selects another MLflow auth provider: unset it to authenticate with "
            "the connection's credentials"
        )
    _install_provider()
    _by_origin[_origin(uri)] = credentials
    os.environ[AUTH_ENV] = AUTH_PROVIDER_NAME


def forget(uri: str) -> None:
    """Drop the credentials registered for ``uri``'s origin (requests to it go out unauthenticated)."""
    _by_origin.pop(_origin(uri), None)


def subprocess_environ(base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``base`` without this module's provider name, which a child process has not registered."""
    return {k: v for k, v in base.items() if not (k == AUTH_ENV and v == AUTH_PROVIDER_NAME)}


def _install_provider() -> None:
    """Add the provider to MLflow's request-auth registry once (what an installed plugin's entry point does)."""
    import requests.auth
    from mlflow.tracking.request_auth import registry
    from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider

    providers = getattr(registry, "_request_auth_provider_registry", None)
    if providers is None:
        raise CredentialsError(
            "this MLflow version has no request-auth provider registry: set MLFLOW_TRACKING_USERNAME / "
            "MLFLOW_TRACKING_PASSWORD for the worker instead"
        )
    if any(p.get_name() == AUTH_PROVIDER_NAME for p in providers):
        return

    class _RegisteredCredentials(requests.auth.AuthBase):
        def __call__(self, request):
            credentials = registered(request.url)
            if credentials is not None:
                request.headers["Authorization"] = credentials.header()
            return request

    class ModelopsAuthProvider(RequestAuthProvider):
        def get_name(self) -> str:
            return AUTH_PROVIDER_NAME

        def get_auth(self) -> requests.auth.AuthBase:
            return _RegisteredCredentials()

    providers.register(ModelopsAuthProvider)
