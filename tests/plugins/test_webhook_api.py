"""The drift webhook served by a real ``airflow api-server`` on loopback (one server for this module).

Drift alerts start one run per model; no-data, error and resolved alerts start nothing; a request
over the alert limit starts nothing; alert text arrives in notes, conf and log without control or
bidirectional formatting characters.

Runs are checked in the metadata database the server writes to. The OpenAPI fuzz (schemathesis)
runs twice: unsigned, as anyone on the network could send it, and signed, to reach payload validation.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from include.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers
from tests.servers import free_port, serving

SECRET = "drift-webhook-test-secret-7f3a9c"
PATH = "/modelops/api/v1/drift-alerts"
MODEL = "credit_approval"
DAG_ID = f"train_{MODEL}"
STARTUP_TIMEOUT_S = 180


@dataclass
class Server:
    url: str
    log: Path


@pytest.fixture(scope="module")
def api_server(airflow_db, tmp_path_factory) -> Iterator[Server]:
    """``airflow api-server`` with the project's plugin and the webhook secret in ``AIRFLOW_CONN_*``."""
    airflow = Path(sys.executable).parent / "airflow"
    env = {**os.environ,
           "AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK": json.dumps({"conn_type": "generic", "password": SECRET})}
    # The server creates runs from the serialized DAGs in the database, as in production.
    subprocess.run([str(airflow), "dags", "reserialize"], check=True, capture_output=True, env=env)
    port = free_port()
    log = tmp_path_factory.mktemp("api-server") / "api-server.log"
    url = f"http://127.0.0.1:{port}"
    with serving([str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                  "--apps", "core"], env=env, log=log, ready_url=f"{url}/modelops/openapi.json",
                 name="airflow api-server", timeout_s=STARTUP_TIMEOUT_S):
        yield Server(url, log)


def runs(dag_id: str = DAG_ID) -> dict[str, dict]:
    """Every run of ``dag_id`` in the metadata database, by run id."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return {r.run_id: {"conf": r.conf, "run_type": str(r.run_type), "triggered_by": r.triggered_by.value,
                           "state": str(r.state), "user": r.triggering_user_name, "note": r.note}
                for r in session.scalars(select(DagRun).where(DagRun.dag_id == dag_id))}


def post(server: Server, payload: dict | bytes, *, secret: str | None = SECRET, timestamp: int | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed = signed_headers(secret, body, timestamp=timestamp) if secret else {}
    return httpx.post(f"{server.url}{PATH}", content=body, timeout=30,
                      headers={"Content-Type": "application/json", **signed, **(headers or {})})


def am_alert(fingerprint: str, *, model: str = MODEL, status: str = "firing",
             starts_at: str = "2026-11-22T10:00:00Z", alertname: str = "FeatureDrift", **annotations: str) -> dict:
    return {"status": status, "labels": {"alertname": alertname, "model": model, "severity": "critical"},
            "annotations": {"summary": f"drift on {model}", **annotations}, "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint}


def alertmanager(*alerts: dict) -> dict:
    return {"version": "4", "groupKey": "{}:{alertname=\"FeatureDrift\"}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "modelops", "groupLabels": {"alertname": "FeatureDrift"}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


def grafana(*alerts: dict) -> dict:
    return {**alertmanager(*alerts), "version": "1", "orgId": 1, "title": "[FIRING:1] FeatureDrift",
            "state": "alerting", "message": "drift"}


# --- accepted alerts -------------------------------------------------------------------------------


def test_a_signed_alertmanager_alert_starts_exactly_one_retraining_run(api_server):
    before = runs()
    response = post(api_server, alertmanager(am_alert("am00000000000001")))
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    assert run["created"] is True and run["dag_id"] == DAG_ID and run["source"] == "alertmanager"

    after = runs()
    assert set(after) - set(before) == {run["run_id"]}
    created = after[run["run_id"]]
    assert created["run_type"] == "manual" and created["triggered_by"] == "rest_api"
    assert created["user"] == "drift-webhook" and created["state"] == "queued"
    assert created["conf"]["alert"]["identity"] == "am00000000000001@2026-11-22T10:00:00+00:00"
    assert created["conf"]["alert"]["labels"]["severity"] == "critical"


def test_a_redelivered_alert_returns_its_run_and_starts_nothing(api_server):
    payload = alertmanager(am_alert("am00000000000002"))
    first = post(api_server, payload)
    before = runs()
    again = post(api_server, payload)  # a new timestamp and signature, the same alert
    assert again.status_code == 200
    assert again.json()["runs"][0]["run_id"] == first.json()["runs"][0]["run_id"]
    assert again.json()["runs"][0]["created"] is False
    assert runs() == before


def test_a_signed_grafana_alert_starts_exactly_one_run_and_a_redelivery_none(api_server):
    payload = grafana(am_alert("6f0000000000000a", starts_at="2026-11-22T11:00:00+01:00"))
    before = runs()
    response = post(api_server, payload)
    assert response.status_code == 200, response.text
    assert response.json()["format"] == "grafana"
    (run,) = response.json()["runs"]
    assert set(runs()) - set(before) == {run["run_id"]}
    assert runs()[run["run_id"]]["conf"]["alert"]["source"] == "grafana"

    again = post(api_server, payload)
    assert again.json()["runs"][0] == {**run, "created": False}
    assert len(runs()) == len(before) + 1


def test_the_project_format_starts_a_run_keyed_by_alert_id(api_server):
    payload = {"model": MODEL, "alert_id": "evidently-2026-11-22T10", "status": "firing",
               "summary": "3 of 9 features drifted", "drift_score": 0.41, "features": ["annual_income"]}
    before = runs()
    response = post(api_server, payload)
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    alert = runs()[run["run_id"]]["conf"]["alert"]
    assert (alert["drift_score"], alert["features"]) == (0.41, ["annual_income"])
    assert post(api_server, payload).json()["runs"][0]["created"] is False
    assert len(runs()) == len(before) + 1


def test_a_resolved_alert_starts_nothing(api_server):
    before = runs()
    response = post(api_server, alertmanager(am_alert("am00000000000003", status="resolved")))
    assert response.status_code == 200
    assert response.json()["runs"] == []
    assert response.json()["ignored"][0]["reason"] == "resolved"
    assert runs() == before


def test_a_group_starts_one_run_for_its_firing_alerts_and_ignores_the_resolved_ones(api_server):
    before = runs()
    response = post(api_server, alertmanager(am_alert("am00000000000004"), am_alert("am00000000000005"),
                                             am_alert("am00000000000006", status="resolved")))
    assert response.status_code == 200
    (run,) = response.json()["runs"]
    assert run["created"] is True
    assert [a.split("@")[0] for a in run["alerts"]] == ["am00000000000004", "am00000000000005"]
    assert [i["reason"] for i in response.json()["ignored"]] == ["resolved"]
    assert set(runs()) - set(before) == {run["run_id"]}
    conf = runs()[run["run_id"]]["conf"]["alert"]
    assert conf["identities"] == run["alerts"] and len(conf["alerts"]) == 2


# --- which data a run trains on ----------------------------------------------------------------------

SKIPS = "skips itself if a version was already trained from that data, code and params."


def default_uri() -> str:
    """The training DAG's default ``dataset_uri``: the model's ``dataset.uri`` (the server reads the same config)."""
    from include.config import get_model_config

    return get_model_config(MODEL).dataset.uri


def default_note() -> str:
    return f"Trains on `{default_uri()}` (the DAG's default dataset_uri: the alert names none); {SKIPS}"


def test_an_alert_without_a_dataset_uri_says_it_trains_on_the_default_and_may_skip(api_server):
    response = post(api_server, alertmanager(am_alert("du00000000000001")))
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    assert (run["dataset_uri"], run["dataset_uri_from"], run["note"]) == (default_uri(), "default", default_note())
    created = runs()[run["run_id"]]
    assert "dataset_uri" not in created["conf"] and created["conf"]["alert"]["dataset_uri"] is None
    assert created["note"] == f"Drift alert from alertmanager: drift on {MODEL} — {default_note()}"


@pytest.mark.parametrize("where", ["project", "annotation", "label"])
def test_an_alert_names_the_data_its_run_trains_on(api_server, where):
    uri = f"s3://features/{MODEL}/snapshot={where}"
    if where == "project":
        payload = {"model": MODEL, "alert_id": "du-project-1", "status": "firing", "summary": "drift",
                   "dataset_uri": f" {uri} "}
    else:
        alert = am_alert(f"du{where:0>14}"[:16])
        (alert["annotations"] if where == "annotation" else alert["labels"])["dataset_uri"] = uri
        payload = grafana(alert)
    response = post(api_server, payload)
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    note = f"Trains on `{uri}` (the alert's dataset_uri); {SKIPS}"
    assert (run["dataset_uri"], run["dataset_uri_from"], run["note"]) == (uri, "alert", note)
    created = runs()[run["run_id"]]
    assert created["conf"]["dataset_uri"] == created["conf"]["alert"]["dataset_uri"] == uri  # the DAG param
    assert created["note"].endswith(f" — {note}")
    assert post(api_server, payload).json()["runs"][0] == {**run, "created": False}


def test_a_redelivery_naming_other_data_says_the_run_keeps_its_own(api_server):
    alert = am_alert("du00000000000002")
    first = post(api_server, alertmanager(alert)).json()["runs"][0]
    alert["annotations"]["dataset_uri"] = "/data/snapshot-2.parquet"
    before = runs()
    again = post(api_server, alertmanager(alert)).json()["runs"][0]
    assert runs() == before
    assert (again["run_id"], again["created"], again["dataset_uri"], again["dataset_uri_from"]) == (
        first["run_id"], False, default_uri(), "default")
    assert again["note"] == (f"{default_note()} This delivery's alerts name dataset_uri '/data/snapshot-2.parquet', "
                             f"but an alert starts one run and that run keeps its data: trigger {DAG_ID} with "
                             "dataset_uri='/data/snapshot-2.parquet' to train on it.")


def test_alerts_of_one_model_naming_different_data_are_422_and_start_nothing(api_server):
    a = am_alert("du00000000000003", dataset_uri="/data/a.parquet")
    b = am_alert("du00000000000004", dataset_uri="/data/b.parquet")
    response = _refused(api_server, 422, payload=alertmanager(a, b))
    (error,) = response.json()["detail"]
    assert error["type"] == "conflicting_dataset_uri" and error["loc"] == ["body", "alerts"]
    assert error["format"] == "alertmanager"
    assert "name 2 different dataset_uris: '/data/a.parquet' (alert du00000000000003@" in error["msg"]
    assert "'/data/b.parquet' (alert du00000000000004@" in error["msg"]
    # One of them alone, or with an alert that names no data, starts a run on its data.
    ok = post(api_server, alertmanager(a, am_alert("du00000000000005")))
    assert [(r["created"], r["dataset_uri"]) for r in ok.json()["runs"]] == [(True, "/data/a.parquet")]


@pytest.mark.parametrize(("value", "says"), [
    ("${AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK}", "must not contain ${...}"),
    ("/data/x.parquet\nERROR forged", "control characters"),
    ("s3://", "names no location"),
])
def test_a_dataset_uri_that_is_not_a_path_or_uri_is_422_naming_the_field(api_server, value, says):
    payload = {"model": MODEL, "alert_id": "du-bad", "status": "firing", "dataset_uri": value}
    response = _refused(api_server, 422, payload=payload)
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "dataset_uri"] and says in error["msg"]


# --- only drift starts retraining, once per model ----------------------------------------------------


@pytest.mark.parametrize("alertname", ["DatasourceNoData", "DatasourceError"])
def test_grafanas_no_data_and_error_alerts_start_nothing_and_say_why(api_server, alertname):
    before = runs()
    alert = am_alert(f"nd{alertname[10:].lower():0>14}", alertname=alertname, rulename="FeatureDrift",
                     datasource_uid="prom")
    response = post(api_server, grafana(alert))
    assert response.status_code == 200, response.text
    assert response.json()["runs"] == []
    (ignored,) = response.json()["ignored"]
    assert ignored["model"] == MODEL and ignored["reason"].startswith(f"not a drift alert: {alertname} is Grafana's")
    assert runs() == before


def test_an_alert_grafana_fired_because_its_query_returned_no_data_starts_nothing(api_server):
    before = runs()
    response = post(api_server, grafana(am_alert("sr00000000000001", grafana_state_reason="NoData")))
    assert response.status_code == 200
    assert response.json()["runs"] == []
    assert "grafana_state_reason is NoData" in response.json()["ignored"][0]["reason"]
    assert runs() == before


def test_many_alerts_about_one_model_start_one_run_and_redeliveries_none(api_server):
    ids = [f"co{i:014}" for i in range(5)]
    started = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")  # earlier runs are looked up from here
    alert = functools.partial(am_alert, starts_at=started)
    before = runs()
    first = post(api_server, grafana(*(alert(i) for i in ids[:3])))
    (run,) = first.json()["runs"]
    assert run["created"] is True and len(run["alerts"]) == 3
    assert set(runs()) - set(before) == {run["run_id"]}
    assert runs()[run["run_id"]]["note"].startswith("3 drift alerts from grafana: drift on credit_approval")

    # Redelivered, or with one alert resolved since: every firing alert has its run already.
    for payload in (grafana(*(alert(i) for i in ids[:3])),
                    grafana(alert(ids[0], status="resolved"), alert(ids[1]), alert(ids[2]))):
        again = post(api_server, payload)
        assert [(r["run_id"], r["created"]) for r in again.json()["runs"]] == [(run["run_id"], False)]
    assert set(runs()) - set(before) == {run["run_id"]}

    # Two alerts joined the group: one new run, for the newcomers only.
    grown = post(api_server, grafana(*(alert(i) for i in ids)))
    assert [(r["run_id"], r["created"], len(r["alerts"])) for r in grown.json()["runs"]] == [
        (run["run_id"], False, 3), (grown.json()["runs"][1]["run_id"], True, 2)]
    new = grown.json()["runs"][1]["run_id"]
    assert set(runs()) - set(before) == {run["run_id"], new}
    assert [i.split("@")[0] for i in runs()[new]["conf"]["alert"]["identities"]] == ids[3:]


def test_alert_text_reaches_the_run_note_conf_and_log_without_control_or_bidi_characters(api_server):
    evil = "income\u202eevil\u2066\x1b[2J\r\nERROR forged line\x85"
    alert = am_alert("tx00000000000001", summary=evil, description="d" * 5000)
    alert["labels"]["team\u200f"] = evil
    response = post(api_server, alertmanager(alert))
    assert response.status_code == 200, response.text
    created = runs()[response.json()["runs"][0]["run_id"]]
    assert created["note"] == f"Drift alert from alertmanager: incomeevil[2J ERROR forged line — {default_note()}"
    conf = created["conf"]["alert"]
    assert conf["summary"] == conf["labels"]["team"] == "incomeevil[2J ERROR forged line"
    assert conf["annotations"]["description"] == "d" * 1023 + "…"
    # A refused request that quotes body text in the log (a field name) cannot forge a log line either.
    _refused(api_server, 422, payload={"model": MODEL, "alert_id": "tx-2", "status": "firing",
                                       "x\nERROR forged\u202e": 1})
    log = api_server.log.read_text(errors="replace")
    assert "\u202e" not in log and "\u2066" not in log and "\x1b[2J" not in log
    assert not any(line.startswith("ERROR forged") for line in log.splitlines())


# --- refused requests start nothing ----------------------------------------------------------------

FIRING = alertmanager(am_alert("bad0000000000001"))


def _refused(server: Server, expected: int, send=None, **kwargs) -> httpx.Response:
    before = runs()
    response = send() if send else post(server, kwargs.pop("payload", FIRING), **kwargs)
    assert response.status_code == expected, response.text
    assert runs() == before
    return response


def test_the_docs_page_loads_its_assets_from_the_server_not_a_cdn(api_server):
    page = httpx.get(f"{api_server.url}/modelops/docs", timeout=10)
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", page.text)
    assert assets and all(a.startswith("/modelops/") for a in assets), assets  # no https://cdn...
    for asset in assets:
        assert httpx.get(f"{api_server.url}{asset}", timeout=10).status_code == 200, asset
    assert "/modelops/openapi.json" in page.text


def test_an_unsigned_request_cannot_trigger_anything(api_server):
    response = _refused(api_server, 401, secret=None)
    assert response.headers["WWW-Authenticate"].startswith("HMAC-SHA256")
    assert TIMESTAMP_HEADER in response.json()["detail"]


def test_a_request_signed_with_another_secret_is_refused(api_server):
    _refused(api_server, 401, secret="not-the-secret")


def test_a_malformed_signature_header_is_refused(api_server):
    _refused(api_server, 401, headers={SIGNATURE_HEADER: "deadbeef"})


def test_a_body_changed_after_signing_is_refused(api_server):
    body = json.dumps(FIRING).encode()
    headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
    tampered = body.replace(b"bad0000000000001", b"bad0000000000002")
    _refused(api_server, 401, send=lambda: httpx.post(f"{api_server.url}{PATH}", content=tampered, headers=headers))


@pytest.mark.parametrize("skew", [-600, 600])
def test_a_stale_or_future_timestamp_is_refused(api_server, skew):
    response = _refused(api_server, 401, timestamp=int(time.time()) + skew)
    assert "tolerance" in response.json()["detail"]


def test_a_body_over_the_limit_is_refused_by_its_declared_length(api_server):
    big = alertmanager(am_alert("big0000000000001"))
    big["commonAnnotations"] = {"padding": "x" * 300_000}
    _refused(api_server, 413, payload=big)


def test_a_streamed_body_over_the_limit_is_refused_by_the_bytes_read(api_server):
    def chunks():  # no Content-Length: chunked transfer encoding
        for _ in range(40):
            yield b"x" * 10_000

    headers = {TIMESTAMP_HEADER: str(int(time.time())), SIGNATURE_HEADER: "sha256=" + "0" * 64}
    _refused(api_server, 413, send=lambda: httpx.post(f"{api_server.url}{PATH}", content=chunks(), headers=headers))


def test_a_malformed_payload_is_422_naming_the_field(api_server):
    payload = alertmanager(am_alert("bad0000000000003"))
    del payload["alerts"][0]["labels"]["model"]
    response = _refused(api_server, 422, payload=payload)
    assert response.json()["detail"][0]["loc"] == ["body", "alerts", 0, "labels", "model"]
    assert response.json()["detail"][0]["format"] == "alertmanager"


def test_a_body_that_is_not_json_is_422(api_server):
    response = _refused(api_server, 422, payload=b"model=credit_approval")
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_more_firing_drift_alerts_than_the_limit_is_422_and_starts_nothing(api_server):
    alerts = [am_alert(f"lim{i:013}") for i in range(500)]
    response = _refused(api_server, 422, payload=alertmanager(*alerts))
    (error,) = response.json()["detail"]
    assert error["type"] == "too_many_alerts" and error["loc"] == ["body", "alerts"]
    assert "500 firing drift alerts" in error["msg"] and "at most 20" in error["msg"]
    assert "AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_ALERTS" in error["msg"]
    _refused(api_server, 422, payload=alertmanager(*alerts[:21]))


def test_the_limit_counts_drift_alerts_only(api_server):
    noise = [am_alert(f"nd{i:014}", alertname="DatasourceNoData") for i in range(60)]
    resolved = [am_alert(f"rs{i:014}", status="resolved") for i in range(30)]
    before = runs()
    response = post(api_server, grafana(*noise, *resolved, *(am_alert(f"ok{i:014}") for i in range(20))))
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    assert len(run["alerts"]) == 20 and len(response.json()["ignored"]) == 90
    assert set(runs()) - set(before) == {run["run_id"]}


def test_an_unknown_model_is_404(api_server):
    response = _refused(api_server, 404, payload=alertmanager(am_alert("bad0000000000004", model="no_such_model")))
    assert "no_such_model" in response.json()["detail"]


def test_one_unknown_model_in_a_group_starts_nothing_at_all(api_server):
    payload = alertmanager(am_alert("bad0000000000005"), am_alert("bad0000000000006", model="no_such_model"))
    _refused(api_server, 404, payload=payload)
    assert post(api_server, alertmanager(am_alert("bad0000000000005"))).json()["runs"][0]["created"] is True


@pytest.mark.parametrize("connection", [None, {"conn_type": "generic", "login": "no-password"}])
def test_without_a_secret_the_webhook_fails_closed(airflow_db, monkeypatch, connection):
    """The app in this process, served on loopback: the module's server has its secret for good."""
    import uvicorn

    from modelops.webhook import create_app

    monkeypatch.delenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK", raising=False)
    if connection:
        monkeypatch.setenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK", json.dumps(connection))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    body = json.dumps(FIRING).encode()
    before = runs()
    try:
        while not server.started:
            time.sleep(0.05)
        for headers in ({}, signed_headers(SECRET, body), signed_headers("", body)):
            response = httpx.post(f"http://127.0.0.1:{port}/api/v1/drift-alerts", content=body, headers=headers)
            assert response.status_code == 503
            assert "modelops_drift_webhook" in response.json()["detail"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert runs() == before


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_ALERTS", "lots", "must be a whole number, got 'lots'"),
    ("AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_ALERTS", "0", "must be at least 1, got 0"),
    ("AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_BODY_BYTES", "256k", "must be a whole number, got '256k'"),
])
def test_a_setting_that_is_not_valid_is_503_naming_it(airflow_db, monkeypatch, variable, value, says):
    """The app in this process, served on loopback, with one setting broken."""
    import uvicorn

    from modelops.webhook import create_app

    monkeypatch.setenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK", json.dumps({"conn_type": "generic", "password": SECRET}))
    monkeypatch.setenv(variable, value)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    body = json.dumps(alertmanager(am_alert("cfg0000000000001"))).encode()
    before = runs()
    try:
        while not server.started:
            time.sleep(0.05)
        response = httpx.post(f"http://127.0.0.1:{port}/api/v1/drift-alerts", content=body,
                              headers={"Content-Type": "application/json", **signed_headers(SECRET, body)})
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert response.status_code == 503
    assert f"{variable} {says}" in response.json()["detail"]
    assert runs() == before


# --- the OpenAPI schema, fuzzed ----------------------------------------------------------------------

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_cases(api_server, state_dir) -> st.SearchStrategy:
    """Requests generated from the schema the server publishes: valid and invalid by that schema."""
    set_hypothesis_home_dir(state_dir / "hypothesis")  # its caches go with the test state, not the checkout
    schema = schemathesis.openapi.from_url(f"{api_server.url}/modelops/openapi.json")
    return st.one_of(*(schema.as_strategy(generation_mode=mode) for mode in GenerationMode))


@pytest.fixture
def signing():
    """A schemathesis hook that signs every request it sends (the generated body, serialized once, as sent)."""

    def before_call(context, case, kwargs):
        if isinstance(case.body, bytes):  # negative cases may be raw bytes
            body = case.body
        elif isinstance(case.body, NotSet):
            body = b""
        else:
            body = json.dumps(case.body).encode()
        kwargs["data"] = body
        case.headers = {**(case.headers or {}), "Content-Type": "application/json", **signed_headers(SECRET, body)}

    schemathesis.hook(before_call)
    yield
    GLOBAL_HOOK_DISPATCHER.unregister(before_call)


def test_fuzzed_unsigned_requests_are_refused_without_server_errors(api_server, fuzz_cases):
    seen: Counter[int] = Counter()

    @FUZZ
    @given(case=fuzz_cases)
    def check(case):
        before = runs()
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        assert response.status_code in (401, 413), response.text
        assert runs() == before
        seen[response.status_code] += 1

    check()
    assert seen[401] > 0, seen


def test_fuzzed_signed_requests_reach_validation_without_server_errors(api_server, fuzz_cases, signing):
    seen: Counter[int] = Counter()

    @FUZZ
    @given(case=fuzz_cases)
    def check(case):
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        assert response.status_code in (200, 404, 413, 422), response.text
        seen[response.status_code] += 1

    check()
    # Signed, the generated payloads get past the access check: refused as malformed, or for their model.
    assert seen[422] > 0 and seen[404] > 0, seen


# --- audit -------------------------------------------------------------------------------------------


def test_every_request_is_logged_and_the_secret_never_is(api_server):
    log = api_server.log.read_text(errors="replace")
    assert "drift webhook: accepted" in log
    for reason in ("401 missing", "401 mismatch", "401 malformed", "401 stale", "413", "422", "404"):
        assert f"drift webhook: rejected POST {PATH}" in log and reason in log, reason
    assert SECRET not in log
