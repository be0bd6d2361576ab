"""MlflowHook: where the URI and credentials come from, and that they reach MLflow without ``os.environ``.

The authenticated tests run against a real ``mlflow server --app-name basic-auth`` on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote
from uuid import uuid4

import httpx
import mlflow
import pytest
from airflow.sdk.log import redact
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from include import tracking_auth
from include.tracking_auth import Credentials
from modelops.mlflow_hook import MlflowHook

CONN_ID = "mlflow_hook_test"


@pytest.fixture(autouse=True)
def _clean_mlflow_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MLflow credentials in the environment to start with; mlflow's global URIs and the registered credentials restored."""
    for name in ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])  # restored after mlflow rewrites it
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    registered = dict(tracking_auth._by_origin)
    yield
    tracking_auth._by_origin.clear()
    tracking_auth._by_origin.update(registered)
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def _connect(monkeypatch: pytest.MonkeyPatch, **conn: object) -> MlflowHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "http", **conn}))
    return MlflowHook(CONN_ID)


def _assert_no_secret_in_environ(*secrets: str) -> None:
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ
    # (AIRFLOW_CONN_* is where these tests define the connection)
    leaked = sorted(k for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_") and any(s in v for s in secrets))
    assert not leaked, f"secret found in os.environ: {leaked}"


# --- where the URI and credentials come from (no server needed) ------------------------------


def test_host_and_login_make_the_uri_and_basic_credentials(monkeypatch):
    hook = _connect(monkeypatch, host="mlflow.internal", port=5000, schema="https", login="airflow", password="pw-1")
    assert hook.tracking_uri == "https://mlflow.internal:5000"
    assert hook.credentials == Credentials(username="airflow", password="pw-1")
    assert "pw-1" not in repr(hook.credentials)


def test_userinfo_in_extra_tracking_uri_is_taken_out_of_the_uri(monkeypatch):
    hook = _connect(monkeypatch, extra={"tracking_uri": "https://bot:s%3Acret%40x@mlflow.example.com/prefix"})
    assert hook.tracking_uri == "https://mlflow.example.com/prefix"
    assert hook.credentials == Credentials(username="bot", password="s:cret@x")
    assert redact("token s:cret@x") == "token ***"  # masked in task logs, like a connection password


def test_extra_token_is_a_bearer_token(monkeypatch):
    hook = _connect(monkeypatch, host="mlflow.internal", extra={"token": "tok-123"})
    assert hook.credentials == Credentials(token="tok-123")
    assert hook.credentials.header() == "Bearer tok-123"


def test_no_credentials_means_none(monkeypatch):
    assert _connect(monkeypatch, host="mlflow.internal").credentials is None


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        ({"host": "mlflow.internal", "login": "airflow"}, "connection 'mlflow_hook_test': the password is missing"),
        ({"host": "mlflow.internal", "password": "pw"}, "connection 'mlflow_hook_test': the username is missing"),
        ({"host": "h", "login": "a", "password": "p", "extra": {"token": "t"}}, "a token or a username and password, not both"),
        ({"extra": {"tracking_uri": "https://bot@mlflow.internal"}}, "user name but no password"),
        ({"login": "a", "password": "p", "extra": {"tracking_uri": "https://b:q@mlflow.internal"}},
         "credentials both in extra.tracking_uri and in login/password/extra.token"),
        ({"login": "a", "password": "p"}, "connection 'mlflow_hook_test': needs a host or extra.tracking_uri"),
    ],
)
def test_bad_connections_name_the_connection(monkeypatch, conn, message):
    with pytest.raises(ValueError, match="connection 'mlflow_hook_test'") as err:
        _ = _connect(monkeypatch, **conn).tracking_uri
    assert message in str(err.value)


def test_without_a_connection_the_environment_decides(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ci:env-pw@mlflow.example.com")
    hook = MlflowHook("mlflow_no_such_connection")
    assert hook.tracking_uri == "https://mlflow.example.com"
    assert hook.credentials == Credentials(username="ci", password="env-pw")
    assert "no connection 'mlflow_no_such_connection'" in hook.source

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "env-token")
    assert MlflowHook("mlflow_no_such_connection").credentials == Credentials(token="env-token")


def test_subprocess_environ_holds_the_credentials_and_the_worker_does_not(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", tracking_auth.AUTH_PROVIDER_NAME)  # as after hook.client
    hook = _connect(monkeypatch, host="mlflow.internal", login="airflow", password="pw-2")
    env = hook.subprocess_environ()
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.internal"
    assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == ("airflow", "pw-2")
    assert "MLFLOW_TRACKING_AUTH" not in env  # the child has no such provider registered
    _assert_no_secret_in_environ("pw-2")


# --- against a real authenticated MLflow server ----------------------------------------------


def _exercise(client: MlflowClient) -> str:
    """Tracking, registry and a proxied artifact through ``client`` and the fluent API; returns the run id."""
    experiment_id = client.create_experiment(f"hook-{uuid4().hex[:8]}")
    run = client.create_run(experiment_id, tags={"who": "hook-test"})
    client.log_metric(run.info.run_id, "auc", 0.9)
    client.log_text(run.info.run_id, "hello", "notes/hello.txt")  # mlflow-artifacts: through the server
    with mlflow.start_run(run_id=run.info.run_id):  # the fluent API, as include/ uses it
        mlflow.log_param("fluent", "yes")
    client.create_registered_model(f"hook_model_{uuid4().hex[:8]}")
    return run.info.run_id


@pytest.mark.mlflow_server
def test_client_authenticates_with_the_connection_login_and_leaves_no_secret_in_environ(monkeypatch, mlflow_auth_server):
    server = mlflow_auth_server
    hook = _connect(monkeypatch, host="127.0.0.1", port=server.port, login=server.username, password=server.password)

    run_id = _exercise(hook.client)

    # Any client of this process reaches the server (the fluent API, another MlflowClient, artifact downloads).
    run = MlflowClient(server.url).get_run(run_id)
    assert run.data.metrics["auc"] == 0.9
    assert run.data.params["fluent"] == "yes"
    assert mlflow.artifacts.load_text(f"{run.info.artifact_uri}/notes/hello.txt") == "hello"
    _assert_no_secret_in_environ(server.password)
    assert os.environ["MLFLOW_TRACKING_URI"] == server.url


@pytest.mark.mlflow_server
def test_userinfo_credentials_authenticate_and_the_uri_stays_clean(monkeypatch, mlflow_auth_server):
    server = mlflow_auth_server
    uri = f"http://{server.username}:{quote(server.password, safe='')}@127.0.0.1:{server.port}"
    hook = _connect(monkeypatch, extra={"tracking_uri": uri})

    _exercise(hook.client)

    assert hook.tracking_uri == server.url
    assert mlflow.get_tracking_uri() == server.url
    _assert_no_secret_in_environ(server.password, quote(server.password, safe=""))


@pytest.mark.mlflow_server
def test_the_server_refuses_a_wrong_password(monkeypatch, mlflow_auth_server):
    """The server really checks: without the right credentials nothing gets through."""
    server = mlflow_auth_server
    hook = _connect(monkeypatch, host="127.0.0.1", port=server.port, login=server.username, password="wrong-password")
    with pytest.raises(MlflowException, match="401|[Uu]nauthori[sz]ed|not authenticated"):
        hook.client.create_experiment(f"refused-{uuid4().hex[:8]}")
    tracking_auth.forget(server.url)
    with pytest.raises(MlflowException, match="401|[Uu]nauthori[sz]ed|not authenticated"):
        MlflowClient(server.url).create_experiment(f"refused-{uuid4().hex[:8]}")


def _as_admin(server, method: str, path: str, body: dict) -> dict:
    """A REST call to the server with the admin's basic auth (not through MLflow's client or the hook)."""
    answer = httpx.request(method, f"{server.url}{path}", json=body, auth=(server.username, server.password), timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.mlflow_server
def test_the_server_acts_for_the_connections_user_and_enforces_that_users_permissions(monkeypatch, mlflow_auth_server):
    """Not just any credentials: the server attributes the hook's requests to the connection's own user.

    A second, non-admin user (``default_permission = READ``) may read the admin's experiment but not
    write to it, and manages the experiment it created itself; the admin could do both, and an
    anonymous request neither (:func:`test_the_server_refuses_a_wrong_password`).
    """
    server = mlflow_auth_server
    username, password = f"hook_user_{uuid4().hex[:8]}", f"u$er:pw/{uuid4().hex[:8]}"
    _as_admin(server, "POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})
    admins = _as_admin(server, "POST", "/api/2.0/mlflow/experiments/create", {"name": f"admins-{uuid4().hex[:8]}"})
    hook = _connect(monkeypatch, host="127.0.0.1", port=server.port, login=username, password=password)

    assert hook.client.get_experiment(admins["experiment_id"]).experiment_id == admins["experiment_id"]  # READ
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403|[Pp]ermission denied"):
        hook.client.create_run(admins["experiment_id"])
    own = hook.client.create_experiment(f"users-{uuid4().hex[:8]}")
    run = hook.client.create_run(own)  # the creator manages its own experiment
    assert hook.client.get_run(run.info.run_id).info.experiment_id == own
    _assert_no_secret_in_environ(password)


@pytest.mark.mlflow_server
def test_a_child_process_authenticates_with_subprocess_environ(monkeypatch, mlflow_auth_server):
    server = mlflow_auth_server
    hook = _connect(monkeypatch, host="127.0.0.1", port=server.port, login=server.username, password=server.password)
    experiment_id = hook.client.create_experiment(f"child-{uuid4().hex[:8]}")

    child = subprocess.run(
        [sys.executable, "-c", "import sys; from include import tracking; "
         "print(tracking.configure().create_run(sys.argv[1]).info.run_id)", experiment_id],
        env=hook.subprocess_environ(), capture_output=True, text=True, timeout=120,
    )

    assert child.returncode == 0, child.stderr
    run_id = child.stdout.strip().splitlines()[-1]
    assert hook.client.get_run(run_id).info.experiment_id == experiment_id
    _assert_no_secret_in_environ(server.password)
