"""Grafana's and Alertmanager's own credentials, against a real ``airflow api-server`` on loopback.

Bodies are the bytes the senders put on the wire, written out from their formats: Alertmanager's
webhook v4 (Go ``json.Encoder``: struct field order, map keys sorted, ``<``, ``>`` and ``&`` escaped
as ``\\u003c``…, a trailing newline) and Grafana's unified-alerting webhook v1 (``json.Marshal``: the
same without the newline, plus Grafana's fields). Headers are theirs: Grafana's HMAC signature (body
alone, or ``"<unix seconds>:" + body`` with a timestamp header; both header names), Alertmanager's
``Authorization: Bearer <credentials>`` from ``http_config.authorization``.

Two servers, one after the other: ``body`` (Grafana signs the body alone: no timestamp header set)
and ``timestamp`` (``AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_TIMESTAMP_HEADER`` set, and a third,
custom signature header name). Both accept the bearer token and the project's own signature.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from include.inbound.signatures import grafana_sign, signed_headers
from tests.plugins.inbound.webhook_server import (
    DAG_ID,
    MODEL,
    PATH,
    SECRET,
    Server,
    connection,
    created_runs,
    fingerprint,
    log_lines_since,
    running_api_server,
    runs,
)
from tests.servers import serving_app

TOKEN = "am-drift-bearer-2b9e61d4c0"
TS_HEADER = "X-Grafana-Alerting-Timestamp"
CUSTOM_HEADER = "X-Acme-Grafana-Signature"
GRAFANA_HEADERS = ("X-Grafana-Alerting-Signature", "X-Grafana-Alert-Signature")

MODES = {
    "body": {},
    "timestamp": {"AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_TIMESTAMP_HEADER": TS_HEADER,
                  "AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_SIGNATURE_HEADERS": ",".join((*GRAFANA_HEADERS,
                                                                                          CUSTOM_HEADER))},
}
BODY_ONLY = pytest.mark.parametrize("server", ["body"], indirect=True)
TIMESTAMPED = pytest.mark.parametrize("server", ["timestamp"], indirect=True)
EITHER = pytest.mark.parametrize("server", ["body", "timestamp"], indirect=True)


@pytest.fixture(scope="module")
def server(request, airflow_db, tmp_path_factory):
    """A real api-server in the requested mode, with the bearer token in ``AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK_BEARER``."""
    env = {"AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK_BEARER": connection(TOKEN), **MODES[request.param]}
    with running_api_server(tmp_path_factory, env, name=f"api-server-{request.param}") as running:
        running.mode = request.param
        yield running


# --- the bytes on the wire ------------------------------------------------------------------------------


def alertmanager_body(fp: str) -> bytes:
    """An Alertmanager v4 notification of one firing drift alert, as ``notify/webhook`` encodes it."""
    return (
        b'{"receiver":"modelops-retrain","status":"firing","alerts":[{"status":"firing",'
        b'"labels":{"alertname":"FeatureDrift","feature":"annual_income","model":"credit_approval",'
        b'"severity":"critical"},'
        b'"annotations":{"description":"PSI 0.31 \\u003e 0.2 \\u0026 rising","summary":"annual_income drifted"},'
        b'"startsAt":"2026-11-22T10:00:00.123Z","endsAt":"0001-01-01T00:00:00Z",'
        b'"generatorURL":"http://prometheus:9090/graph?g0.expr=feature_psi%7Bmodel%3D%22credit_approval%22%7D'
        b'+%3E+0.2\\u0026g0.tab=1","fingerprint":"FINGERPRINT"}],'
        b'"groupLabels":{"model":"credit_approval"},'
        b'"commonLabels":{"alertname":"FeatureDrift","feature":"annual_income","model":"credit_approval",'
        b'"severity":"critical"},'
        b'"commonAnnotations":{"description":"PSI 0.31 \\u003e 0.2 \\u0026 rising","summary":"annual_income drifted"},'
        b'"externalURL":"http://alertmanager:9093","version":"4",'
        b'"groupKey":"{}/{alertname=\\"FeatureDrift\\",model=~\\".+\\"}:{model=\\"credit_approval\\"}",'
        b'"truncatedAlerts":0}\n'
    ).replace(b"FINGERPRINT", fp.encode())


def grafana_body(fp: str) -> bytes:
    """A Grafana (unified alerting) webhook notification of one firing drift alert, as its notifier marshals it."""
    return (
        b'{"receiver":"modelops-retrain","status":"firing","alerts":[{"status":"firing",'
        b'"labels":{"alertname":"FeatureDrift","grafana_folder":"ML","model":"credit_approval"},'
        b'"annotations":{"summary":"annual_income drifted"},'
        b'"startsAt":"2026-11-22T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",'
        b'"generatorURL":"http://grafana:3000/alerting/grafana/fe1xq7/view?orgId=1","fingerprint":"FINGERPRINT",'
        b'"silenceURL":"http://grafana:3000/alerting/silence/new?alertmanager=grafana\\u0026matcher=__alert_rule_uid__'
        b'%3Dfe1xq7\\u0026matcher=model%3Dcredit_approval\\u0026orgId=1",'
        b'"dashboardURL":"","panelURL":"","ruleUID":"fe1xq7","values":{"A":0.31,"C":1},'
        b'"valueString":"[ var=\'A\' labels={model=credit_approval} value=0.31 ], '
        b'[ var=\'C\' labels={model=credit_approval} value=1 ]","orgId":1}],'
        b'"groupLabels":{"alertname":"FeatureDrift","grafana_folder":"ML"},'
        b'"commonLabels":{"alertname":"FeatureDrift","grafana_folder":"ML","model":"credit_approval"},'
        b'"commonAnnotations":{"summary":"annual_income drifted"},'
        b'"externalURL":"http://grafana:3000/","version":"1",'
        b'"groupKey":"{}/{__grafana_autogenerated__=\\"true\\"}/{__grafana_receiver__=\\"modelops-retrain\\"}:'
        b'{alertname=\\"FeatureDrift\\", grafana_folder=\\"ML\\"}","truncatedAlerts":0,"orgId":1,'
        b'"title":"[FIRING:1] FeatureDrift ML (credit_approval)","state":"alerting",'
        b'"message":"**Firing**\\n\\nValue: A=0.31, C=1\\nLabels:\\n - alertname = FeatureDrift\\n'
        b' - model = credit_approval\\n"}'
    ).replace(b"FINGERPRINT", fp.encode())


def grafana_headers(body: bytes, *, header: str = GRAFANA_HEADERS[0], timestamp: int | None = None,
                    secret: str = SECRET) -> dict[str, str]:
    """What a Grafana contact point with an HMAC secret sends: the timestamp header only when it has one."""
    sent = {"Content-Type": "application/json", "User-Agent": "Grafana/12.1.0"}
    if timestamp is None:
        return {**sent, header: grafana_sign(secret, body)}
    return {**sent, TS_HEADER: str(timestamp), header: grafana_sign(secret, body, timestamp)}


def grafana_as_configured(server: Server, body: bytes, header: str = GRAFANA_HEADERS[0]) -> dict[str, str]:
    """Grafana's headers for a contact point set up as the server expects (a timestamp header in ``timestamp`` mode)."""
    return grafana_headers(body, header=header, timestamp=int(time.time()) if server.mode == "timestamp" else None)


def alertmanager_headers(credentials: str = TOKEN, kind: str = "Bearer") -> dict[str, str]:
    """What Alertmanager sends with ``http_config: {authorization: {type: <kind>, credentials: ...}}``."""
    return {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.28.1",
            "Authorization": f"{kind} {credentials}"}


def send(server: Server, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}{PATH}", content=body, headers=headers, timeout=30)


def started_one_run(server: Server, body: bytes, headers: dict[str, str], source: str) -> dict:
    """Send; assert 200 and exactly one new run of the training DAG, started for this alert; return the answer's run."""
    before = runs()
    response = send(server, body, headers)
    assert response.status_code == 200, response.text
    assert response.json()["format"] == source
    (run,) = response.json()["runs"]
    assert run["created"] is True and run["dag_id"] == DAG_ID
    assert list(created_runs(before)) == [run["run_id"]]
    assert runs()[run["run_id"]]["conf"]["alert"]["source"] == source
    return run


def refused(server: Server, body: bytes, headers: dict[str, str], status: int = 401) -> httpx.Response:
    """Send; assert ``status`` and that no run started."""
    before = runs()
    response = send(server, body, headers)
    assert response.status_code == status, response.text
    assert runs() == before
    return response


def ledger_auth(run_id: str) -> str:
    from include.governance.ledger import default_ledger

    (record,) = default_ledger().records(run_id=run_id)
    assert record.action == "webhook_accepted" and record.model == MODEL
    return record.details["auth"]


def last_refusal() -> dict:
    from include.governance.ledger import default_ledger

    return default_ledger().records(actions=["webhook_refused"])[-1].as_dict()


# --- Grafana's HMAC signature --------------------------------------------------------------------------


@EITHER
@pytest.mark.parametrize("header", GRAFANA_HEADERS)
def test_a_grafana_signed_alert_starts_one_run_under_either_header_name(server, header):
    fp = fingerprint()
    body = grafana_body(fp)
    headers = grafana_as_configured(server, body, header)
    assert (TS_HEADER in headers) == (server.mode == "timestamp")
    run = started_one_run(server, body, headers, "grafana")
    assert run["alerts"] == [f"{fp}@2026-11-22T10:00:00+00:00"]
    assert ledger_auth(run["run_id"]) == "grafana_hmac"


@TIMESTAMPED
def test_a_custom_signature_header_name_from_the_settings_works(server):
    body = grafana_body(fingerprint())
    run = started_one_run(server, body, grafana_as_configured(server, body, CUSTOM_HEADER), "grafana")
    assert ledger_auth(run["run_id"]) == "grafana_hmac"


@TIMESTAMPED
@pytest.mark.parametrize("skew", [-600, 600])
def test_a_stale_or_future_grafana_timestamp_is_401_naming_the_scheme(server, skew):
    body = grafana_body(fingerprint())
    response = refused(server, body, grafana_headers(body, timestamp=int(time.time()) + skew))
    detail = response.json()["detail"]
    assert detail.startswith(f"grafana_hmac: {TS_HEADER} is ") and "tolerance 300 s" in detail
    assert last_refusal()["details"]["auth"] == "grafana_hmac"


@TIMESTAMPED
def test_with_a_timestamp_header_configured_a_body_only_signature_is_401(server):
    body = grafana_body(fingerprint())
    response = refused(server, body, grafana_headers(body))
    assert response.json()["detail"] == f"grafana_hmac: missing header {TS_HEADER}"


@BODY_ONLY
def test_a_contact_point_with_a_timestamp_the_server_was_not_told_about_is_401_saying_so(server):
    body = grafana_body(fingerprint())
    response = refused(server, body, grafana_headers(body, timestamp=int(time.time())))
    assert response.json()["detail"].startswith("grafana_hmac: X-Grafana-Alerting-Signature does not match the body "
                                                "(no timestamp header is configured here")


@EITHER
def test_the_grafana_signature_covers_the_bytes_sent_a_reserialised_body_is_401(server):
    body = grafana_body(fingerprint())
    headers = grafana_as_configured(server, body)
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()  # "&" unescaped, same JSON
    assert json.loads(reserialised) == json.loads(body) and reserialised != body
    response = refused(server, reserialised, headers)
    assert response.json()["detail"].startswith("grafana_hmac: X-Grafana-Alerting-Signature does not match")
    started_one_run(server, body, headers, "grafana")  # the bytes it signed pass


@EITHER
def test_a_grafana_signature_made_with_another_secret_is_401(server):
    body = grafana_body(fingerprint())
    headers = grafana_as_configured(server, body)
    headers[GRAFANA_HEADERS[0]] = grafana_sign("not-the-secret", body, headers.get(TS_HEADER))
    response = refused(server, body, headers)
    assert response.json()["detail"].startswith("grafana_hmac: ")
    assert "HMAC-SHA256" in response.headers["WWW-Authenticate"] and "Bearer" in response.headers["WWW-Authenticate"]


@BODY_ONLY
def test_a_replayed_body_only_grafana_delivery_starts_nothing_new(server):
    """Without a timestamp nothing dates a Grafana request: a replay verifies, and the alert's identity stops it."""
    body = grafana_body(fingerprint())
    headers = grafana_headers(body)
    run = started_one_run(server, body, headers, "grafana")
    before = runs()
    again = send(server, body, headers)
    assert again.status_code == 200
    assert again.json()["runs"] == [{**run, "created": False}]
    assert runs() == before


# --- Alertmanager's bearer token -------------------------------------------------------------------------


@BODY_ONLY
def test_alertmanager_with_the_bearer_token_starts_one_run(server):
    fp = fingerprint()
    offset = server.log.stat().st_size
    run = started_one_run(server, alertmanager_body(fp), alertmanager_headers(), "alertmanager")
    assert run["alerts"] == [f"{fp}@2026-11-22T10:00:00.123000+00:00"]
    assert ledger_auth(run["run_id"]) == "bearer"
    (line,) = log_lines_since(server, offset, "drift webhook: accepted")
    assert "not drift; auth: bearer " in f"{line} "


@BODY_ONLY
@pytest.mark.parametrize(("credentials", "kind", "reason"), [
    ("not-the-token", "Bearer", "mismatch"),
    (TOKEN + "0", "Bearer", "mismatch"),
    (TOKEN, "Basic", "malformed"),  # basic_auth or authorization.type other than Bearer
], ids=["wrong-token", "longer-token", "basic"])
def test_alertmanager_with_a_wrong_token_is_401_naming_the_bearer_scheme(server, credentials, kind, reason):
    offset = server.log.stat().st_size
    response = refused(server, alertmanager_body(fingerprint()), alertmanager_headers(credentials, kind))
    assert response.json()["detail"].startswith("bearer: ")
    assert response.headers["WWW-Authenticate"].endswith('Bearer realm="modelops-drift-webhook"')
    refusal = last_refusal()
    assert refusal["details"] == {"path": PATH, "auth": "bearer", "status": 401}
    assert refusal["reason"].startswith(f"{reason}: bearer: ")
    (line,) = log_lines_since(server, offset, "drift webhook: rejected")
    assert f"401 {reason}: bearer: " in line
    assert credentials not in json.dumps(refusal) and credentials not in line


# --- the project's scheme, none, and the secrets ------------------------------------------------------------


@TIMESTAMPED
def test_the_projects_own_signature_still_starts_a_run(server):
    payload = {"model": MODEL, "alert_id": f"evidently-{fingerprint()}", "status": "firing", "drift_score": 0.41}
    body = json.dumps(payload).encode()
    run = started_one_run(server, body, {"Content-Type": "application/json", **signed_headers(SECRET, body)},
                          "project")
    assert ledger_auth(run["run_id"]) == "modelops_hmac"


@TIMESTAMPED
def test_no_credentials_at_all_is_401_listing_the_accepted_schemes(server):
    response = refused(server, alertmanager_body(fingerprint()), {"Content-Type": "application/json"})
    detail = response.json()["detail"]
    assert detail.startswith("missing header: the request carries no credentials; accepted: ")
    for says in ("modelops_hmac (headers X-Modelops-Timestamp and X-Modelops-Signature",
                 f"grafana_hmac (header X-Grafana-Alerting-Signature or X-Grafana-Alert-Signature or {CUSTOM_HEADER}: "
                 f"<hex> with {TS_HEADER}", "bearer (header Authorization: Bearer <token>)"):
        assert says in detail
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('HMAC-SHA256 headers="X-Modelops-Timestamp X-Modelops-Signature"')
    assert f'HMAC-SHA256 headers="{" ".join(GRAFANA_HEADERS)} {CUSTOM_HEADER} {TS_HEADER}"' in challenge
    assert last_refusal()["details"]["auth"] == "none"


@TIMESTAMPED
def test_a_good_grafana_signature_does_not_cover_a_wrong_bearer_token(server):
    body = grafana_body(fingerprint())
    headers = {**grafana_as_configured(server, body), "Authorization": "Bearer not-the-token"}
    assert refused(server, body, headers).json()["detail"].startswith("bearer: ")


@EITHER
def test_the_secret_and_the_token_are_never_logged(server):
    body = alertmanager_body(fingerprint())
    refused(server, body, {**alertmanager_headers(), "Authorization": TOKEN})  # the token where the scheme goes
    refused(server, body, alertmanager_headers(SECRET))
    log = server.log.read_text(errors="replace")
    assert "drift webhook: rejected" in log
    assert SECRET not in log and TOKEN not in log


# --- settings the operator gets wrong: 503 naming them (the app in this process) ------------------------------


@pytest.mark.parametrize(("env", "says"), [
    ({"AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK_BEARER": connection(SECRET)},
     "connection 'modelops_drift_webhook_bearer': its password (the bearer token) must differ from the password of "
     "connection 'modelops_drift_webhook' (the HMAC secret)"),
    ({"AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK_BEARER": connection("two words")},
     "its password (the bearer token) must be printable ASCII without spaces"),
    ({"AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_SIGNATURE_HEADERS": "X-Grafana-Alerting-Signature,Bad Header"},
     "AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_SIGNATURE_HEADERS must be HTTP header names, got 'Bad Header'"),
    ({"AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_TIMESTAMP_HEADER": "X-Modelops-Timestamp"},
     "AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_TIMESTAMP_HEADER: X-Modelops-Timestamp is already used by the "
     "project's scheme"),
    ({"AIRFLOW__MODELOPS__DRIFT_WEBHOOK_GRAFANA_SIGNATURE_HEADERS": "authorization"},
     "authorization is already used by the bearer scheme"),
], ids=["token-is-secret", "token-with-space", "bad-header-name", "timestamp-header-taken", "authorization-taken"])
def test_a_setting_that_cannot_work_is_503_naming_it_never_the_secret(airflow_db, monkeypatch, env, says):
    from modelops.app import create_app

    monkeypatch.setenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK", connection(SECRET))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    body = grafana_body(fingerprint())
    before = runs()
    with serving_app(create_app()) as url:
        response = httpx.post(f"{url}/api/v1/drift-alerts", content=body, headers=grafana_headers(body))
    assert response.status_code == 503
    assert says in response.json()["detail"]
    assert SECRET not in response.text and "two words" not in response.text
    assert runs() == before


def test_with_only_a_bearer_token_configured_hmac_requests_are_401_and_nothing_is_503(airflow_db, monkeypatch):
    """The app in this process: the bearer connection alone turns the webhook on, for the bearer scheme only."""
    from modelops.app import create_app

    monkeypatch.delenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK_BEARER", connection(TOKEN))
    body = grafana_body(fingerprint())
    before = runs()
    with serving_app(create_app()) as url:
        grafana = httpx.post(f"{url}/api/v1/drift-alerts", content=body, headers=grafana_headers(body))
        nothing = httpx.post(f"{url}/api/v1/drift-alerts", content=body)
    assert grafana.status_code == 401
    assert grafana.json()["detail"] == ("grafana_hmac: not accepted here: no HMAC secret is configured; "
                                        "accepted: bearer")
    assert nothing.status_code == 401 and nothing.headers["WWW-Authenticate"] == 'Bearer realm="modelops-drift-webhook"'
    assert runs() == before
    monkeypatch.delenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK_BEARER")
    with serving_app(create_app()) as url:
        off = httpx.post(f"{url}/api/v1/drift-alerts", content=body, headers=alertmanager_headers())
    assert off.status_code == 503
    assert "'modelops_drift_webhook'" in off.json()["detail"] and "'modelops_drift_webhook_bearer'" in off.json()["detail"]
