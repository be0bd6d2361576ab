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
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

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

from include.inbound.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers
from tests.plugins.inbound.webhook_server import SECRET, Server
from tests.servers import serving_app

PATH = "/modelops/api/v1/drift-alerts"
MODEL = "credit_approval"
DAG_ID = f"train_{MODEL}"
# The api_server fixture (tests/plugins/inbound/conftest.py) gives the server this webhook secret.


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


def fresh(prefix: str) -> str:
    """A fingerprint (or alert_id) no other request has used: every test sends alerts of its own, so none
    depends on, or is disturbed by, what another test sent before it (in any order, or alone)."""
    return f"{prefix}{uuid.uuid4().hex}"[:16]


def fresh_ids(prefix: str, n: int) -> list[str]:
    """``n`` distinct fresh fingerprints sharing one random stem, in order."""
    stem = fresh(prefix)[:8]
    return [f"{stem}{i:08}" for i in range(n)]


def created_runs(before: dict[str, dict]) -> dict[str, dict]:
    """The runs of the training DAG that did not exist in ``before`` (a :func:`runs` snapshot)."""
    return {run_id: run for run_id, run in runs().items() if run_id not in before}


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
    fingerprint = fresh("am")
    before = runs()
    response = post(api_server, alertmanager(am_alert(fingerprint)))
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    assert run["created"] is True and run["dag_id"] == DAG_ID and run["source"] == "alertmanager"
    assert run["alerts"] == [f"{fingerprint}@2026-11-22T10:00:00+00:00"]

    (created,) = created_runs(before).values()
    assert created == runs()[run["run_id"]]
    assert created["run_type"] == "manual" and created["triggered_by"] == "rest_api"
    assert created["user"] == "drift-webhook" and created["state"] == "queued"
    assert created["conf"]["alert"]["identity"] == f"{fingerprint}@2026-11-22T10:00:00+00:00"
    assert created["conf"]["alert"]["labels"]["severity"] == "critical"


def test_a_redelivered_alert_returns_its_run_and_starts_nothing(api_server):
    payload = alertmanager(am_alert(fresh("am")))
    first = post(api_server, payload)
    assert first.json()["runs"][0]["created"] is True, first.text
    before = runs()
    again = post(api_server, payload)  # a new timestamp and signature, the same alert
    assert again.status_code == 200
    assert again.json()["runs"][0]["run_id"] == first.json()["runs"][0]["run_id"]
    assert again.json()["runs"][0]["created"] is False
    assert runs() == before


def test_a_signed_grafana_alert_starts_exactly_one_run_and_a_redelivery_none(api_server):
    fingerprint = fresh("6f")
    payload = grafana(am_alert(fingerprint, starts_at="2026-11-22T11:00:00+01:00"))
    before = runs()
    response = post(api_server, payload)
    assert response.status_code == 200, response.text
    assert response.json()["format"] == "grafana"
    (run,) = response.json()["runs"]
    assert run["created"] is True and run["alerts"] == [f"{fingerprint}@2026-11-22T10:00:00+00:00"]
    assert list(created_runs(before)) == [run["run_id"]]
    assert runs()[run["run_id"]]["conf"]["alert"]["source"] == "grafana"

    again = post(api_server, payload)
    assert again.json()["runs"][0] == {**run, "created": False}
    assert list(created_runs(before)) == [run["run_id"]]


def test_the_project_format_starts_a_run_keyed_by_alert_id(api_server):
    alert_id = f"evidently-{fresh('')}"
    payload = {"model": MODEL, "alert_id": alert_id, "status": "firing",
               "summary": "3 of 9 features drifted", "drift_score": 0.41, "features": ["annual_income"]}
    before = runs()
    response = post(api_server, payload)
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    assert (run["created"], run["alerts"], run["source"]) == (True, [alert_id], "project")
    alert = runs()[run["run_id"]]["conf"]["alert"]
    assert (alert["identity"], alert["drift_score"], alert["features"]) == (alert_id, 0.41, ["annual_income"])
    assert post(api_server, payload).json()["runs"][0] == {**run, "created": False}
    assert list(created_runs(before)) == [run["run_id"]]


def test_a_resolved_alert_starts_nothing(api_server):
    before = runs()
    response = post(api_server, alertmanager(am_alert(fresh("am"), status="resolved")))
    assert response.status_code == 200
    assert response.json()["runs"] == []
    assert response.json()["ignored"][0]["reason"] == "resolved"
    assert runs() == before


def test_a_group_starts_one_run_for_its_firing_alerts_and_ignores_the_resolved_ones(api_server):
    a, b, c = fresh_ids("am", 3)
    before = runs()
    response = post(api_server, alertmanager(am_alert(a), am_alert(b), am_alert(c, status="resolved")))
    assert response.status_code == 200
    (run,) = response.json()["runs"]
    assert run["created"] is True
    assert [i.split("@")[0] for i in run["alerts"]] == [a, b]
    assert [(i["alert"].split("@")[0], i["reason"]) for i in response.json()["ignored"]] == [(c, "resolved")]
    assert list(created_runs(before)) == [run["run_id"]]
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
    before = runs()
    response = post(api_server, alertmanager(am_alert(fresh("du"))))
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    assert run["created"] is True and list(created_runs(before)) == [run["run_id"]]
    assert (run["dataset_uri"], run["dataset_uri_from"], run["note"]) == (default_uri(), "default", default_note())
    created = runs()[run["run_id"]]
    assert "dataset_uri" not in created["conf"] and created["conf"]["alert"]["dataset_uri"] is None
    assert created["note"] == f"Drift alert from alertmanager: drift on {MODEL} — {default_note()}"


@pytest.mark.parametrize("where", ["project", "annotation", "label"])
def test_an_alert_names_the_data_its_run_trains_on(api_server, where):
    uri = f"s3://features/{MODEL}/snapshot={where}"
    if where == "project":
        payload = {"model": MODEL, "alert_id": fresh("du-p"), "status": "firing", "summary": "drift",
                   "dataset_uri": f" {uri} "}
    else:
        alert = am_alert(fresh("du"))
        (alert["annotations"] if where == "annotation" else alert["labels"])["dataset_uri"] = uri
        payload = grafana(alert)
    before = runs()
    response = post(api_server, payload)
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    assert run["created"] is True and list(created_runs(before)) == [run["run_id"]]
    note = f"Trains on `{uri}` (the alert's dataset_uri); {SKIPS}"
    assert (run["dataset_uri"], run["dataset_uri_from"], run["note"]) == (uri, "alert", note)
    created = runs()[run["run_id"]]
    assert created["conf"]["dataset_uri"] == created["conf"]["alert"]["dataset_uri"] == uri  # the DAG param
    assert created["note"].endswith(f" — {note}")
    assert post(api_server, payload).json()["runs"][0] == {**run, "created": False}


def test_a_redelivery_naming_other_data_says_the_run_keeps_its_own(api_server):
    alert = am_alert(fresh("du"))
    first = post(api_server, alertmanager(alert)).json()["runs"][0]
    assert (first["created"], first["dataset_uri_from"]) == (True, "default")
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
    fa, fb, fc = fresh_ids("du", 3)
    a = am_alert(fa, dataset_uri="/data/a.parquet")
    b = am_alert(fb, dataset_uri="/data/b.parquet")
    response = _refused(api_server, 422, payload=alertmanager(a, b))
    (error,) = response.json()["detail"]
    assert error["type"] == "conflicting_dataset_uri" and error["loc"] == ["body", "alerts"]
    assert error["format"] == "alertmanager"
    assert f"name 2 different dataset_uris: '/data/a.parquet' (alert {fa}@" in error["msg"]
    assert f"'/data/b.parquet' (alert {fb}@" in error["msg"]
    # One of them alone, or with an alert that names no data, starts a run on its data.
    before = runs()
    ok = post(api_server, alertmanager(a, am_alert(fc)))
    assert [(r["created"], r["dataset_uri"], [i.split("@")[0] for i in r["alerts"]]) for r in ok.json()["runs"]] == [
        (True, "/data/a.parquet", [fa, fc])]
    assert list(created_runs(before)) == [ok.json()["runs"][0]["run_id"]]


@pytest.mark.parametrize(("value", "says"), [
    ("${AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK}", "must not contain ${...}"),
    ("/data/x.parquet\nERROR forged", "control characters"),
    ("s3://", "names no location"),
])
def test_a_dataset_uri_that_is_not_a_path_or_uri_is_422_naming_the_field(api_server, value, says):
    payload = {"model": MODEL, "alert_id": fresh("du-bad"), "status": "firing", "dataset_uri": value}
    response = _refused(api_server, 422, payload=payload)
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "dataset_uri"] and says in error["msg"]


# --- only drift starts retraining, once per model ----------------------------------------------------


@pytest.mark.parametrize("alertname", ["DatasourceNoData", "DatasourceError"])
def test_grafanas_no_data_and_error_alerts_start_nothing_and_say_why(api_server, alertname):
    before = runs()
    alert = am_alert(fresh("nd"), alertname=alertname, rulename="FeatureDrift",
                     datasource_uid="prom")
    response = post(api_server, grafana(alert))
    assert response.status_code == 200, response.text
    assert response.json()["runs"] == []
    (ignored,) = response.json()["ignored"]
    assert ignored["model"] == MODEL and ignored["reason"].startswith(f"not a drift alert: {alertname} is Grafana's")
    assert runs() == before


def test_an_alert_grafana_fired_because_its_query_returned_no_data_starts_nothing(api_server):
    before = runs()
    response = post(api_server, grafana(am_alert(fresh("sr"), grafana_state_reason="NoData")))
    assert response.status_code == 200
    assert response.json()["runs"] == []
    assert "grafana_state_reason is NoData" in response.json()["ignored"][0]["reason"]
    assert runs() == before


def test_many_alerts_about_one_model_start_one_run_and_redeliveries_none(api_server):
    ids = fresh_ids("co", 5)
    started = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")  # earlier runs are looked up from here
    alert = functools.partial(am_alert, starts_at=started)
    before = runs()
    first = post(api_server, grafana(*(alert(i) for i in ids[:3])))
    (run,) = first.json()["runs"]
    assert run["created"] is True and [i.split("@")[0] for i in run["alerts"]] == ids[:3]
    assert list(created_runs(before)) == [run["run_id"]]
    assert runs()[run["run_id"]]["note"].startswith("3 drift alerts from grafana: drift on credit_approval")

    # Redelivered, or with one alert resolved since: every firing alert has its run already.
    for payload in (grafana(*(alert(i) for i in ids[:3])),
                    grafana(alert(ids[0], status="resolved"), alert(ids[1]), alert(ids[2]))):
        again = post(api_server, payload)
        assert [(r["run_id"], r["created"]) for r in again.json()["runs"]] == [(run["run_id"], False)]
    assert list(created_runs(before)) == [run["run_id"]]

    # Two alerts joined the group: one new run, for the newcomers only.
    grown = post(api_server, grafana(*(alert(i) for i in ids)))
    assert [(r["run_id"], r["created"], len(r["alerts"])) for r in grown.json()["runs"]] == [
        (run["run_id"], False, 3), (grown.json()["runs"][1]["run_id"], True, 2)]
    new = grown.json()["runs"][1]["run_id"]
    assert set(created_runs(before)) == {run["run_id"], new}
    assert [i.split("@")[0] for i in runs()[new]["conf"]["alert"]["identities"]] == ids[3:]


def test_alert_text_reaches_the_run_note_conf_and_log_without_control_or_bidi_characters(api_server):
    evil = "income\u202eevil\u2066\x1b[2J\r\nERROR forged line\x85"
    alert = am_alert(fresh("tx"), summary=evil, description="d" * 5000)
    alert["labels"]["team\u200f"] = evil
    before = runs()
    response = post(api_server, alertmanager(alert))
    assert response.status_code == 200, response.text
    (created,) = created_runs(before).values()
    assert created["note"] == f"Drift alert from alertmanager: incomeevil[2J ERROR forged line — {default_note()}"
    conf = created["conf"]["alert"]
    assert conf["summary"] == conf["labels"]["team"] == "incomeevil[2J ERROR forged line"
    assert conf["annotations"]["description"] == "d" * 1023 + "…"
    # A refused request that quotes body text in the log (a field name) cannot forge a log line either.
    _refused(api_server, 422, payload={"model": MODEL, "alert_id": fresh("tx-"), "status": "firing",
                                       "x\nERROR forged\u202e": 1})
    log = api_server.log.read_text(errors="replace")
    assert "\u202e" not in log and "\u2066" not in log and "\x1b[2J" not in log
    assert not any(line.startswith("ERROR forged") for line in log.splitlines())


# --- refused requests start nothing ----------------------------------------------------------------

def firing() -> dict:
    """A valid drift alert never sent before: were it let through, it would start a run."""
    return alertmanager(am_alert(fresh("bad")))


def _refused(server: Server, expected: int, send=None, **kwargs) -> httpx.Response:
    """Send (a fresh :func:`firing` alert unless ``payload`` is given); assert ``expected`` and that no run started."""
    before = runs()
    payload = kwargs.pop("payload") if "payload" in kwargs else firing()
    response = send() if send else post(server, payload, **kwargs)
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
    fingerprint = fresh("bad")
    body = json.dumps(alertmanager(am_alert(fingerprint))).encode()
    headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
    tampered = body.replace(fingerprint.encode(), fresh("bad").encode())
    assert tampered != body
    _refused(api_server, 401, send=lambda: httpx.post(f"{api_server.url}{PATH}", content=tampered, headers=headers))


@pytest.mark.parametrize("skew", [-600, 600])
def test_a_stale_or_future_timestamp_is_refused(api_server, skew):
    response = _refused(api_server, 401, timestamp=int(time.time()) + skew)
    assert "tolerance" in response.json()["detail"]


def test_a_body_over_the_limit_is_refused_by_its_declared_length(api_server):
    big = alertmanager(am_alert(fresh("big")))
    big["commonAnnotations"] = {"padding": "x" * 300_000}
    _refused(api_server, 413, payload=big)


def test_a_streamed_body_over_the_limit_is_refused_by_the_bytes_read(api_server):
    def chunks():  # no Content-Length: chunked transfer encoding
        for _ in range(40):
            yield b"x" * 10_000

    headers = {TIMESTAMP_HEADER: str(int(time.time())), SIGNATURE_HEADER: "sha256=" + "0" * 64}
    _refused(api_server, 413, send=lambda: httpx.post(f"{api_server.url}{PATH}", content=chunks(), headers=headers))


def test_a_malformed_payload_is_422_naming_the_field(api_server):
    payload = firing()
    del payload["alerts"][0]["labels"]["model"]
    response = _refused(api_server, 422, payload=payload)
    assert response.json()["detail"][0]["loc"] == ["body", "alerts", 0, "labels", "model"]
    assert response.json()["detail"][0]["format"] == "alertmanager"


def test_a_body_that_is_not_json_is_422(api_server):
    response = _refused(api_server, 422, payload=b"model=credit_approval")
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_more_firing_drift_alerts_than_the_limit_is_422_and_starts_nothing(api_server):
    alerts = [am_alert(i) for i in fresh_ids("lim", 500)]
    response = _refused(api_server, 422, payload=alertmanager(*alerts))
    (error,) = response.json()["detail"]
    assert error["type"] == "too_many_alerts" and error["loc"] == ["body", "alerts"]
    assert "500 firing drift alerts" in error["msg"] and "at most 20" in error["msg"]
    assert "AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_ALERTS" in error["msg"]
    _refused(api_server, 422, payload=alertmanager(*alerts[:21]))


def test_the_limit_counts_drift_alerts_only(api_server):
    noise = [am_alert(i, alertname="DatasourceNoData") for i in fresh_ids("nd", 60)]
    resolved = [am_alert(i, status="resolved") for i in fresh_ids("rs", 30)]
    drift = fresh_ids("ok", 20)
    before = runs()
    response = post(api_server, grafana(*noise, *resolved, *(am_alert(i) for i in drift)))
    assert response.status_code == 200, response.text
    (run,) = response.json()["runs"]
    assert run["created"] is True and [i.split("@")[0] for i in run["alerts"]] == drift
    assert len(response.json()["ignored"]) == 90
    assert list(created_runs(before)) == [run["run_id"]]


def test_an_unknown_model_is_404(api_server):
    response = _refused(api_server, 404, payload=alertmanager(am_alert(fresh("bad"), model="no_such_model")))
    assert "no_such_model" in response.json()["detail"]


def test_one_unknown_model_in_a_group_starts_nothing_at_all(api_server):
    known, unknown = fresh_ids("bad", 2)
    payload = alertmanager(am_alert(known), am_alert(unknown, model="no_such_model"))
    _refused(api_server, 404, payload=payload)
    # The known model's alert was not half-accepted: sent alone it starts its run now.
    before = runs()
    (run,) = post(api_server, alertmanager(am_alert(known))).json()["runs"]
    assert run["created"] is True and list(created_runs(before)) == [run["run_id"]]


@pytest.mark.parametrize("connection", [None, {"conn_type": "generic", "login": "no-password"}])
def test_without_a_secret_the_webhook_fails_closed(airflow_db, monkeypatch, connection):
    """The app in this process, served on loopback: the module's server has its secret for good."""
    from modelops.app import create_app

    monkeypatch.delenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK", raising=False)
    if connection:
        monkeypatch.setenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK", json.dumps(connection))
    body = json.dumps(firing()).encode()
    before = runs()
    with serving_app(create_app()) as url:
        for headers in ({}, signed_headers(SECRET, body), signed_headers("", body)):
            response = httpx.post(f"{url}/api/v1/drift-alerts", content=body, headers=headers)
            assert response.status_code == 503
            assert "modelops_drift_webhook" in response.json()["detail"]
    assert runs() == before


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_ALERTS", "lots", "must be a whole number, got 'lots'"),
    ("AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_ALERTS", "0", "must be at least 1, got 0"),
    ("AIRFLOW__MODELOPS__DRIFT_WEBHOOK_MAX_BODY_BYTES", "256k", "must be a whole number, got '256k'"),
])
def test_a_setting_that_is_not_valid_is_503_naming_it(airflow_db, monkeypatch, variable, value, says):
    """The app in this process, served on loopback, with one setting broken."""
    from modelops.app import create_app

    monkeypatch.setenv("AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK", json.dumps({"conn_type": "generic", "password": SECRET}))
    monkeypatch.setenv(variable, value)
    body = json.dumps(firing()).encode()
    before = runs()
    with serving_app(create_app()) as url:
        response = httpx.post(f"{url}/api/v1/drift-alerts", content=body,
                              headers={"Content-Type": "application/json", **signed_headers(SECRET, body)})
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
    # the webhook's routes only: the governance routes take Airflow's token, not a signature
    schema = schemathesis.openapi.from_url(f"{api_server.url}/modelops/openapi.json").include(tag="Drift alerts")
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


def _log_since(server: Server, offset: int, expected: int, wait_s: float = 10) -> list[str]:
    """The server log's lines written after byte ``offset`` that are drift webhook audit lines, waiting (up to
    ``wait_s``) until ``expected`` of them are there: the server writes its log in its own process."""
    deadline = time.monotonic() + wait_s
    while True:
        with server.log.open("rb") as f:
            f.seek(offset)
            lines = [line for line in f.read().decode(errors="replace").splitlines() if "drift webhook: " in line]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines


def test_every_request_is_logged_and_the_secret_never_is(api_server):
    offset = api_server.log.stat().st_size
    accepted = post(api_server, alertmanager(am_alert(fresh("log"))))
    assert accepted.status_code == 200, accepted.text
    (run,) = accepted.json()["runs"]
    _refused(api_server, 401, secret=None)
    _refused(api_server, 401, secret="not-the-secret")
    _refused(api_server, 401, headers={SIGNATURE_HEADER: "deadbeef"})
    _refused(api_server, 401, timestamp=int(time.time()) - 600)
    big = firing()
    big["commonAnnotations"] = {"padding": "x" * 300_000}
    _refused(api_server, 413, payload=big)
    _refused(api_server, 422, payload=b"not json")
    _refused(api_server, 404, payload=alertmanager(am_alert(fresh("log"), model="no_such_model")))

    lines = _log_since(api_server, offset, expected=8)
    (accepted_line,) = [line for line in lines if "drift webhook: accepted" in line]
    assert "accepted 1 alert(s) (alertmanager) from 127.0.0.1:" in accepted_line
    assert f"started ['{DAG_ID}/{run['run_id']} (1 alert(s), data {default_uri()})']" in accepted_line
    rejected = [line.split(f"drift webhook: rejected POST {PATH} from 127.0.0.1:", 1)[1].split(": ", 1)[1]
                for line in lines if "drift webhook: rejected" in line]
    expected = [("401 missing: ", "missing header"), ("401 mismatch: ", "does not match"),
                ("401 malformed: ", "must be 'sha256='"), ("401 stale: ", "off the server clock"),
                ("413 ", "exceeds the limit"), ("422 ", "Invalid JSON"), ("404 ", "no_such_model")]
    assert len(rejected) == len(expected), rejected
    for line, (start, says) in zip(rejected, expected, strict=True):
        assert line.startswith(start) and says in line, (start, line)
    log = api_server.log.read_text(errors="replace")
    assert SECRET not in log


def test_every_delivery_is_a_ledger_record_accepted_or_refused_with_its_source(api_server):
    from include.governance.ledger import default_ledger

    fingerprint = fresh("led")
    accepted = post(api_server, alertmanager(am_alert(fingerprint)))
    refused = post(api_server, alertmanager(am_alert(fresh("led"))), secret="not-the-secret")

    assert (accepted.status_code, refused.status_code) == (200, 401)
    (run,) = accepted.json()["runs"]
    records = default_ledger().records(run_id=run["run_id"])
    assert [(r.action, r.model, r.dag_id) for r in records] == [("webhook_accepted", MODEL, DAG_ID)]
    assert records[0].actor.startswith("webhook:127.0.0.1") and records[0].details["format"] == "alertmanager"
    assert records[0].details["alerts"] == [f"{fingerprint}@2026-11-22T10:00:00+00:00"]
    refusal = default_ledger().records(actions=["webhook_refused"])[-1]
    assert refusal.details["status"] == 401 and "Signature does not match" in refusal.reason
    assert "not-the-secret" not in refusal.as_dict().__repr__()

    again = post(api_server, alertmanager(am_alert(fingerprint)))  # a redelivery: the same run, one record
    assert again.json()["runs"][0]["created"] is False
    assert len(default_ledger().records(run_id=run["run_id"])) == 1
