"""Fixtures for tests of plugins/: a real MLflow tracking server with basic auth on loopback."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

STARTUP_TIMEOUT_S = 180  # two SQLite migrations; a minute on 2 busy cores


@dataclass(frozen=True)
class AuthServer:
    """``mlflow server --app-name basic-auth`` on ``url``, with its admin user."""

    url: str
    username: str
    password: str = field(repr=False)
    port: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(home / "auth.ini"), MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--artifacts-destination", str(home / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up after {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield AuthServer(url=url, username="admin", password=password, port=port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
