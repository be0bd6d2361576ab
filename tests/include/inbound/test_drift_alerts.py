"""Which alerts mean drift, and one retraining run per model with a run id that follows the alerts."""

from __future__ import annotations

import json
import re

import pytest

from include.inbound import drift_alerts, payloads
from include.inbound.payloads import PayloadError
from tests.include.inbound.alert_payloads import alertmanager, am_alert, grafana, parse

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
    drift, ignored = drift_alerts.triage(parse(grafana(named(name), named("FeatureDrift", "f2"))))
    assert [a.identity.split("@")[0] for a in drift] == ["f2"]
    (only,) = ignored
    assert only.alert.model == "credit_approval"  # Grafana copies the rule's labels: the model is there
    assert only.reason.startswith(f"not a drift alert: {name} is") and says in only.reason


@pytest.mark.parametrize("reason", ["NoData", "Error", "NoData, KeepLast", "Error, KeepLast"])
def test_an_alert_grafana_fired_because_of_no_data_or_an_error_is_ignored(reason):
    raw = am_alert(annotations={"summary": "annual_income drifted", "grafana_state_reason": reason})
    drift, (ignored,) = drift_alerts.triage(parse(grafana(raw)))
    assert drift == []
    assert ignored.reason.startswith(f"not a drift alert: grafana_state_reason is {reason}")


@pytest.mark.parametrize("reason", ["", "Updated", "MissingSeries"])
def test_other_grafana_state_reasons_do_not_hide_a_firing_drift_alert(reason):
    drift, ignored = drift_alerts.triage(parse(grafana(am_alert(annotations={"grafana_state_reason": reason}))))
    assert len(drift) == 1 and ignored == []


def test_resolved_alerts_are_ignored_as_resolved():
    drift, (ignored,) = drift_alerts.triage(parse(alertmanager(am_alert(status="resolved"))))
    assert drift == [] and ignored.reason == "resolved"


def test_the_ignored_alertnames_are_configurable():
    alerts = parse(alertmanager(named("DatasourceNoData", "f1"), named("Heartbeat", "f2")))
    drift, ignored = drift_alerts.triage(alerts, ignored_alertnames=["Heartbeat"])
    assert [a.alertname for a in drift] == ["DatasourceNoData"]
    assert ignored[0].reason == "not a drift alert: Heartbeat is in the ignored alertnames"
    assert len(drift_alerts.triage(alerts, ignored_alertnames=[])[0]) == 2


def test_a_list_of_drift_alertnames_keeps_every_other_alertmanager_alert_out():
    alerts = parse(alertmanager(named("FeatureDrift", "f1"), named("HighLatency", "f2")))
    project = parse({"model": "credit_approval", "alert_id": "e-1", "status": "firing"})
    drift, ignored = drift_alerts.triage([*alerts, *project], alertnames=["FeatureDrift"])
    assert [a.identity.split("@")[0] for a in drift] == ["f1", "e-1"]  # the project format is drift by definition
    assert ignored[0].reason == "not a drift alert: alertname HighLatency is not one of the drift alertnames"


# --- one retraining run per model --------------------------------------------------------------------------


def test_the_firing_alerts_of_one_model_form_one_group_per_model():
    alerts = parse(alertmanager(am_alert("01"), am_alert("02", model="churn"), am_alert("03")))
    groups = drift_alerts.group_by_model(alerts)
    assert [(g.model, g.dag_id, [i.split("@")[0] for i in g.identities]) for g in groups] == [
        ("credit_approval", "train_credit_approval", ["01", "03"]), ("churn", "train_churn", ["02"])]


def test_a_group_run_id_follows_the_set_of_identities():
    a, b, c = parse(alertmanager(am_alert("01"), am_alert("02"), am_alert("03")))
    ab = drift_alerts.RetrainGroup((a, b))
    assert ab.run_id == drift_alerts.RetrainGroup((b, a)).run_id == drift_alerts.group_run_id("grafana", [b.identity, a.identity])
    assert len({ab.run_id, drift_alerts.RetrainGroup((a, b, c)).run_id, a.run_id, b.run_id}) == 4
    assert drift_alerts.RetrainGroup((a,)).run_id == a.run_id
    assert ab.only([b.identity]).identities == (b.identity,)
    with pytest.raises(ValueError, match="at least one"):
        drift_alerts.group_run_id("alertmanager", [])


def test_a_group_is_one_model_and_one_identity_kind():
    a, other = parse(alertmanager(am_alert("01"), am_alert("02", model="churn")))
    (project,) = parse({"model": "credit_approval", "alert_id": "e-1", "status": "firing"})
    for alerts in [(), (a, other), (a, project)]:
        with pytest.raises(ValueError):
            drift_alerts.RetrainGroup(alerts)


def test_the_conf_of_a_group_lists_every_alert():
    a, b = parse(alertmanager(am_alert("01", starts_at="2026-11-22T10:00:00Z"),
                              am_alert("02", starts_at="2026-11-22T09:00:00Z",
                                       annotations={"summary": "region drifted"})))
    project = [drift_alerts.DriftAlert(model="credit_approval", source="project", status="firing", identity=i,
                                  drift_score=s, features=f) for i, s, f in [("p1", 0.2, ["x", "y"]), ("p2", 0.7, ["y", "z"])]]
    conf = drift_alerts.RetrainGroup((a, b)).to_conf()
    assert json.loads(json.dumps(conf)) == conf
    assert conf["identities"] == [a.identity, b.identity] and conf["identity"] == a.identity
    assert conf["starts_at"] == "2026-11-22T09:00:00Z"  # the earliest
    assert conf["summary"] == "2 alerts: annual_income drifted; region drifted"
    assert [e["identity"] for e in conf["alerts"]] == [a.identity, b.identity]
    pconf = drift_alerts.RetrainGroup(tuple(project)).to_conf()
    assert (pconf["drift_score"], pconf["features"]) == (0.7, ["x", "y", "z"])


SKIPS = "skips itself if a version was already trained from that data, code and params."


def test_the_run_note_names_the_source_the_data_and_is_capped():
    (one,) = parse(grafana(am_alert()))
    assert drift_alerts.RetrainGroup((one,)).note("/data/train.parquet") == (
        "Drift alert from grafana: annual_income drifted — Trains on `/data/train.parquet` (the DAG's default "
        f"dataset_uri: the alert names none); {SKIPS}")
    many = parse(alertmanager(*(am_alert(f"{i:02}", annotations={"summary": f"feature_{i} drifted " + "x" * 80})
                                for i in range(20))))
    note = drift_alerts.RetrainGroup(tuple(many)).note("/data/train.parquet")
    assert note.startswith("20 drift alerts from alertmanager: feature_0 drifted")
    assert len(note) == payloads.NOTE_LIMIT and "…" in note
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
        payloads.parse_payload(json.dumps(project(dataset_uri=value)).encode())
    assert [e["loc"] for e in err.value.errors] == [["dataset_uri"]] and re.search(says, str(err.value))

    labelled = am_alert()
    labelled["labels"]["dataset_uri"] = value
    annotated = am_alert(annotations={"dataset_uri": value})
    for payload, loc, prefix in [(alertmanager(labelled), ["alerts", 0, "labels", "dataset_uri"], ""),
                                 (grafana(annotated), ["alerts", 0, "annotations"], "annotation dataset_uri: ")]:
        with pytest.raises(PayloadError) as err:
            payloads.parse_payload(json.dumps(payload).encode())
        (error,) = err.value.errors
        assert error["loc"] == loc and re.search(says, error["msg"])
        assert prefix in error["msg"] and "\n" not in str(err.value) and "\u202e" not in str(err.value)


def test_a_label_and_an_annotation_naming_different_data_are_refused():
    raw = am_alert(annotations={"dataset_uri": S3})
    raw["labels"]["dataset_uri"] = "/data/old.parquet"
    with pytest.raises(PayloadError) as err:
        payloads.parse_payload(json.dumps(alertmanager(raw)).encode())
    (error,) = err.value.errors
    assert error["loc"] == ["alerts", 0]
    assert "label dataset_uri ('/data/old.parquet') and annotation dataset_uri" in error["msg"] and S3 in error["msg"]


def test_a_group_trains_on_the_data_its_alerts_name():
    a, b, c = parse(alertmanager(am_alert("01"), am_alert("02", annotations={"dataset_uri": S3}),
                                 am_alert("03", annotations={"dataset_uri": S3})))
    group = drift_alerts.RetrainGroup((a, b, c))
    assert group.dataset_uri == S3  # alerts that name none go with the one that does
    conf = group.run_conf()
    assert conf["dataset_uri"] == conf["alert"]["dataset_uri"] == S3
    assert [e["dataset_uri"] for e in conf["alert"]["alerts"]] == [None, S3, S3]
    assert group.note("/data/default.parquet").endswith(
        f"— Trains on `{S3}` (the alert's dataset_uri); {SKIPS}")

    plain = drift_alerts.RetrainGroup((a,))
    assert plain.dataset_uri is None and plain.run_conf() == {"alert": plain.to_conf()}
    assert plain.to_conf()["dataset_uri"] is None


def test_alerts_of_one_model_naming_different_data_cannot_share_a_run():
    a, b, c = parse(alertmanager(am_alert("01", annotations={"dataset_uri": S3}), am_alert("02"),
                                 am_alert("03", annotations={"dataset_uri": "/data/other.parquet"})))
    group = drift_alerts.RetrainGroup((a, b, c))
    for build in (lambda: group.dataset_uri, group.run_conf, group.to_conf, lambda: group.note("/d")):
        with pytest.raises(drift_alerts.DatasetUriConflict) as err:
            build()
        assert err.value.uris == {S3: [a.identity], "/data/other.parquet": [c.identity]}
        assert (f"name 2 different dataset_uris: '{S3}' (alert {a.identity}); '/data/other.parquet' "
                f"(alert {c.identity})") in str(err.value)
    assert group.only([a.identity, b.identity]).dataset_uri == S3


def test_the_data_note_quotes_the_uri_as_code_whatever_it_holds():
    assert payloads.data_note("/data/a_b*c.parquet", from_alert=True) == (
        f"Trains on `/data/a_b*c.parquet` (the alert's dataset_uri); {SKIPS}")
    assert payloads.data_note("/data/`x``.parquet", from_alert=True).startswith("Trains on ```/data/`x``.parquet``` ")
    assert payloads.data_note("`x", from_alert=True).startswith("Trains on `` `x `` ")
    assert payloads.data_note(None, from_alert=False) == (
        f"Trains on the DAG's default dataset_uri (the alert names none); {SKIPS}")


def test_a_long_uri_and_long_summaries_keep_the_note_within_the_limit():
    uri = "s3://b/" + "k" * (payloads.DATASET_URI_LIMIT - 7)
    alerts = parse(alertmanager(*(am_alert(f"{i:02}", annotations={"summary": "s" * 500, "dataset_uri": uri})
                                  for i in range(5))))
    note = drift_alerts.RetrainGroup(tuple(alerts)).note()
    assert len(note) <= payloads.NOTE_LIMIT and f"`{uri}`" in note


def test_the_json_schema_documents_dataset_uri():
    defs = payloads.payload_json_schema()["$defs"]
    field = defs["ProjectAlert"]["properties"]["dataset_uri"]
    assert {"type": "string", "maxLength": 512, "minLength": 1} in field["anyOf"]
    assert "dataset_uri" in defs["AlertLabels"]["properties"]
    assert "dataset_uri" in defs["AlertmanagerAlert"]["properties"]["annotations"]["description"]
