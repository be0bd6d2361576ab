"""Drift webhook library: signatures, the three payload formats, alert identities and run ids."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess

import pytest

from include import webhook
from include.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, PayloadError, SignatureError

SECRET = "test-secret"
NOW = 1_800_000_000
BODY = b'{"model": "credit_approval", "alert_id": "a-1", "status": "firing"}'


def alertmanager(*alerts: dict, **extra) -> dict:
    return {"version": "4", "groupKey": "{}:{alertname=\"FeatureDrift\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "modelops", "groupLabels": {"alertname": "FeatureDrift"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": list(alerts), **extra}


def am_alert(fingerprint: str = "a1b2c3d4e5f60718", model: str = "credit_approval", status: str = "firing",
             starts_at: str = "2026-11-22T10:00:00Z", **extra) -> dict:
    return {"status": status, "labels": {"alertname": "FeatureDrift", "model": model, "severity": "warning"},
            "annotations": {"summary": "annual_income drifted"}, "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": fingerprint, **extra}


def grafana(*alerts: dict) -> dict:
    return {**alertmanager(*alerts), "version": "1", "orgId": 1, "title": "[FIRING:1] FeatureDrift",
            "state": "alerting", "message": "annual_income drifted"}


def parse(payload: dict) -> list[webhook.DriftAlert]:
    return webhook.normalize(webhook.parse_payload(json.dumps(payload).encode()))


# --- signatures ------------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert webhook.sign(SECRET, NOW, BODY) == f"sha256={expected}"


def test_a_valid_signature_verifies_and_returns_the_timestamp():
    headers = webhook.signed_headers(SECRET, BODY, timestamp=NOW)
    assert webhook.verify(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], BODY, now=NOW + 10) == NOW


@pytest.mark.parametrize(("timestamp", "signature", "reason", "names"), [
    (None, None, "missing", f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER}"),
    (str(NOW), "", "missing", SIGNATURE_HEADER),
    ("", "sha256=" + "0" * 64, "missing", TIMESTAMP_HEADER),
    ("yesterday", "sha256=" + "0" * 64, "malformed", TIMESTAMP_HEADER),
    ("-5", "sha256=" + "0" * 64, "malformed", TIMESTAMP_HEADER),
    (str(NOW), "0" * 64, "malformed", SIGNATURE_HEADER),
    (str(NOW), "sha1=" + "0" * 40, "malformed", SIGNATURE_HEADER),
    (str(NOW), "sha256=" + "0" * 64, "mismatch", SIGNATURE_HEADER),
])
def test_bad_headers_are_refused_with_a_reason_naming_the_header(timestamp, signature, reason, names):
    with pytest.raises(SignatureError) as err:
        webhook.verify(SECRET, timestamp, signature, BODY, now=NOW)
    assert err.value.reason == reason
    assert names in str(err.value)


def test_a_tampered_body_or_timestamp_or_another_secret_does_not_verify():
    signature = webhook.sign(SECRET, NOW, BODY)
    for secret, ts, body in [(SECRET, NOW, BODY.replace(b"a-1", b"a-2")), (SECRET, NOW + 1, BODY), ("other", NOW, BODY)]:
        with pytest.raises(SignatureError) as err:
            webhook.verify(secret, str(ts), signature, body, now=NOW)
        assert err.value.reason == "mismatch"


@pytest.mark.parametrize("skew", [-301, 301, -3600, 86400])
def test_an_authentic_request_outside_the_tolerance_is_stale(skew):
    signature = webhook.sign(SECRET, NOW, BODY)
    with pytest.raises(SignatureError) as err:
        webhook.verify(SECRET, str(NOW), signature, BODY, now=NOW + skew)
    assert err.value.reason == "stale"


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_clock_skew_within_five_minutes_either_way_is_accepted(skew):
    webhook.verify(SECRET, str(NOW), webhook.sign(SECRET, NOW, BODY), BODY, now=NOW + skew)


def test_uppercase_hex_is_accepted_and_bytes_secrets_work():
    signature = webhook.sign(SECRET, NOW, BODY)
    webhook.verify(SECRET.encode(), str(NOW), "sha256=" + signature[7:].upper(), BODY, now=NOW)


def test_an_empty_secret_is_a_configuration_error_not_a_pass():
    with pytest.raises(ValueError, match="secret is empty"):
        webhook.verify("", str(NOW), webhook.sign("", NOW, BODY), BODY, now=NOW)


def test_verify_compares_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(webhook.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    webhook.verify(SECRET, str(NOW), webhook.sign(SECRET, NOW, BODY), BODY, now=NOW)
    assert len(calls) == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_the_readme_shell_recipe_computes_the_same_signature():
    script = 'ts="$3"; body="$1"; printf \'%s.%s\' "$ts" "$body" | openssl dgst -sha256 -hmac "$2" -hex | sed "s/^.* //"'
    out = subprocess.run(["bash", "-c", script, "sh", BODY.decode(), SECRET, str(NOW)],
                         capture_output=True, text=True, check=True)
    assert f"sha256={out.stdout.strip()}" == webhook.sign(SECRET, NOW, BODY)


# --- payloads --------------------------------------------------------------------------------------


def test_alertmanager_v4_alerts_are_normalized_with_the_model_label():
    (alert,) = parse(alertmanager(am_alert()))
    assert alert.source == "alertmanager"
    assert alert.model == "credit_approval"
    assert alert.dag_id == "train_credit_approval"
    assert alert.status == "firing"
    assert alert.identity == "a1b2c3d4e5f60718@2026-11-22T10:00:00+00:00"
    assert alert.summary == "annual_income drifted"
    assert alert.labels["severity"] == "warning"
    assert alert.generator_url == "http://prometheus:9090/graph"


def test_grafana_v1_alerts_are_normalized_and_fall_back_to_the_title_for_a_summary():
    raw = am_alert(fingerprint="c6eadffa33fcdf37", annotations={}, values={"B": 44.2, "C": 1},
                   silenceURL="http://grafana/silence", dashboardURL="", panelURL="")
    (alert,) = parse(grafana(raw))
    assert alert.source == "grafana"
    assert alert.summary == "[FIRING:1] FeatureDrift"
    assert alert.identity.startswith("c6eadffa33fcdf37@")


def test_the_project_format_carries_its_own_fields():
    (alert,) = parse({"model": "credit_approval", "alert_id": "evidently-2026-11-22T10", "status": "firing",
                      "summary": "3 of 9 features drifted", "drift_score": 0.41,
                      "features": ["annual_income", "region", "age"]})
    assert (alert.source, alert.identity, alert.drift_score) == ("project", "evidently-2026-11-22T10", 0.41)
    assert alert.features == ["annual_income", "region", "age"]
    assert alert.labels == {"model": "credit_approval"}


def test_times_are_compared_in_utc_so_the_same_instant_is_the_same_alert():
    (a,) = parse(alertmanager(am_alert(starts_at="2026-11-22T10:00:00Z")))
    (b,) = parse(alertmanager(am_alert(starts_at="2026-11-22T12:00:00+02:00")))
    assert a.run_id == b.run_id


def test_run_ids_follow_the_alert_identity():
    (first,) = parse(alertmanager(am_alert()))
    (again,) = parse(alertmanager(am_alert()))
    (later,) = parse(alertmanager(am_alert(starts_at="2026-11-22T11:00:00Z")))
    (other,) = parse(alertmanager(am_alert(fingerprint="ffffffffffffffff")))
    (project,) = parse({"model": "credit_approval", "alert_id": first.identity, "status": "firing"})
    assert first.run_id == again.run_id
    assert len({first.run_id, later.run_id, other.run_id, project.run_id}) == 4
    assert first.run_id.startswith("drift_webhook__") and len(first.run_id) == len("drift_webhook__") + 32


def test_a_group_keeps_each_alert_once_in_order():
    alerts = parse(alertmanager(am_alert("01"), am_alert("02", status="resolved"), am_alert("01")))
    assert [(a.identity.split("@")[0], a.status) for a in alerts] == [("01", "firing"), ("02", "resolved")]


def test_the_conf_is_json_and_names_the_run():
    (alert,) = parse(alertmanager(am_alert()))
    conf = alert.to_conf()
    assert json.loads(json.dumps(conf)) == conf
    assert conf["run_id"] == alert.run_id
    assert conf["starts_at"] == "2026-11-22T10:00:00Z"


@pytest.mark.parametrize(("payload", "loc", "fmt"), [
    (alertmanager(am_alert(labels={"alertname": "FeatureDrift"})), ["alerts", 0, "labels", "model"], "alertmanager"),
    (alertmanager(am_alert(model="Credit Approval")), ["alerts", 0, "labels", "model"], "alertmanager"),
    (alertmanager(am_alert(startsAt="yesterday")), ["alerts", 0, "startsAt"], "alertmanager"),
    (alertmanager(am_alert(startsAt="2026-11-22T10:00:00")), ["alerts", 0, "startsAt"], "alertmanager"),
    (alertmanager(am_alert(startsAt="0001-01-01T00:00:00+01:00")), ["alerts", 0, "startsAt"], "alertmanager"),
    (alertmanager(am_alert(status="pending")), ["alerts", 0, "status"], "alertmanager"),
    (alertmanager(am_alert(fingerprint="")), ["alerts", 0, "fingerprint"], "alertmanager"),
    (alertmanager(), ["alerts"], "alertmanager"),
    ({**alertmanager(am_alert()), "version": "3"}, ["version"], "alertmanager"),
    ({**grafana(am_alert()), "version": "2"}, ["version"], "grafana"),
    (grafana(am_alert(labels={"model": "credit_approval", "n": 1})), ["alerts", 0, "labels", "n"], "grafana"),
    ({"model": "credit_approval", "status": "firing"}, ["alert_id"], "project"),
    ({"model": "credit_approval", "alert_id": "x", "status": "firing", "score": 1}, ["score"], "project"),
    ({"model": "credit_approval", "alert_id": "x", "status": "firing", "drift_score": "high"}, ["drift_score"], "project"),
])
def test_malformed_payloads_name_the_field(payload, loc, fmt):
    with pytest.raises(PayloadError) as err:
        webhook.parse_payload(json.dumps(payload).encode())
    assert {"loc": loc, "format": fmt} in [{"loc": e["loc"], "format": e.get("format")} for e in err.value.errors]
    assert ".".join(map(str, loc)) in str(err.value)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"null", b'{"a": "\\ud800"}', b"\xff\xfe"])
def test_bodies_that_are_not_a_json_object_are_payload_errors(body):
    with pytest.raises(PayloadError):
        webhook.parse_payload(body)


def test_the_json_schema_offers_the_three_formats():
    schema = webhook.payload_json_schema()
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in schema["oneOf"]] == [
        "AlertmanagerPayload", "GrafanaPayload", "ProjectAlert"]
    assert schema["$defs"]["AlertLabels"]["required"] == ["model"]
