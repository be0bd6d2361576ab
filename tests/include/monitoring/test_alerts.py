"""Alerts as data, as a log line, and as a Slack Block Kit message within Slack's limits."""

from __future__ import annotations

import json
import logging

import pytest

from include.monitoring.alerts import MAX_BLOCKS, Alert, send, slack_message
from include.monitoring.findings import Finding
from tests.fakes.slack import validate_blocks

RUN_URL = "http://airflow.example.com/dags/monitor_credit_approval/runs/scheduled__2026-11-22T10%3A00%3A00%2B00%3A00"


def _critical() -> Alert:
    return Alert(
        level="critical", model="credit_approval", version="7", title="Drift and approval-rate drop",
        findings=(
            Finding("data_drift", 0.5556, 0.5, "5 of 9 features drifted: age, income, credit_score, debt_ratio, term"),
            Finding("kpi.approval_rate", 0.41, 0.55, "approved share 0.41 vs baseline 0.63 (max drop 0.08)"),
        ),
        actions=("rollback started: rollback_credit_approval/monitor__7", "retraining started: train_credit_approval/x"),
        links={"Airflow run": RUN_URL, "MLflow version": "http://mlflow.example.com/#/models/credit_approval/versions/7",
               "Evidently report": "http://mlflow.example.com/get-artifact?path=drift.html"},
    )


def test_block_kit_message_says_what_crossed_which_threshold_and_what_was_done():
    message = slack_message(_critical())

    assert set(message) == {"text", "blocks"}
    assert message["text"].startswith("[CRITICAL] credit_approval v7: Drift and approval-rate drop; data_drift 0.5556")
    header, fields, drift, kpi, actions, links = message["blocks"]
    assert header == {"type": "header", "text": {
        "type": "plain_text", "text": ":rotating_light: CRITICAL · credit_approval: Drift and approval-rate drop",
        "emoji": True}}
    assert fields == {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Model*\ncredit_approval"},
                                                    {"type": "mrkdwn", "text": "*Version*\n7"}]}
    assert drift["text"]["text"] == ("*data_drift*: value *0.5556* ≥ threshold 0.5\n"
                                     "5 of 9 features drifted: age, income, credit_score, debt_ratio, term")
    assert kpi["text"]["text"].startswith("*kpi.approval_rate*: value *0.41* &lt; threshold 0.55\napproved share")
    assert actions["text"]["text"] == ("*Actions taken*\n• rollback started: rollback_credit_approval/monitor__7\n"
                                       "• retraining started: train_credit_approval/x")
    assert links["type"] == "actions"
    assert [(b["type"], b["text"]["text"], b["url"]) for b in links["elements"]] == [
        ("button", label, url) for label, url in _critical().links.items()]
    validate_blocks(message["blocks"])


def test_warning_without_version_actions_or_links_and_a_channel():
    alert = Alert("warning", "credit_approval", None, "Data drift", (Finding("data_drift", 0.33, 0.3),))
    message = slack_message(alert, channel="#ml-alerts")

    assert message["channel"] == "#ml-alerts"
    assert message["blocks"][0]["text"]["text"] == ":warning: WARNING · credit_approval: Data drift"
    assert message["blocks"][1]["fields"][1]["text"] == "*Version*\nnone"
    assert [b["type"] for b in message["blocks"]] == ["header", "section", "section"]


def test_user_text_cannot_become_slack_markup():
    alert = Alert("info", "m", "1", "t", (Finding("x<y", 1, 2, "see <http://evil|here> & more"),),
                  summary="<!channel> look")
    blocks = slack_message(alert)["blocks"]
    assert blocks[2]["text"]["text"] == "&lt;!channel&gt; look"
    assert blocks[3]["text"]["text"] == ("*x&lt;y*: value *1* &lt; threshold 2\n"
                                         "see &lt;http://evil|here&gt; &amp; more")


def test_texts_and_block_count_are_cut_to_slack_limits():
    alert = Alert(
        level="warning", model="credit_approval", version="3", title="T" * 400,
        findings=tuple(Finding(f"feature_{i}", i, 0.5, "d" * 5000) for i in range(120)),
        actions=tuple("a" * 100 for _ in range(60)),
        links={**{f"link {i} " + "L" * 100: f"http://example.com/{i}" for i in range(30)}, "bad": "ftp://x"},
    )
    blocks = slack_message(alert)["blocks"]

    validate_blocks(blocks)  # the fake Slack's own check of the limits
    assert len(blocks) == MAX_BLOCKS
    assert len(blocks[0]["text"]["text"]) == 150 and blocks[0]["text"]["text"].endswith("…")
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert all(len(text) <= 3000 for text in sections)
    assert sections[0].endswith("…")  # a condition's long detail
    overflow = next(text for text in sections if text.startswith("… and "))
    shown = sum(text.startswith("*feature_") for text in sections)
    assert overflow.startswith(f"… and {120 - shown} more conditions: feature_{shown}, ")
    assert sections[-1].startswith("*Actions taken*\n") and sections[-1].endswith("…")
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert len(buttons) == 30 and all(len(b["text"]["text"]) <= 75 for b in buttons)  # the ftp link is left out
    assert [len(b["elements"]) for b in blocks if b["type"] == "actions"] == [25, 5]


def test_a_block_past_slacks_limits_is_refused_not_sent(monkeypatch):
    """The blocks are slack_sdk's models: without the cutting, a long title fails to render instead of
    being posted and refused by Slack."""
    from slack_sdk.errors import SlackObjectFormationError

    from include.monitoring import alerts

    long_title = Alert("warning", "credit_approval", "3", "T" * 400)
    monkeypatch.setattr(alerts, "_truncate", lambda text, limit: text)

    with pytest.raises(SlackObjectFormationError, match="text attribute cannot exceed 150 characters"):
        slack_message(long_title)
    assert slack_message(Alert("warning", "credit_approval", "3", "T" * 100))["blocks"][0]["text"]["text"].endswith("T")


def test_a_bad_level_is_named():
    with pytest.raises(ValueError, match="unknown alert level 'urgent'; expected one of info, warning, critical"):
        Alert("urgent", "credit_approval", "1", "x")
    with pytest.raises(ValueError, match="'urgent'"):
        send("urgent", "x")


@pytest.mark.parametrize("kwargs, message", [
    ({"model": ""}, "alert model"),
    ({"title": ""}, "alert title"),
    ({"findings": ({"name": "x"},)}, r"alert findings\[0\]: expected a Finding"),
    ({"actions": "rollback"}, "alert actions"),
])
def test_bad_fields_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Alert(**{"level": "info", "model": "m", "version": None, "title": "t", **kwargs})


def test_as_dict_is_json_ready_and_send_logs_it(caplog):
    alert = _critical()
    record = json.loads(json.dumps(alert.as_dict()))
    assert record["findings"][0] == {"name": "data_drift", "value": 0.5556, "threshold": 0.5,
                                     "detail": alert.findings[0].detail}
    assert record["links"]["Airflow run"] == RUN_URL

    with caplog.at_level(logging.INFO, logger="modelops.alerts"):
        assert send(alert) == alert.as_dict()
        assert send("warning", "drifted", model="m", version=None) == {"level": "warning", "message": "drifted",
                                                                        "model": "m"}
    critical, warning = caplog.records
    assert critical.levelno == logging.ERROR and json.loads(critical.getMessage().removeprefix("ALERT ")) == record
    assert warning.levelno == logging.WARNING and '"message": "drifted"' in warning.getMessage()


# --- retraining skipped ------------------------------------------------------------------------------

FINGERPRINT = "sha256:" + "ab" * 32
GRAFANA_ALERT = {"source": "grafana", "model": "credit_approval", "identity": "c6eadffa33fcdf37@2026-11-22T10:00:00+00:00",
                 "identities": ["c6eadffa33fcdf37@2026-11-22T10:00:00+00:00", "d1@2026-11-22T10:05:00+00:00"],
                 "summary": "2 alerts: annual_income drifted; region drifted",
                 "labels": {"alertname": "FeatureDrift", "model": "credit_approval"}, "dataset_uri": None}


def _skipped(trigger: dict, **kwargs) -> Alert:
    from include.monitoring.alerts import retraining_skipped

    return retraining_skipped(**{
        "model": "credit_approval", "version": "3", "trigger": trigger, "dataset_uri": "/data/train.parquet",
        "data_fingerprint": FINGERPRINT, "dag_id": "train_credit_approval", "run_id": "drift_webhook__0123",
        "links": {"Airflow run": RUN_URL}, **kwargs})


def test_a_skipped_retraining_names_the_alert_the_data_the_version_and_how_to_point_at_new_data():
    alert = _skipped(GRAFANA_ALERT)
    assert (alert.level, alert.version, alert.title) == ("warning", "3", "retraining skipped: the data was already trained on")
    skipped, started, data, how, force = alert.summary.split("\n")
    assert skipped == ("Run `drift_webhook__0123` of `train_credit_approval` trained nothing: version 3 was already "
                       "trained from the same data, code and params.")
    assert started == ("Started by: drift alert FeatureDrift from grafana (2 alerts, first "
                       "c6eadffa33fcdf37@2026-11-22T10:00:00+00:00): 2 alerts: annual_income drifted; region drifted")
    assert data == f"Data: `/data/train.parquet` (fingerprint `{FINGERPRINT}`)."
    assert how.startswith("The alert named no data, so the run read the model's default `dataset.uri`")
    assert "annotation `dataset_uri` (Alertmanager, Grafana) or field `dataset_uri` (project format)" in how
    assert "config/models/credit_approval.yaml pointed at the feature pipeline's latest snapshot" in how
    assert force == "To retrain on this data anyway, trigger `train_credit_approval` with `force=true`."
    assert alert.actions == ("nothing retrained: train_credit_approval run drift_webhook__0123 skipped; "
                             "version 3 is unchanged",)

    message = slack_message(alert)
    header, fields, summary, actions, links = message["blocks"]
    assert header["text"]["text"] == ":warning: WARNING · credit_approval: retraining skipped: the data was already trained on"
    assert [f["text"] for f in fields["fields"]] == ["*Model*\ncredit_approval", "*Version*\n3"]
    assert summary["text"]["text"] == alert.summary
    assert links["elements"][0]["url"] == RUN_URL
    validate_blocks(message["blocks"])


def test_an_alert_that_named_the_data_is_told_to_name_the_new_snapshot():
    trigger = {"source": "project", "identity": "evidently-2026-11-22T10", "identities": ["evidently-2026-11-22T10"],
               "summary": "3 of 9 features drifted", "dataset_uri": "s3://features/snap=1"}
    alert = _skipped(trigger, dataset_uri="s3://features/snap=1", trained_from="s3://features/snap=0")
    _, started, data, how, _ = alert.summary.split("\n")
    assert started == "Started by: drift alert from project (evidently-2026-11-22T10): 3 of 9 features drifted"
    assert data == (f"Data: `s3://features/snap=1` (fingerprint `{FINGERPRINT}`); version 3 was trained from "
                    "`s3://features/snap=0`, with the same content.")
    assert how.startswith("The alert named this data in its `dataset_uri`, and it has not changed since: point the "
                          "alert at the new snapshot")


def test_a_monitoring_retrain_is_told_to_keep_the_configured_data_current():
    trigger = {"source": "monitoring", "model": "credit_approval", "version": "3", "hour": "2026-11-22T10:00:00+00:00",
               "reason": "monitoring 2026-11-22 10:00 UTC: drift 0.6 >= 0.5", "monitor_run_id": "scheduled__2026-11-22T11"}
    _, started, _, how, _ = _skipped(trigger).summary.split("\n")
    assert started == ("Started by: monitoring alert (run scheduled__2026-11-22T11, version 3): monitoring 2026-11-22 "
                       "10:00 UTC: drift 0.6 >= 0.5")
    assert how.startswith("The run read the model's default `dataset.uri`, which holds data already trained on: keep "
                          "`dataset.uri` in config/models/credit_approval.yaml pointed at")


def test_a_hand_written_alert_param_is_described_safely():
    from include.monitoring.alerts import describe_trigger

    assert describe_trigger({}) == "alert from unknown source"
    assert describe_trigger({"source": "pagerduty", "summary": ["x"]}) == "alert from pagerduty"
    evil = describe_trigger({"source": "grafana", "labels": "FeatureDrift", "identities": "x",
                             "summary": "line\n<!channel>\u202e" + "s" * 1000})
    assert evil.startswith("drift alert from grafana: line <!channel>ss") and len(evil) < 400
    assert "\n" not in evil and "\u202e" not in evil
    message = slack_message(_skipped({"source": "grafana", "summary": "<!channel> now"}))
    assert "&lt;!channel&gt; now" in message["blocks"][2]["text"]["text"]
