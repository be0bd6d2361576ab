"""Alert delivery through the Slack provider's real SlackWebhookHook to a Slack-compatible endpoint on loopback."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from airflow.sdk.exceptions import AirflowException

from include.monitoring.alerts import Alert
from include.monitoring.findings import Finding
from modelops.notify import DagFailureNotifier, notify, retraining_skipped
from tests.fakes.slack import FakeSlack

ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit_approval"


def _alert() -> Alert:
    return Alert(
        level="critical", model=MODEL, version="4", title="Drift and approval-rate drop",
        findings=(Finding("data_drift", 0.6, 0.5, "6 of 10 features drifted"),
                  Finding("kpi.approval_rate", 0.12, 0.08, "dropped 0.12 below its baseline")),
        actions=("rollback started: rollback_credit_approval/monitor__1",),
        links={"Airflow run": "http://localhost:8080/dags/monitor_credit_approval/runs/r1"},
    )


def test_posts_the_block_kit_message_through_the_webhook_hook(fake_slack):
    assert notify(_alert()) == "slack"

    (request,) = fake_slack.requests
    assert request.path == fake_slack.path and request.headers["Content-Type"].startswith("application/json")
    assert json.loads(request.body) == fake_slack.messages[0]  # what went over the wire, unchanged
    (message,) = fake_slack.messages
    assert message == {
        "text": ("[CRITICAL] credit_approval v4: Drift and approval-rate drop; data_drift 0.6 (threshold 0.5); "
                 "kpi.approval_rate 0.12 (threshold 0.08); action: rollback started: rollback_credit_approval/monitor__1"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                        "text": ":rotating_light: CRITICAL · credit_approval: Drift and approval-rate drop"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Model*\ncredit_approval"},
                                           {"type": "mrkdwn", "text": "*Version*\n4"}]},
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": "*data_drift*: value *0.6* ≥ threshold 0.5\n6 of 10 features drifted"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": ("*kpi.approval_rate*: value *0.12* ≥ threshold 0.08\n"
                                                                    "dropped 0.12 below its baseline")}},
            {"type": "section", "text": {"type": "mrkdwn", "text": ("*Actions taken*\n"
                                                                    "• rollback started: rollback_credit_approval/monitor__1")}},
            {"type": "actions", "elements": [
                {"type": "button", "action_id": "link_0", "text": {"type": "plain_text", "text": "Airflow run", "emoji": True},
                 "url": "http://localhost:8080/dags/monitor_credit_approval/runs/r1"}]},
        ],
    }
    assert "channel" not in message  # no channel asked for: the webhook's own one


def test_without_a_connection_the_alert_goes_to_the_log_only(caplog):
    with FakeSlack() as slack, caplog.at_level(logging.INFO):
        assert notify(_alert()) == "log"
        assert notify(_alert(), conn_id="no_such_slack") == "log"
        assert slack.requests == []
    alerts = [r for r in caplog.records if r.getMessage().startswith("ALERT ")]
    assert len(alerts) == 2 and json.loads(alerts[0].getMessage().removeprefix("ALERT ")) == _alert().as_dict()


@pytest.mark.parametrize("status, error", [(500, "rollup_error"), (404, "no_service"), (410, "channel_is_archived")])
def test_a_slack_error_is_logged_and_raised(fake_slack, caplog, status, error):
    fake_slack.fail(status, error)
    with pytest.raises(AirflowException, match=f"Response body: '{error}', Status Code: {status}"):
        notify(_alert())
    assert len(fake_slack.requests) == 1 and fake_slack.messages == []
    assert any("did not take the critical alert about credit_approval" in r.getMessage() for r in caplog.records)


def test_a_named_connection_with_the_whole_url_and_a_channel(monkeypatch):
    with FakeSlack() as slack:
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_ML", json.dumps({"conn_type": "slackwebhook", "password": slack.url}))
        # App webhooks ignore the channel (the provider warns); legacy webhooks honour it.
        with pytest.warns(UserWarning, match="cannot override the default channel"):
            assert notify(_alert(), conn_id="slack_ml", channel="#ml-alerts") == "slack"
        assert slack.messages[0]["channel"] == "#ml-alerts"


@pytest.fixture
def alerts_config(tmp_path, monkeypatch):
    """The model's config with ``alerts: {slack_conn_id: slack_ml, channel: "#ml"}``."""

    shutil.copytree(ROOT / "config", tmp_path / "config")
    path = tmp_path / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["alerts"] = {"slack_conn_id": "slack_ml", "channel": "#ml"}
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MODELOPS_CONFIG_DIR", str(tmp_path / "config"))
    return path


def test_the_training_dag_built_for_a_model_alerts_its_channel_with_a_minimal_context(alerts_config, fake_slack,
                                                                                      monkeypatch):
    """The context the DAG processor passes when it knows no failed task: the DAG, the run id, the reason."""
    from dags import train
    from include.config import load_model_config

    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ML", json.dumps(fake_slack.connection()))
    dag = train.build(load_model_config(alerts_config))
    with pytest.warns(UserWarning, match="channel"):
        dag.on_failure_callback({"dag": dag, "run_id": "scheduled__2026-11-22T00:00:00+00:00", "reason": "task_failure"})

    (message,) = fake_slack.messages
    assert message == {
        "channel": "#ml",
        "text": "[WARNING] credit_approval: train_credit_approval failed",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                        "text": ":warning: WARNING · credit_approval: train_credit_approval failed"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Model*\ncredit_approval"},
                                           {"type": "mrkdwn", "text": "*Version*\nnone"}]},
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                "Run `scheduled__2026-11-22T00:00:00+00:00` of `train_credit_approval` failed (task_failure). "
                "No automatic action was taken.")}},
            {"type": "actions", "elements": [
                {"type": "button", "action_id": "link_0", "text": {"type": "plain_text", "text": "Airflow run", "emoji": True},
                 "url": "http://localhost:8080/dags/train_credit_approval/runs/scheduled__2026-11-22T00%3A00%3A00%2B00%3A00"}]},
        ],
    }


def test_the_model_comes_from_the_notifier_not_from_the_dag_id(fake_slack):
    """A DAG whose id names no configured model (or another one) still alerts about the model it was built for."""
    from airflow.sdk import DAG

    dag = DAG("adhoc_cleanup_credit_approval_v2", schedule=None)
    DagFailureNotifier(model="churn")({"dag": dag, "run_id": "r1", "params": {"target_version": 7}})

    (message,) = fake_slack.messages
    assert message["blocks"][0]["text"]["text"] == ":warning: WARNING · churn: adhoc_cleanup_credit_approval_v2 failed"
    assert [f["text"] for f in message["blocks"][1]["fields"]] == ["*Model*\nchurn", "*Version*\n7"]


def test_without_the_connection_the_failure_goes_to_the_log_only(caplog):
    from airflow.sdk import DAG

    with FakeSlack() as slack, caplog.at_level(logging.INFO):
        DagFailureNotifier(model=MODEL, slack_conn_id="no_such_slack")(
            {"dag": DAG("deploy_credit_approval", schedule=None), "reason": "timed_out"})
        assert slack.requests == []
    (record,) = [r for r in caplog.records if r.getMessage().startswith("ALERT ")]
    sent = json.loads(record.getMessage().removeprefix("ALERT "))
    assert (sent["level"], sent["model"], sent["title"]) == ("warning", MODEL, "deploy_credit_approval failed")
    assert sent["summary"] == "Run `None` of `deploy_credit_approval` failed (timed_out). No automatic action was taken."
    assert sent["links"] == {"Airflow DAG": "http://localhost:8080/dags/deploy_credit_approval"}


def test_a_slack_error_from_the_notifier_propagates(fake_slack):
    from airflow.sdk import DAG

    fake_slack.fail(500, "rollup_error")
    with pytest.raises(AirflowException, match="rollup_error"):
        DagFailureNotifier(model=MODEL)({"dag": DAG("train_credit_approval", schedule=None), "run_id": "r1"})


SKIP = {"version": "3", "dataset_uri": "/data/train.parquet", "data_fingerprint": "sha256:" + "ab" * 32,
        "dag_id": "train_credit_approval", "run_id": "drift_webhook__0123"}
TRIGGER = {"source": "alertmanager", "identity": "am1@2026-11-22T10:00:00+00:00", "summary": "annual_income drifted",
           "labels": {"alertname": "FeatureDrift"}}


def test_a_skipped_retraining_goes_to_the_models_channel_with_the_run_and_version_links(alerts_config, fake_slack,
                                                                                        monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ML", json.dumps(fake_slack.connection()))
    with pytest.warns(UserWarning, match="channel"):
        assert retraining_skipped(MODEL, trigger=TRIGGER, tracking_uri="https://mlflow.example.com/", **SKIP) == "slack"

    (message,) = fake_slack.messages
    assert message["channel"] == "#ml"
    header, fields, summary, actions, links = message["blocks"]
    assert header["text"]["text"] == ":warning: WARNING · credit_approval: retraining skipped: the data was already trained on"
    assert [f["text"] for f in fields["fields"]] == ["*Model*\ncredit_approval", "*Version*\n3"]
    assert "Started by: drift alert FeatureDrift from alertmanager (am1@2026-11-22T10:00:00+00:00)" in summary["text"]["text"]
    assert "annotation `dataset_uri`" in summary["text"]["text"]
    assert [(b["text"]["text"], b["url"]) for b in links["elements"]] == [
        ("Airflow run", "http://localhost:8080/dags/train_credit_approval/runs/drift_webhook__0123"),
        ("MLflow version", "https://mlflow.example.com/#/models/credit_approval/versions/3"),
    ]


def test_a_skipped_retraining_without_slack_goes_to_the_log(caplog):
    with caplog.at_level(logging.INFO):
        assert retraining_skipped(MODEL, trigger=TRIGGER, tracking_uri="sqlite:///mlflow.db", **SKIP) == "log"
    (record,) = [r for r in caplog.records if r.getMessage().startswith("ALERT ")]
    sent = json.loads(record.getMessage().removeprefix("ALERT "))
    assert sent["level"] == "warning" and sent["version"] == "3"
    assert list(sent["links"]) == ["Airflow run"]  # a sqlite store has no page to link


@pytest.mark.e2e
def test_a_failed_lifecycle_dag_run_alerts_slack(airflow_db, fake_slack):
    """The real rollback DAG, asked for a version that does not exist, fails; its callback posts to Slack."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "rollback.py"))
    dag = bag.get_dag(f"rollback_{MODEL}")
    assert dag is not None, bag.import_errors
    dag_run = dag.test(run_conf={"target_version": "999", "reason": "alerting test"})
    assert str(dag_run.state) == "failed"

    (message,) = fake_slack.messages
    run_url = f"http://localhost:8080/dags/rollback_credit_approval/runs/{quote(dag_run.run_id)}"
    header, fields, summary, links = message["blocks"]
    assert header["text"]["text"] == ":warning: WARNING · credit_approval: rollback_credit_approval failed"
    assert [f["text"] for f in fields["fields"]] == ["*Model*\ncredit_approval", "*Version*\n999"]
    assert summary["text"]["text"].startswith(f"Run `{dag_run.run_id}` of `rollback_credit_approval` failed "
                                              "(task_failure): task `roll_back` failed on try 1.")
    assert [(b["text"]["text"], b["url"]) for b in links["elements"]] == [
        ("Airflow run", run_url),
        ("Failed task", f"{run_url}/tasks/roll_back"),
    ]
