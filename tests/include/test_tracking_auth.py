"""include.tracking_auth: credentials out of URIs, and sent by MLflow's HTTP client to their own server only."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

from include import tracking, tracking_auth
from include.tracking_auth import Credentials, CredentialsError


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])
    previous, registered = (mlflow.get_tracking_uri(), mlflow.get_registry_uri()), dict(tracking_auth._by_origin)
    yield
    tracking_auth._by_origin.clear()
    tracking_auth._by_origin.update(registered)
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.mark.parametrize(
    ("uri", "clean", "credentials"),
    [
        ("https://u:p@mlflow.example.com:8443/x", "https://mlflow.example.com:8443/x", Credentials("u", "p")),
        ("http://bot%40corp:p%3A%2F%40w@host", "http://host", Credentials("bot@corp", "p:/@w")),
        ("https://mlflow.example.com", "https://mlflow.example.com", None),
        ("postgresql://u:p@db/mlflow", "postgresql://u:p@db/mlflow", None),  # cannot be sent another way
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db", None),
    ],
)
def test_split_uri(uri, clean, credentials):
    assert tracking_auth.split_uri(uri) == (clean, credentials)


@pytest.mark.parametrize("uri", ["https://u@host", "https://u:@host"])
def test_split_uri_refuses_a_user_without_password(uri):
    with pytest.raises(CredentialsError, match="tracking URI https://host: the userinfo has a user name but no password"):
        tracking_auth.split_uri(uri)


def test_redact_and_has_password():
    assert tracking_auth.redact("postgresql://u:secret@db:5432/m") == "postgresql://u:***@db:5432/m"
    assert tracking_auth.redact("https://host/x") == "https://host/x"
    assert tracking_auth.has_password("postgresql://u:secret@db/m")
    assert not tracking_auth.has_password("https://host")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"username": "u"}, "the password is missing"),
        ({"password": "p"}, "the username is missing"),
        ({}, "the username and password is missing"),
        ({"username": "u", "password": "p", "token": "t"}, "either a token or a username and password, not both"),
    ],
)
def test_incomplete_credentials_are_refused(kwargs, message):
    with pytest.raises(CredentialsError, match=message):
        Credentials(**kwargs)


def test_credentials_header_environ_and_repr():
    basic, token = Credentials("u", "p"), Credentials(token="t")
    assert basic.header() == "Basic dTpw"
    assert token.header() == "Bearer t"
    assert basic.environ() == {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}
    assert token.environ() == {"MLFLOW_TRACKING_TOKEN": "t"}
    assert "hunter2" not in repr(Credentials("u", "hunter2")) + repr(Credentials(token="hunter2"))


def test_from_environ_follows_mlflow_precedence():
    assert tracking_auth.from_environ({}) is None
    assert tracking_auth.from_environ({"MLFLOW_TRACKING_TOKEN": "t"}) == Credentials(token="t")
    both = {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p", "MLFLOW_TRACKING_TOKEN": "t"}
    assert tracking_auth.from_environ(both) == Credentials("u", "p")


def test_register_refuses_other_schemes_and_another_auth_provider(monkeypatch):
    with pytest.raises(CredentialsError, match=r"postgresql://u:\*\*\*@db/m: credentials can be sent to http\(s\) servers only"):
        tracking_auth.register("postgresql://u:p@db/m", Credentials("u", "p"))
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "kubernetes")
    with pytest.raises(CredentialsError, match="MLFLOW_TRACKING_AUTH=kubernetes selects another MLflow auth provider"):
        tracking_auth.register("https://host", Credentials("u", "p"))


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.headers.get("Authorization"))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorders() -> Iterator[list[tuple[str, list]]]:
    """Two HTTP servers on loopback that record the Authorization header of each request."""
    out, servers = [], []
    for _ in range(2):
        seen: list[str | None] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), type("Recorder", (_Recorder,), {"seen": seen}))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        out.append((f"http://127.0.0.1:{server.server_address[1]}", seen))
    yield out
    for server in servers:
        server.shutdown()
        server.server_close()


def test_configure_sends_credentials_to_their_server_only_and_keeps_them_out_of_environ(recorders):
    (ours, seen_ours), (other, seen_other) = recorders
    host = ours.removeprefix("http://")

    client = tracking.configure(f"http://bot:s3cret%21@{host}")

    assert client.tracking_uri == ours
    assert mlflow.get_tracking_uri() == ours
    http_request(get_default_host_creds(ours), "/api/2.0/mlflow/experiments/search", "GET")  # as MLflow's stores call it
    http_request(get_default_host_creds(other), "/api/2.0/mlflow/experiments/search", "GET")
    assert seen_ours == [Credentials("bot", "s3cret!").header()]
    assert seen_other == [None]
    assert os.environ["MLFLOW_TRACKING_AUTH"] == "modelops"  # the provider's name, not a secret
    assert not any("s3cret" in v for v in os.environ.values())
