"""End to end: the hourly monitoring DAG on generated traffic, a real MLflow store and a Slack fake.

One registry for the module: version 1 then version 2 trained and promoted by the real DAGs, version
2 deployed (its ``deploy`` audit record) long before the hours below. Each hour of traffic is scored
by the champion's own MLflow model and written to the inference log; outcomes arrive a day later.
Then, in order: a clean hour (nothing), a drifted hour whose outcomes have not arrived (warning), the
next drifted hour (cooldown: nothing), an hour in which one feature is entirely null (a data-quality
warning on Slack; the rest assessed), a drifted hour whose outcomes show the loans going bad
(critical: rollback and retraining runs started, Slack told what was done), and a drifted, bad hour
just after a fresh deployment (cold start: no drift alert, no rollback).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from include.datagen import generate_batch
from include.dataset import write_dataset

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit_approval"
DEPLOYED = pd.Timestamp("2026-10-01T00:00Z")


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db):
    from include import tracking
    from tests.fakes.slack import FakeSlack

    tmp = tmp_path_factory.mktemp("monitoring")
    shutil.copytree(ROOT / "config", tmp / "config")
    path = tmp / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["model"]["params"]["max_iter"] = 40
    # Outcome KPIs only: they move when the delayed outcomes arrive, so the tests choose when a KPI drops.
    raw["monitoring"]["kpis"] = [k for k in raw["monitoring"]["kpis"] if k["metric"] != "approval_rate"]
    path.write_text(yaml.safe_dump(raw))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    mp.setenv("MODELOPS_DATA_DIR", str(tmp / "data"))
    mp.setenv("MODELOPS_INFERENCE_LOG", str(tmp / "inference_log"))
    import include.config

    mp.setattr(include.config, "CONFIG_DIR", tmp / "config")
    data = tmp / "train.parquet"
    write_dataset(generate_batch(3000, seed=5), str(data))
    with FakeSlack() as slack:
        mp.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps(slack.connection()))
        yield {"tmp": tmp, "client": tracking.configure(), "data": str(data), "slack": slack, "config_path": path}
    mp.undo()


@pytest.fixture(scope="module")
def dags(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return {kind: bag.get_dag(f"{kind}_{MODEL}") for kind in ("train", "promote", "monitor")}


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture(scope="module")
def champion(env, dags) -> str:
    """Version 2 is @champion (version 1 @previous_champion), deployed on DEPLOYED."""
    from include import audit

    for max_iter in (40, 60):
        raw = yaml.safe_load(env["config_path"].read_text())
        raw["model"]["params"]["max_iter"] = max_iter
        env["config_path"].write_text(yaml.safe_dump(raw))
        assert str(dags["train"].test(run_conf={"dataset_uri": env["data"]}).state) == "success"
        assert str(dags["promote"].test().state) == "success"
    client = env["client"]
    version = str(client.get_model_version_by_alias(MODEL, "champion").version)
    assert (version, str(client.get_model_version_by_alias(MODEL, "previous_champion").version)) == ("2", "1")
    audit.write(client, audit.AuditRecord(action="deploy", model=MODEL, version=version, actor="test",
                                          reason="deployed", at=f"{DEPLOYED:%Y-%m-%dT%H:%M:%S.000000Z}"))
    return version


def _traffic(env, version: str, hour: str, *, seed: int, drift: float = 0.0, concept_drift: float = 0.0,
             outcomes: bool = True, null_feature: str | None = None) -> None:
    """An hour of applications scored by ``version`` into the inference log; outcomes a day later.

    ``null_feature``: a feature the log gets no value of (a broken upstream writer).
    """
    import mlflow.pyfunc

    from include import inference_log
    from include.config import get_model_config, resolve_uri
    from include.outcomes import log_outcomes

    config = get_model_config(MODEL)
    batch = generate_batch(400, seed=seed, start=hour, hours=1, drift=drift, concept_drift=concept_drift)
    features = batch[config.dataset.feature_names]
    scores = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}").predict(features)
    if null_feature:
        features = features.assign(**{null_feature: None})
    inference_log.log_predictions(MODEL, version, "online", features, scores, latency_ms=3.0,
                                  request_ids=batch["application_id"].tolist(), ts=batch["applied_at"])
    if outcomes:
        arrived = batch.rename(columns={"application_id": "request_id"})[["request_id", "defaulted", "repaid_amount"]]
        log_outcomes(resolve_uri(config.monitoring.outcomes_uri), arrived,
                     arrived_at=pd.Timestamp(hour) + pd.Timedelta(days=1))


def _monitor(dags, hour: str):
    """Run the monitoring DAG for the hour starting at ``hour`` (its data interval)."""
    return dags["monitor"].test(logical_date=(pd.Timestamp(hour) + pd.Timedelta(hours=1)).to_pydatetime())


def _alerts(env, version: str) -> list[dict]:
    from include import audit

    return [r for r in audit.read(env["client"], MODEL, version) if r["action"].startswith("alert.")]


def _triggered(run_id: str) -> dict[str, dict]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.run_id == f"monitor__{run_id}").all()
        return {r.dag_id: r.conf for r in runs}


def test_a_clean_hour_raises_nothing(env, dags, champion) -> None:
    from include import monitoring
    from include.config import get_model_config

    hour = "2026-11-02T10:00:00Z"
    _traffic(env, champion, hour, seed=21)

    run = _monitor(dags, hour)

    states = _states(run)
    assert str(run.state) == "success", states
    assert states["notify"] == "skipped" and states["trigger_rollback"] == "skipped"
    assert env["slack"].messages == [] and _alerts(env, champion) == []
    client = env["client"]
    mon_run = monitoring.monitoring_run(client, get_model_config(MODEL))
    history = client.get_metric_history(mon_run, "drift.share_drifted")
    assert [p.step for p in history] == [monitoring.hour_step(pd.Timestamp(hour))]
    assert history[0].value < 0.3
    metrics = client.get_run(mon_run).data.metrics
    assert metrics["rows"] == 400 and metrics["latency_ms.p99"] == 3.0 and "kpi.repayment_rate" in metrics
    reports = [a.path for a in client.list_artifacts(mon_run, "reports/2026-11-02/1000")]
    assert reports == ["reports/2026-11-02/1000/data_drift.html"]


def test_a_drifted_hour_warns_on_slack(env, dags, champion) -> None:
    hour = "2026-11-03T10:00:00Z"
    _traffic(env, champion, hour, seed=22, drift=0.9, outcomes=False)  # outcomes not arrived: KPIs unknown

    states = _states(_monitor(dags, hour))

    assert states["notify"] == "success" and states["trigger_rollback"] == "skipped", states
    [message] = env["slack"].messages
    text = json.dumps(message)
    assert "warning" in text.lower() and "data_drift" in text and f"v{champion}" in text
    [record] = _alerts(env, champion)
    assert record["action"] == "alert.warning" and record["details"]["findings"][0]["name"] == "data_drift"


def test_the_same_condition_is_not_repeated_within_the_cooldown(env, dags, champion) -> None:
    hour = "2026-11-03T12:00:00Z"  # 2 hours later, cooldown 6 hours, the same drift
    _traffic(env, champion, hour, seed=23, drift=0.9, outcomes=False)

    states = _states(_monitor(dags, hour))

    assert states["assess"] == "success" and states["notify"] == "skipped", states
    assert len(env["slack"].messages) == 1 and len(_alerts(env, champion)) == 1


def test_an_hour_with_an_all_null_feature_warns_on_slack_and_is_assessed(env, dags, champion) -> None:
    from include import monitoring
    from include.config import get_model_config

    hour = "2026-11-04T10:00:00Z"
    _traffic(env, champion, hour, seed=26, null_feature="region")
    sent = len(env["slack"].messages)

    run = _monitor(dags, hour)

    states = _states(run)
    assert str(run.state) == "success", states
    assert states["notify"] == "success" and states["trigger_rollback"] == "skipped", states
    [message] = env["slack"].messages[sent:]
    text = json.dumps(message)
    assert "WARNING" in text and "data_quality.all_null.region" in text
    assert "feature 'region' has no value in any of the hour's 400 row(s)" in text
    assert "Evidently report leaves out region" in text  # the report was made without it
    record = _alerts(env, champion)[-1]
    assert record["action"] == "alert.warning"
    assert [f["name"] for f in record["details"]["findings"]] == ["data_quality.all_null.region"]
    client = env["client"]
    mon_run = monitoring.monitoring_run(client, get_model_config(MODEL))
    step = monitoring.hour_step(pd.Timestamp(hour))
    history = {k: [p.value for p in client.get_metric_history(mon_run, k) if p.step == step]
               for k in ("data_quality.all_null.region", "drift.age", "kpi.repayment_rate", "alert_level")}
    assert history == {"data_quality.all_null.region": [400.0], "drift.age": history["drift.age"],
                       "kpi.repayment_rate": history["kpi.repayment_rate"], "alert_level": [1.0]}
    assert len(history["drift.age"]) == 1 and len(history["kpi.repayment_rate"]) == 1  # the rest was assessed


def test_drift_with_a_kpi_drop_rolls_back_and_retrains(env, dags, champion) -> None:
    hour = "2026-11-05T10:00:00Z"
    _traffic(env, champion, hour, seed=24, drift=0.9, concept_drift=1.0)  # and the loans go bad

    run = _monitor(dags, hour)

    states = _states(run)
    assert states["trigger_rollback"] == "success" and states["trigger_retrain"] == "success", states
    assert states["notify"] == "success"
    triggered = _triggered(run.run_id)
    assert set(triggered) == {f"rollback_{MODEL}", f"train_{MODEL}"}
    assert triggered[f"rollback_{MODEL}"]["target_version"] is None
    assert "critical" in triggered[f"rollback_{MODEL}"]["reason"]
    assert triggered[f"train_{MODEL}"]["alert"]["source"] == "monitoring"
    message = json.dumps(env["slack"].messages[-1])
    assert "critical" in message.lower() and "rollback started" in message and "retraining started" in message
    critical = _alerts(env, champion)[-1]
    assert critical["action"] == "alert.critical" and len(critical["details"]["actions"]) == 2

    # a retry of the same monitoring run starts nothing more and sends nothing twice
    sent = len(env["slack"].messages)
    _monitor(dags, hour)
    assert len(env["slack"].messages) == sent


def test_no_drift_alert_during_the_cold_start(env, dags, champion) -> None:
    from include import audit

    hour = pd.Timestamp("2026-11-12T10:00:00Z")
    audit.write(env["client"], audit.AuditRecord(action="deploy", model=MODEL, version=champion, actor="test",
                                                 reason="redeployed", at=f"{hour - pd.Timedelta(days=1):%Y-%m-%dT%H:%M:%S.000000Z}"))
    _traffic(env, champion, hour.isoformat(), seed=25, drift=0.9, concept_drift=1.0)
    sent = len(env["slack"].messages)

    run = _monitor(dags, hour.isoformat())

    states = _states(run)
    assert states["trigger_rollback"] == "skipped" and states["trigger_retrain"] == "skipped", states
    assert _triggered(run.run_id) == {}
    new = [json.dumps(m) for m in env["slack"].messages[sent:]]
    assert all("data_drift" not in m for m in new)  # KPI drops may still warn
