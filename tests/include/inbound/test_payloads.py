"""Drift alert payloads: the three formats normalised, malformed ones named by field, alert text made safe."""

from __future__ import annotations

import json

import pytest

from include.inbound import drift_alerts, payloads
from include.inbound.payloads import PayloadError
from tests.include.inbound.alert_payloads import alertmanager, am_alert, grafana, parse

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
    (group,) = drift_alerts.group_by_model([alert])
    conf = group.to_conf()
    assert json.loads(json.dumps(conf)) == conf
    assert conf["run_id"] == group.run_id == alert.run_id  # one alert keeps the id earlier releases gave it
    assert conf["identity"] == alert.identity and conf["identities"] == [alert.identity]
    assert conf["starts_at"] == "2026-11-22T10:00:00Z"
    assert conf["labels"]["severity"] == "warning"


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
        payloads.parse_payload(json.dumps(payload).encode())
    assert {"loc": loc, "format": fmt} in [{"loc": e["loc"], "format": e.get("format")} for e in err.value.errors]
    assert ".".join(map(str, loc)) in str(err.value)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"null", b'{"a": "\\ud800"}', b"\xff\xfe"])
def test_bodies_that_are_not_a_json_object_are_payload_errors(body):
    with pytest.raises(PayloadError):
        payloads.parse_payload(body)


def test_the_json_schema_offers_the_three_formats():
    schema = payloads.payload_json_schema()
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in schema["oneOf"]] == [
        "AlertmanagerPayload", "GrafanaPayload", "ProjectAlert"]
    assert schema["$defs"]["AlertLabels"]["required"] == ["model"]


# --- text from alerts is made safe -------------------------------------------------------------------

BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
        "\u200e", "\u200f", "\u061c"]
CONTROLS = ["\x00", "\x07", "\x08", "\x1b", "\x7f", "\x80", "\x9b", "\x9f"]
BREAKS = ["\n", "\r", "\r\n", "\t", "\v", "\f", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", BIDI + CONTROLS)
def test_clean_text_removes_control_and_bidirectional_formatting_characters(char):
    assert payloads.clean_text(f"annual{char}_income") == "annual_income"


@pytest.mark.parametrize("brk", BREAKS)
def test_clean_text_turns_line_breaks_into_one_space_so_no_log_line_can_be_forged(brk):
    assert payloads.clean_text(f"drifted{brk}INFO - granted admin") == "drifted INFO - granted admin"


def test_clean_text_caps_the_length_and_keeps_other_text():
    assert payloads.clean_text("x" * 5000) == "x" * 1023 + "…"
    assert payloads.clean_text("abcdef", 4) == "abc…"
    assert payloads.clean_text("  Ünïcödé – 漂移 😀 ") == "Ünïcödé – 漂移 😀"


def test_every_text_of_an_alertmanager_alert_is_cleaned_and_capped():
    evil = "drift\u202eevil\x1b[31m\nERROR fake line"
    raw = am_alert(labels={"alertname": "FeatureDrift", "model": "credit_approval", f"team{chr(0x2066)}": evil},
                   annotations={"summary": evil, "description": "d" * 3000, "k\rey": evil},
                   generatorURL="http://prometheus:9090/graph?\u202eq=1\n")
    (alert,) = parse(alertmanager(raw))
    clean = "driftevil[31m ERROR fake line"
    assert alert.summary == clean
    assert alert.labels["team"] == clean
    assert alert.annotations["k ey"] == clean
    assert alert.annotations["description"] == "d" * 1023 + "…"
    assert alert.generator_url == "http://prometheus:9090/graph?q=1"
    dumped = json.dumps(drift_alerts.group_by_model([alert])[0].to_conf(), ensure_ascii=False)
    for char in BIDI + CONTROLS + ["\\n", "\\r", "\\u001b"]:
        assert char not in dumped


def test_grafana_titles_and_project_text_are_cleaned_too():
    (grafana_alert,) = parse(grafana(am_alert(annotations={})) | {"title": "[FIRING:1]\n\u2067FeatureDrift"})
    assert grafana_alert.summary == "[FIRING:1] FeatureDrift"
    (project,) = parse({"model": "credit_approval", "alert_id": "a-1", "status": "firing",
                        "summary": "3\u202e features\r\n", "features": ["inc\u200fome", "a\tb"],
                        "labels": {"x\x00": "y\x9b"}})
    assert (project.summary, project.features) == ("3 features", ["income", "a b"])
    assert project.labels == {"x": "y", "model": "credit_approval"}


@pytest.mark.parametrize(("payload", "loc"), [
    (alertmanager(am_alert(fingerprint="a1b2\u202ec3")), ["alerts", 0, "fingerprint"]),
    (alertmanager(am_alert(fingerprint="a1b2\nc3")), ["alerts", 0, "fingerprint"]),
    ({"model": "credit_approval", "alert_id": "evidently\x1b-1", "status": "firing"}, ["alert_id"]),
    ({"model": "credit_approval", "alert_id": "evidently\u2066-1", "status": "firing"}, ["alert_id"]),
])
def test_identities_with_control_or_bidi_characters_are_refused_naming_the_field(payload, loc):
    with pytest.raises(PayloadError) as err:
        payloads.parse_payload(json.dumps(payload).encode())
    assert any(e["loc"] == loc and "control characters" in e["msg"] for e in err.value.errors)


def test_field_names_quoted_in_a_payload_error_are_cleaned():
    body = {"model": "credit_approval", "alert_id": "a", "status": "firing", "x\n\u202eINFO forged": 1}
    with pytest.raises(PayloadError) as err:
        payloads.parse_payload(json.dumps(body).encode())
    assert err.value.errors[0]["loc"] == ["x INFO forged"]
    assert "\n" not in str(err.value) and "\u202e" not in str(err.value)
