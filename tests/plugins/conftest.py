"""Fixtures for tests of plugins/: a real MLflow tracking server with basic auth on loopback."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import free_port, serving

STARTUP_TIMEOUT_S = 180  # two SQLite migrations; a minute on 2 busy cores


@dataclass(frozen=True)
class AuthServer:
    """``mlflow server --app-name basic-auth`` on ``url``, with its admin user."""

    url: str
    username: str
    password: str = field(repr=False)
    port: int


@pytest.fixture(scope="session")
def mlflow_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A real MLflow server that refuses unauthenticated requests, serving artifacts itself (``mlflow-artifacts:``).

    The admin password holds characters that must be percent-escaped in a URI's userinfo.
    """
    try:
        import flask_wtf  # noqa: F401  (the basic-auth app's CSRF protection)
    except ImportError:
        pytest.fail("the MLflow basic-auth app needs Flask-WTF (mlflow[auth]): add it to requirements-dev.in")
    home = tmp_path_factory.mktemp("mlflow-auth")
    password = f"p@ss:w/rd#{secrets.token_urlsafe(12)}"
    (home / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{home / 'auth.db'}\n"
        f"admin_username = admin\nadmin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 600\n"  # PBKDF2 once, not on every request
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(home / "auth.ini"), MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    url = f"http://127.0.0.1:{port}"
    with serving(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--artifacts-destination", str(home / "artifacts")],
        env=env, log=home / "server.log", ready_url=f"{url}/health", name="mlflow server", timeout_s=STARTUP_TIMEOUT_S,
    ):
        yield AuthServer(url=url, username="admin", password=password, port=port)
