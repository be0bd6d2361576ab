"""Drift webhook library: signatures, the three payload formats, alert identities and run ids, which
alerts mean drift, one run per model, and alert text made safe to show."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import subprocess

import pytest

from include.inbound import webhook
from include.inbound.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, PayloadError, SignatureError

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
    assert webhook.verify(SECRET, str(NOW), webhook.sign(SECRET, NOW, BODY), BODY, now=NOW + skew) == NOW


def test_a_custom_tolerance_widens_and_narrows_the_window():
    signature = webhook.sign(SECRET, NOW, BODY)
    assert webhook.verify(SECRET, str(NOW), signature, BODY, now=NOW + 900, tolerance_s=900) == NOW
    with pytest.raises(SignatureError) as err:
        webhook.verify(SECRET, str(NOW), signature, BODY, now=NOW + 11, tolerance_s=10)
    assert err.value.reason == "stale" and "11 s off" in str(err.value) and "tolerance 10 s" in str(err.value)


def test_uppercase_or_mixed_case_hex_and_bytes_secrets_verify_and_return_the_timestamp():
    hexdigest = webhook.sign(SECRET, NOW, BODY).removeprefix("sha256=")
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(hexdigest))
    for secret, signature in [(SECRET.encode(), "sha256=" + hexdigest.upper()), (SECRET, "sha256=" + mixed),
                              (SECRET.encode(), "sha256=" + hexdigest)]:
        assert webhook.verify(secret, str(NOW), signature, BODY, now=NOW) == NOW
    # headers arrive with surrounding blanks from some proxies; the value inside is what counts
    assert webhook.verify(SECRET, f" {NOW} ", f" sha256={hexdigest} ", BODY, now=NOW) == NOW


def test_an_empty_secret_is_a_configuration_error_not_a_pass():
    with pytest.raises(ValueError, match="secret is empty"):
        webhook.verify("", str(NOW), webhook.sign("", NOW, BODY), BODY, now=NOW)


def _flip(hexdigest: str, index: int) -> str:
    """``hexdigest`` with the hex digit at ``index`` replaced by another one (same case)."""
    digit = hexdigest[index]
    other = "0" if digit.lower() != "0" else "1"
    return hexdigest[:index] + other + hexdigest[index + 1:]


@pytest.mark.parametrize("index", [0, 1, 31, 32, 62, 63])
@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_a_signature_differing_in_any_one_hex_digit_is_a_mismatch_in_either_case(index, case):
    hexdigest = webhook.sign(SECRET, NOW, BODY).removeprefix("sha256=")
    assert webhook.verify(SECRET, str(NOW), "sha256=" + case(hexdigest), BODY, now=NOW) == NOW
    with pytest.raises(SignatureError) as err:
        webhook.verify(SECRET, str(NOW), "sha256=" + case(_flip(hexdigest, index)), BODY, now=NOW)
    assert err.value.reason == "mismatch"
    assert SIGNATURE_HEADER in str(err.value) and hexdigest not in str(err.value).lower()  # the MAC is not leaked


def test_every_single_digit_change_of_the_signature_is_refused():
    hexdigest = webhook.sign(SECRET, NOW, BODY).removeprefix("sha256=")
    for index in range(len(hexdigest)):
        with pytest.raises(SignatureError) as err:
            webhook.verify(SECRET, str(NOW), "sha256=" + _flip(hexdigest, index), BODY, now=NOW)
        assert err.value.reason == "mismatch", index


@pytest.mark.parametrize("mangle", [
    lambda h: h,  # no prefix at all
    lambda h: "SHA256=" + h,  # the scheme is lower case, as documented
    lambda h: "sha256:" + h,
    lambda h: "sha256= " + h,
    lambda h: "sha256=" + h[:-1],  # 63 digits
    lambda h: "sha256=" + h + "0",  # 65 digits
    lambda h: "sha256=" + h[:-1] + "g",  # not hex
    lambda h: "sha256=" + h + ",sha256=" + h,
], ids=["bare-hex", "upper-scheme", "colon", "space", "short", "long", "non-hex", "two-signatures"])
def test_a_correct_mac_in_the_wrong_form_is_malformed(mangle):
    hexdigest = webhook.sign(SECRET, NOW, BODY).removeprefix("sha256=")
    with pytest.raises(SignatureError) as err:
        webhook.verify(SECRET, str(NOW), mangle(hexdigest), BODY, now=NOW)
    assert err.value.reason == "malformed"
    assert "must be 'sha256=' followed by 64 hex digits" in str(err.value)


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
    (group,) = webhook.group_by_model([alert])
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


# --- text from alerts is made safe -------------------------------------------------------------------

BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
        "\u200e", "\u200f", "\u061c"]
CONTROLS = ["\x00", "\x07", "\x08", "\x1b", "\x7f", "\x80", "\x9b", "\x9f"]
BREAKS = ["\n", "\r", "\r\n", "\t", "\v", "\f", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", BIDI + CONTROLS)
def test_clean_text_removes_control_and_bidirectional_formatting_characters(char):
    assert webhook.clean_text(f"annual{char}_income") == "annual_income"


@pytest.mark.parametrize("brk", BREAKS)
def test_clean_text_turns_line_breaks_into_one_space_so_no_log_line_can_be_forged(brk):
    assert webhook.clean_text(f"drifted{brk}INFO - granted admin") == "drifted INFO - granted admin"


def test_clean_text_caps_the_length_and_keeps_other_text():
    assert webhook.clean_text("x" * 5000) == "x" * 1023 + "…"
    assert webhook.clean_text("abcdef", 4) == "abc…"
    assert webhook.clean_text("  Ünïcödé – 漂移 😀 ") == "Ünïcödé – 漂移 😀"


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
    dumped = json.dumps(webhook.group_by_model([alert])[0].to_conf(), ensure_ascii=False)
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
        webhook.parse_payload(json.dumps(payload).encode())
    assert any(e["loc"] == loc and "control characters" in e["msg"] for e in err.value.errors)


def test_field_names_quoted_in_a_payload_error_are_cleaned():
    body = {"model": "credit_approval", "alert_id": "a", "status": "firing", "x\n\u202eINFO forged": 1}
    with pytest.raises(PayloadError) as err:
        webhook.parse_payload(json.dumps(body).encode())
    assert err.value.errors[0]["loc"] == ["x INFO forged"]
    assert "\n" not in str(err.value) and "\u202e" not in str(err.value)


# --- only drift starts retraining ----------------------------------------------------------------------


def named(name: str, fingerprint: str = "f1", **extra) -> dict:
    raw = am_alert(fingerprint, **extra)
    raw["labels"] = {**raw["labels"], "alertname": name}
    return raw


@pytest.mark.parametrize(("name", "says"), [
    ("DatasourceNoData", "returned no data"),
    ("DatasourceError", "query failed"),
    ("Watchdog", "heartbeat"),
    ("InfoInhibitor", "inhibits"),
])
def test_alerts_that_are_not_about_drift_are_ignored_with_the_reason(name, says):
    drift, ignored = webhook.triage(parse(grafana(named(name), named("FeatureDrift", "f2"))))
    assert [a.identity.split("@")[0] for a in drift] == ["f2"]
    (only,) = ignored
    assert only.alert.model == "credit_approval"  # Grafana copies the rule's labels: the model is there
    assert only.reason.startswith(f"not a drift alert: {name} is") and says in only.reason


@pytest.mark.parametrize("reason", ["NoData", "Error", "NoData, KeepLast", "Error, KeepLast"])
def test_an_alert_grafana_fired_because_of_no_data_or_an_error_is_ignored(reason):
    raw = am_alert(annotations={"summary": "annual_income drifted", "grafana_state_reason": reason})
    drift, (ignored,) = webhook.triage(parse(grafana(raw)))
    assert drift == []
    assert ignored.reason.startswith(f"not a drift alert: grafana_state_reason is {reason}")


@pytest.mark.parametrize("reason", ["", "Updated", "MissingSeries"])
def test_other_grafana_state_reasons_do_not_hide_a_firing_drift_alert(reason):
    drift, ignored = webhook.triage(parse(grafana(am_alert(annotations={"grafana_state_reason": reason}))))
    assert len(drift) == 1 and ignored == []


def test_resolved_alerts_are_ignored_as_resolved():
    drift, (ignored,) = webhook.triage(parse(alertmanager(am_alert(status="resolved"))))
    assert drift == [] and ignored.reason == "resolved"


def test_the_ignored_alertnames_are_configurable():
    alerts = parse(alertmanager(named("DatasourceNoData", "f1"), named("Heartbeat", "f2")))
    drift, ignored = webhook.triage(alerts, ignored_alertnames=["Heartbeat"])
    assert [a.alertname for a in drift] == ["DatasourceNoData"]
    assert ignored[0].reason == "not a drift alert: Heartbeat is in the ignored alertnames"
    assert len(webhook.triage(alerts, ignored_alertnames=[])[0]) == 2


def test_a_list_of_drift_alertnames_keeps_every_other_alertmanager_alert_out():
    alerts = parse(alertmanager(named("FeatureDrift", "f1"), named("HighLatency", "f2")))
    project = parse({"model": "credit_approval", "alert_id": "e-1", "status": "firing"})
    drift, ignored = webhook.triage([*alerts, *project], alertnames=["FeatureDrift"])
    assert [a.identity.split("@")[0] for a in drift] == ["f1", "e-1"]  # the project format is drift by definition
    assert ignored[0].reason == "not a drift alert: alertname HighLatency is not one of the drift alertnames"


# --- one retraining run per model --------------------------------------------------------------------------


def test_the_firing_alerts_of_one_model_form_one_group_per_model():
    alerts = parse(alertmanager(am_alert("01"), am_alert("02", model="churn"), am_alert("03")))
    groups = webhook.group_by_model(alerts)
    assert [(g.model, g.dag_id, [i.split("@")[0] for i in g.identities]) for g in groups] == [
        ("credit_approval", "train_credit_approval", ["01", "03"]), ("churn", "train_churn", ["02"])]


def test_a_group_run_id_follows_the_set_of_identities():
    a, b, c = parse(alertmanager(am_alert("01"), am_alert("02"), am_alert("03")))
    ab = webhook.RetrainGroup((a, b))
    assert ab.run_id == webhook.RetrainGroup((b, a)).run_id == webhook.group_run_id("grafana", [b.identity, a.identity])
    assert len({ab.run_id, webhook.RetrainGroup((a, b, c)).run_id, a.run_id, b.run_id}) == 4
    assert webhook.RetrainGroup((a,)).run_id == a.run_id
    assert ab.only([b.identity]).identities == (b.identity,)
    with pytest.raises(ValueError, match="at least one"):
        webhook.group_run_id("alertmanager", [])


def test_a_group_is_one_model_and_one_identity_kind():
    a, other = parse(alertmanager(am_alert("01"), am_alert("02", model="churn")))
    (project,) = parse({"model": "credit_approval", "alert_id": "e-1", "status": "firing"})
    for alerts in [(), (a, other), (a, project)]:
        with pytest.raises(ValueError):
            webhook.RetrainGroup(alerts)


def test_the_conf_of_a_group_lists_every_alert():
    a, b = parse(alertmanager(am_alert("01", starts_at="2026-11-22T10:00:00Z"),
                              am_alert("02", starts_at="2026-11-22T09:00:00Z",
                                       annotations={"summary": "region drifted"})))
    project = [webhook.DriftAlert(model="credit_approval", source="project", status="firing", identity=i,
                                  drift_score=s, features=f) for i, s, f in [("p1", 0.2, ["x", "y"]), ("p2", 0.7, ["y", "z"])]]
    conf = webhook.RetrainGroup((a, b)).to_conf()
    assert json.loads(json.dumps(conf)) == conf
    assert conf["identities"] == [a.identity, b.identity] and conf["identity"] == a.identity
    assert conf["starts_at"] == "2026-11-22T09:00:00Z"  # the earliest
    assert conf["summary"] == "2 alerts: annual_income drifted; region drifted"
    assert [e["identity"] for e in conf["alerts"]] == [a.identity, b.identity]
    pconf = webhook.RetrainGroup(tuple(project)).to_conf()
    assert (pconf["drift_score"], pconf["features"]) == (0.7, ["x", "y", "z"])


SKIPS = "skips itself if a version was already trained from that data, code and params."


def test_the_run_note_names_the_source_the_data_and_is_capped():
    (one,) = parse(grafana(am_alert()))
    assert webhook.RetrainGroup((one,)).note("/data/train.parquet") == (
        "Drift alert from grafana: annual_income drifted — Trains on `/data/train.parquet` (the DAG's default "
        f"dataset_uri: the alert names none); {SKIPS}")
    many = parse(alertmanager(*(am_alert(f"{i:02}", annotations={"summary": f"feature_{i} drifted " + "x" * 80})
                                for i in range(20))))
    note = webhook.RetrainGroup(tuple(many)).note("/data/train.parquet")
    assert note.startswith("20 drift alerts from alertmanager: feature_0 drifted")
    assert len(note) == webhook.NOTE_LIMIT and "…" in note
    assert note.endswith(f"… — Trains on `/data/train.parquet` (the DAG's default dataset_uri: the alert names none); "
                         f"{SKIPS}")  # the summaries are cut, never the data


# --- which data a run trains on ----------------------------------------------------------------------

S3 = "s3://features/credit_approval/snapshot=2026-11-22T10"


def project(alert_id: str = "e-1", **extra) -> dict:
    return {"model": "credit_approval", "alert_id": alert_id, "status": "firing", **extra}


def test_an_alert_names_its_data_in_each_format():
    (p,) = parse(project(dataset_uri=S3))
    (annotated,) = parse(alertmanager(am_alert(annotations={"summary": "drift", "dataset_uri": S3})))
    labelled = am_alert()
    labelled["labels"]["dataset_uri"] = S3
    (label,) = parse(grafana(labelled))
    both = am_alert(annotations={"dataset_uri": S3})
    both["labels"]["dataset_uri"] = S3
    (same,) = parse(alertmanager(both))
    (none,) = parse(alertmanager(am_alert()))
    assert [a.dataset_uri for a in (p, annotated, label, same, none)] == [S3, S3, S3, S3, None]
    assert label.labels["dataset_uri"] == S3 and "dataset_uri" not in none.labels


@pytest.mark.parametrize("value", ["/data/credit approval/2026-11-22.parquet", "data/train.csv",
                                   "file:///data/train.parquet", S3, "gs://bucket/key", "C:\\data\\x.parquet"])
def test_paths_and_uris_are_accepted(value):
    (alert,) = parse(project(dataset_uri=f"  {value} "))
    assert alert.dataset_uri == value  # the ends are stripped, nothing else changes


BAD_URIS = [
    ("", "at least 1 character|must not be empty"),
    ("   ", "must not be empty"),
    ("s3://b/" + "k" * 600, "at most 512 characters"),
    ("/data/x.parquet\nINFO forged", "control characters"),
    ("/data/x\u202e.parquet", "bidirectional"),
    ("/data/x\x00.parquet", "control characters"),
    ("${AIRFLOW_CONN_SLACK_DEFAULT}/x.parquet", r"must not contain \$\{\.\.\.\}"),
    ("s3://${BUCKET:-b}/k", r"must not contain \$\{\.\.\.\}"),
    ("://bucket/key", "must be a local path or a URI"),
    ("1s3://bucket/key", "must be a local path or a URI"),
    ("s3://", "names no location after s3://"),
]


@pytest.mark.parametrize(("value", "says"), BAD_URIS)
def test_a_dataset_uri_that_is_not_a_path_or_uri_is_refused_naming_the_field(value, says):
    with pytest.raises(PayloadError) as err:
        webhook.parse_payload(json.dumps(project(dataset_uri=value)).encode())
    assert [e["loc"] for e in err.value.errors] == [["dataset_uri"]] and re.search(says, str(err.value))

    labelled = am_alert()
    labelled["labels"]["dataset_uri"] = value
    annotated = am_alert(annotations={"dataset_uri": value})
    for payload, loc, prefix in [(alertmanager(labelled), ["alerts", 0, "labels", "dataset_uri"], ""),
                                 (grafana(annotated), ["alerts", 0, "annotations"], "annotation dataset_uri: ")]:
        with pytest.raises(PayloadError) as err:
            webhook.parse_payload(json.dumps(payload).encode())
        (error,) = err.value.errors
        assert error["loc"] == loc and re.search(says, error["msg"])
        assert prefix in error["msg"] and "\n" not in str(err.value) and "\u202e" not in str(err.value)


def test_a_label_and_an_annotation_naming_different_data_are_refused():
    raw = am_alert(annotations={"dataset_uri": S3})
    raw["labels"]["dataset_uri"] = "/data/old.parquet"
    with pytest.raises(PayloadError) as err:
        webhook.parse_payload(json.dumps(alertmanager(raw)).encode())
    (error,) = err.value.errors
    assert error["loc"] == ["alerts", 0]
    assert "label dataset_uri ('/data/old.parquet') and annotation dataset_uri" in error["msg"] and S3 in error["msg"]


def test_a_group_trains_on_the_data_its_alerts_name():
    a, b, c = parse(alertmanager(am_alert("01"), am_alert("02", annotations={"dataset_uri": S3}),
                                 am_alert("03", annotations={"dataset_uri": S3})))
    group = webhook.RetrainGroup((a, b, c))
    assert group.dataset_uri == S3  # alerts that name none go with the one that does
    conf = group.run_conf()
    assert conf["dataset_uri"] == conf["alert"]["dataset_uri"] == S3
    assert [e["dataset_uri"] for e in conf["alert"]["alerts"]] == [None, S3, S3]
    assert group.note("/data/default.parquet").endswith(
        f"— Trains on `{S3}` (the alert's dataset_uri); {SKIPS}")

    plain = webhook.RetrainGroup((a,))
    assert plain.dataset_uri is None and plain.run_conf() == {"alert": plain.to_conf()}
    assert plain.to_conf()["dataset_uri"] is None


def test_alerts_of_one_model_naming_different_data_cannot_share_a_run():
    a, b, c = parse(alertmanager(am_alert("01", annotations={"dataset_uri": S3}), am_alert("02"),
                                 am_alert("03", annotations={"dataset_uri": "/data/other.parquet"})))
    group = webhook.RetrainGroup((a, b, c))
    for build in (lambda: group.dataset_uri, group.run_conf, group.to_conf, lambda: group.note("/d")):
        with pytest.raises(webhook.DatasetUriConflict) as err:
            build()
        assert err.value.uris == {S3: [a.identity], "/data/other.parquet": [c.identity]}
        assert (f"name 2 different dataset_uris: '{S3}' (alert {a.identity}); '/data/other.parquet' "
                f"(alert {c.identity})") in str(err.value)
    assert group.only([a.identity, b.identity]).dataset_uri == S3


def test_the_data_note_quotes_the_uri_as_code_whatever_it_holds():
    assert webhook.data_note("/data/a_b*c.parquet", from_alert=True) == (
        f"Trains on `/data/a_b*c.parquet` (the alert's dataset_uri); {SKIPS}")
    assert webhook.data_note("/data/`x``.parquet", from_alert=True).startswith("Trains on ```/data/`x``.parquet``` ")
    assert webhook.data_note("`x", from_alert=True).startswith("Trains on `` `x `` ")
    assert webhook.data_note(None, from_alert=False) == (
        f"Trains on the DAG's default dataset_uri (the alert names none); {SKIPS}")


def test_a_long_uri_and_long_summaries_keep_the_note_within_the_limit():
    uri = "s3://b/" + "k" * (webhook.DATASET_URI_LIMIT - 7)
    alerts = parse(alertmanager(*(am_alert(f"{i:02}", annotations={"summary": "s" * 500, "dataset_uri": uri})
                                  for i in range(5))))
    note = webhook.RetrainGroup(tuple(alerts)).note()
    assert len(note) <= webhook.NOTE_LIMIT and f"`{uri}`" in note


def test_the_json_schema_documents_dataset_uri():
    defs = webhook.payload_json_schema()["$defs"]
    field = defs["ProjectAlert"]["properties"]["dataset_uri"]
    assert {"type": "string", "maxLength": 512, "minLength": 1} in field["anyOf"]
    assert "dataset_uri" in defs["AlertLabels"]["properties"]
    assert "dataset_uri" in defs["AlertmanagerAlert"]["properties"]["annotations"]["description"]
