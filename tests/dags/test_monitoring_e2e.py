"""End to end: the hourly monitoring DAG on generated traffic, a real MLflow store and a Slack fake.

One registry for the module: version 1 then version 2 trained and promoted by the real DAGs, version
2 deployed (its ``deploy`` audit record) long before the hours below. Each hour of traffic is scored
by the champion's own MLflow model and written to the inference log; its delayed labels arrive a day later.
Then, in order, hour after hour on 2026-11-02 (runs with that hour as their data interval, as the
scheduler makes them): a clean hour (nothing), a drifted hour whose labels have not arrived
(warning), the next drifted hour (cooldown: nothing), an hour in which one feature is entirely null
(a data-quality warning on Slack; the rest assessed), a drifted hour whose labels show the loans
going bad (critical: rollback and retraining runs started, Slack told what was done); then an hour
is left out, and the run of the hour after it warns that it was not assessed; a manual run without a
logical date assesses the hour its ``hour`` param names (the one left out) and the hour after no
longer warns; a manual re-assessment of an hour that warned sends nothing twice; a manual run without
an ``hour`` assesses the last complete hour; and a drifted, bad hour just after a fresh deployment
(cold start: no drift alert, no rollback).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch

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
    # uncalibrated, as the hours below were tuned for: calibrating the small model moves CBPE's estimates
    raw["evidence"]["calibration"]["method"] = "none"
    # Label KPIs only: they move when the delayed labels arrive, so the tests choose when a KPI drops.
    raw["monitoring"]["kpis"] = [k for k in raw["monitoring"]["kpis"] if k["metric"] != "approval_rate"]
    path.write_text(yaml.safe_dump(raw))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    mp.setenv("MODELOPS_DATA_DIR", str(tmp / "data"))
    mp.setenv("MODELOPS_INFERENCE_LOG", str(tmp / "inference_log"))
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
    from include.governance import audit

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
             labels: bool = True, null_feature: str | None = None) -> None:
    """An hour of applications scored by ``version`` into the inference log; its delayed labels a day later.

    ``null_feature``: a feature the log gets no value of (a broken upstream writer).
    """
    import mlflow.pyfunc

    from include.config import get_model_config, resolve_uri
    from include.monitoring import inference_log
    from include.monitoring.delayed_labels import log_labels

    config = get_model_config(MODEL)
    batch = generate_batch(400, seed=seed, start=hour, hours=1, drift=drift, concept_drift=concept_drift)
    features = batch[config.dataset.feature_names]
    scores = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}").predict(features)
    if null_feature:
        features = features.assign(**{null_feature: None})
    inference_log.log_predictions(MODEL, version, "online", features, scores, latency_ms=3.0,
                                  request_ids=batch["application_id"].tolist(), ts=batch["applied_at"])
    if labels:
        arrived = batch.rename(columns={"application_id": "request_id"})[["request_id", "defaulted", "repaid_amount"]]
        log_labels(resolve_uri(config.monitoring.outcomes_uri), arrived,
                   arrived_at=pd.Timestamp(hour) + pd.Timedelta(days=1))


def _monitor(dags, hour: str):
    """Run the monitoring DAG for the hour starting at ``hour`` (its data interval, as a scheduled run has)."""
    return dags["monitor"].test(logical_date=(pd.Timestamp(hour) + pd.Timedelta(hours=1)).to_pydatetime())


def _manual(dags, hour: str | None = None, **kwargs):
    """A manual run as the README triggers it: no logical date, the hour (if any) in the conf."""
    return dags["monitor"].test(logical_date=None, run_conf={"hour": hour} if hour else None, **kwargs)


def _window(run) -> dict:
    """What the run's ``assess`` task says it assessed (its XCom's ``window``)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, task_ids="assess",
                                                 key="return_value")).first()
        return XComModel.deserialize_value(row)["window"]


def _step_values(env, key: str, hour: pd.Timestamp) -> list[float]:
    from include.config import get_model_config
    from include.monitoring import history, windows

    client = env["client"]
    mon_run = history.monitoring_run(client, get_model_config(MODEL))
    return [p.value for p in client.get_metric_history(mon_run, key) if p.step == windows.hour_step(hour)]


def _alerts(env, version: str) -> list[dict]:
    from include.governance import audit

    return [r for r in audit.read(env["client"], MODEL, version) if r["action"].startswith("alert.")]


def _triggered(run_id: str) -> dict[str, dict]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.run_id == f"monitor__{run_id}").all()
        return {r.dag_id: r.conf for r in runs}


def test_a_clean_hour_raises_nothing(env, dags, champion) -> None:
    from include.config import get_model_config
    from include.monitoring import history, windows

    hour = "2026-11-02T10:00:00Z"
    _traffic(env, champion, hour, seed=21)

    run = _monitor(dags, hour)

    states = _states(run)
    assert str(run.state) == "success", states
    assert states["notify"] == "skipped" and states["trigger_rollback"] == "skipped"
    assert env["slack"].messages == [] and _alerts(env, champion) == []
    client = env["client"]
    mon_run = history.monitoring_run(client, get_model_config(MODEL))
    history = client.get_metric_history(mon_run, "drift.share_drifted")
    assert [p.step for p in history] == [windows.hour_step(pd.Timestamp(hour))]
    assert history[0].value < 0.3
    metrics = client.get_run(mon_run).data.metrics
    assert metrics["rows"] == 400 and metrics["latency_ms.p99"] == 3.0 and "kpi.repayment_rate" in metrics
    reports = [a.path for a in client.list_artifacts(mon_run, "reports/2026-11-02/1000")]
    assert reports == ["reports/2026-11-02/1000/data_drift.html"]


def test_a_drifted_hour_warns_on_slack(env, dags, champion) -> None:
    hour = "2026-11-02T11:00:00Z"
    _traffic(env, champion, hour, seed=22, drift=0.9, labels=False)  # labels not arrived: KPIs unknown

    states = _states(_monitor(dags, hour))

    assert states["notify"] == "success" and states["trigger_rollback"] == "skipped", states
    [message] = env["slack"].messages
    text = json.dumps(message)
    assert "warning" in text.lower() and "data_drift" in text and f"v{champion}" in text
    [record] = _alerts(env, champion)
    assert record["action"] == "alert.warning" and record["details"]["findings"][0]["name"] == "data_drift"


def test_the_same_condition_is_not_repeated_within_the_cooldown(env, dags, champion) -> None:
    hour = "2026-11-02T12:00:00Z"  # an hour later, cooldown 6 hours, the same drift
    _traffic(env, champion, hour, seed=23, drift=0.9, labels=False)

    states = _states(_monitor(dags, hour))

    assert states["assess"] == "success" and states["notify"] == "skipped", states
    assert len(env["slack"].messages) == 1 and len(_alerts(env, champion)) == 1


def test_an_hour_with_an_all_null_feature_warns_on_slack_and_is_assessed(env, dags, champion) -> None:
    from include.config import get_model_config
    from include.monitoring import history, windows

    hour = "2026-11-02T13:00:00Z"
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
    mon_run = history.monitoring_run(client, get_model_config(MODEL))
    step = windows.hour_step(pd.Timestamp(hour))
    history = {k: [p.value for p in client.get_metric_history(mon_run, k) if p.step == step]
               for k in ("data_quality.all_null.region", "drift.age", "kpi.repayment_rate", "alert_level")}
    assert history == {"data_quality.all_null.region": [400.0], "drift.age": history["drift.age"],
                       "kpi.repayment_rate": history["kpi.repayment_rate"], "alert_level": [1.0]}
    assert len(history["drift.age"]) == 1 and len(history["kpi.repayment_rate"]) == 1  # the rest was assessed


def test_drift_with_a_kpi_drop_rolls_back_and_retrains(env, dags, champion) -> None:
    hour = "2026-11-02T14:00:00Z"
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


def test_an_hour_no_run_assessed_is_reported_by_the_next_run(env, dags, champion) -> None:
    hour = "2026-11-02T16:00:00Z"  # 15:00 was not assessed (the scheduler was down, or its run could not be made)
    _traffic(env, champion, hour, seed=27)
    sent = len(env["slack"].messages)

    run = _monitor(dags, hour)

    states = _states(run)
    assert str(run.state) == "success" and states["notify"] == "success", states
    [message] = env["slack"].messages[sent:]
    text = json.dumps(message)
    assert "data_quality.unassessed_hours" in text and "2026-11-02 15:00" in text
    assert 'conf {\\"hour\\": \\"2026-11-02T15:00:00Z\\"}' in text  # how to assess it
    record = _alerts(env, champion)[-1]
    assert [f["name"] for f in record["details"]["findings"]] == ["data_quality.unassessed_hours"]
    assert _step_values(env, "data_quality.unassessed_hours", pd.Timestamp(hour)) == [1.0]
    assert _step_values(env, "rows", pd.Timestamp(hour)) == [400.0]  # the hour itself was assessed


def test_a_manual_run_without_a_logical_date_assesses_the_hour_it_names(env, dags, champion) -> None:
    hour = "2026-11-02T15:00:00Z"  # the hour left out
    _traffic(env, champion, hour, seed=28)
    sent = len(env["slack"].messages)

    run = _manual(dags, hour)

    states = _states(run)
    assert str(run.state) == "success" and states["assess"] == "success", states
    assert (str(run.run_type), run.logical_date, run.data_interval_start) == ("manual", None, None)
    assert run.conf == {"hour": hour}
    assert _window(run) == {"start": "2026-11-02T15:00:00+00:00", "end": "2026-11-02T16:00:00+00:00",
                            "source": "hour"}
    assert _step_values(env, "rows", pd.Timestamp(hour)) == [400.0]
    assert len(_step_values(env, "drift.share_drifted", pd.Timestamp(hour))) == 1
    assert states["notify"] == "skipped" and env["slack"].messages[sent:] == []  # clean, and no gap before it

    # the hour after it, run again, no longer reports it
    again = _monitor(dags, "2026-11-02T16:00:00Z")
    assert _window(again)["source"] == "data_interval"
    assert _states(again)["notify"] == "skipped" and env["slack"].messages[sent:] == []
    assert sorted(_step_values(env, "data_quality.unassessed_hours", pd.Timestamp("2026-11-02T16:00Z"))) == [0.0, 1.0]


def test_a_manual_re_assessment_sends_nothing_twice(env, dags, champion) -> None:
    hour = "2026-11-02T13:00:00Z"  # the all-null hour: it warned when its scheduled run assessed it
    sent, alerts = len(env["slack"].messages), len(_alerts(env, champion))

    run = _manual(dags, "2026-11-02T13:42:00+00:00")  # any time within the hour names it

    states = _states(run)
    assert str(run.state) == "success" and states["assess"] == "success", states
    assert states["notify"] == "skipped"  # the finding is the same: within the cooldown
    assert env["slack"].messages[sent:] == [] and len(_alerts(env, champion)) == alerts
    assert _window(run) == {"start": pd.Timestamp(hour).isoformat(), "end": "2026-11-02T14:00:00+00:00",
                            "source": "hour"}


def test_a_manual_run_without_an_hour_assesses_the_last_complete_hour(env, dags, champion) -> None:
    triggered = pd.Timestamp.now(tz="UTC").floor("h")  # run_after: when the run was triggered
    hour = triggered - pd.Timedelta(hours=1)
    _traffic(env, champion, hour.isoformat(), seed=29, labels=False)
    sent = len(env["slack"].messages)

    run = _manual(dags, run_after=triggered.to_pydatetime())

    states = _states(run)
    assert str(run.state) == "success" and states["assess"] == "success", states
    assert run.logical_date is None and not run.conf
    assert _window(run) == {"start": hour.isoformat(), "end": triggered.isoformat(), "source": "last_complete_hour"}
    assert _step_values(env, "rows", hour) == [400.0]
    # the hours since 2026-11-02 were not assessed: more than the week looked back
    [message] = env["slack"].messages[sent:]
    assert "data_quality.unassessed_hours" in json.dumps(message)
    assert "none was assessed in the 168 h looked back" in json.dumps(message)


def test_a_bad_hour_fails_the_run_at_once_naming_the_param(env, dags, champion) -> None:
    run = _manual(dags, "2999-01-01T00:00:00Z")

    assert str(run.state) == "failed"
    [assess] = [ti for ti in run.get_task_instances() if ti.task_id == "assess"]
    assert str(assess.state) == "failed" and assess.try_number == 1  # no retry: it cannot succeed


def test_no_drift_alert_during_the_cold_start(env, dags, champion) -> None:
    from include.config import get_model_config
    from include.governance import audit
    from include.monitoring.assessment import LEVELS

    hour = pd.Timestamp("2026-11-12T10:00:00Z")
    audit.write(env["client"], audit.AuditRecord(action="deploy", model=MODEL, version=champion, actor="test",
                                                 reason="redeployed", at=f"{hour - pd.Timedelta(days=1):%Y-%m-%dT%H:%M:%S.000000Z}"))
    _traffic(env, champion, hour.isoformat(), seed=25, drift=0.9, concept_drift=1.0)
    sent = len(env["slack"].messages)

    run = _monitor(dags, hour.isoformat())

    states = _states(run)
    assert states["trigger_rollback"] == "skipped" and states["trigger_retrain"] == "skipped", states
    assert _triggered(run.run_id) == {}
    # the hour did drift, beyond the critical share, and was assessed as in the cold start ...
    mon = get_model_config(MODEL).monitoring
    [share] = _step_values(env, "drift.share_drifted", hour)
    assert share >= mon.drift.critical
    assert _step_values(env, "cold_start", hour) == [1.0]
    assert _step_values(env, "alert_level", hour) == [float(LEVELS.index("warning"))]
    # ... so the one message is the KPI drop's warning (the concept drift), with no drift finding in it
    [message] = [json.dumps(m) for m in env["slack"].messages[sent:]]
    assert "[WARNING]" in message and "kpi.repayment_rate" in message
    assert "data_drift" not in message and "CRITICAL" not in message
