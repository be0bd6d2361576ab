"""End to end: the freshness DAG with ``dag.test()``, against a real MLflow store, the audit ledger and the Slack fake.

The champion (version 1) was trained on data whose newest event is 2026-04-15, still at its path; the
model's ``dataset.uri`` holds newer data; ``training.max_age_days`` is 30. In order:

* 2026-06-01: stale (47 days): the proposal is recorded, ``train_credit_approval`` run
  ``freshness__2026-06-01__v1`` is created on the latest data (no ``force``: the training's skip and the
  promotion's gates still decide), and Slack is warned, naming the run;
* a manual run the same day: the same proposal, no second training run, no second message;
* 2026-06-02: still stale, but the proposed run is still queued: no proposal, a warning saying why;
* a dry run on 2026-06-03: nothing sent, recorded or started;
* with ``max_age_days`` 60 on 2026-06-03 (49 days): fresh, nothing follows the check.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit_approval"
TRAINED_NEWEST = pd.Timestamp("2026-04-15T00:00:00Z")
RUN_STARTED = datetime(2026, 2, 1, tzinfo=UTC)


def _batch(newest: pd.Timestamp, seed: int) -> pd.DataFrame:
    df = generate_batch(60, seed=seed, start=newest - pd.Timedelta(days=31), hours=24 * 30)
    df.loc[df.index[-1], "applied_at"] = newest
    return df


def _set_max_age(path: Path, days: float) -> None:
    raw = yaml.safe_load(path.read_text())
    raw["training"]["max_age_days"] = days
    path.write_text(yaml.safe_dump(raw))


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db):
    from include import tracking
    from include.config import get_model_config
    from include.data.fingerprint import dataset_fingerprint
    from include.promotion.registry import ensure_registered_model
    from tests.fakes.slack import FakeSlack

    tmp = tmp_path_factory.mktemp("freshness")
    shutil.copytree(ROOT / "config", tmp / "config")
    latest = tmp / "latest.parquet"
    config_path = tmp / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(config_path.read_text())
    raw["dataset"]["uri"] = str(latest)
    config_path.write_text(yaml.safe_dump(raw))
    _set_max_age(config_path, 30)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    with FakeSlack() as slack:
        mp.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps(slack.connection()))
        client = tracking.configure()
        config = get_model_config(MODEL)
        trained = _batch(TRAINED_NEWEST, seed=1)
        write_dataset(trained, str(tmp / "trained.parquet"))
        write_dataset(_batch(pd.Timestamp("2026-05-30T00:00:00Z"), seed=2), str(latest))
        ensure_registered_model(client, MODEL)
        experiment = tracking.ensure_experiment(client, config.experiment_name)
        run_id = client.create_run(experiment, start_time=int(RUN_STARTED.timestamp() * 1000)).info.run_id
        (tmp / "model").mkdir()
        version = client.create_model_version(MODEL, str(tmp / "model"), run_id=run_id, tags={
            "dataset_uri": str(tmp / "trained.parquet"),
            "data_fingerprint": dataset_fingerprint(trained, config.dataset.column_types)})
        client.set_registered_model_alias(MODEL, "champion", version.version)
        yield {"client": client, "slack": slack, "latest": str(latest), "config_path": config_path}
    mp.undo()


@pytest.fixture(scope="module")
def dag(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "freshness.py"))
    assert bag.import_errors == {}
    return bag.get_dag(f"freshness_{MODEL}")


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _train_runs() -> dict[str, dict]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == f"train_{MODEL}",
                                            DagRun.run_id.like("freshness__%")).all()
        return {r.run_id: r.conf for r in runs}


def _records(action: str) -> list:
    from include.governance.ledger import default_ledger

    return default_ledger().records(model=MODEL, actions=[action])


def test_a_stale_champion_is_warned_about_and_a_training_run_on_the_latest_data_is_proposed(env, dag):
    run = dag.test(logical_date=datetime(2026, 6, 1, tzinfo=UTC))

    assert str(run.state) == "success", _states(run)
    assert _states(run) == {"check": "success", "route": "success", "propose": "success",
                            "trigger_retrain": "success", "notify": "success"}
    runs = _train_runs()
    assert list(runs) == ["freshness__2026-06-01__v1"]
    conf = runs["freshness__2026-06-01__v1"]
    assert conf["dataset_uri"] == env["latest"] and "force" not in conf
    assert conf["alert"]["source"] == "freshness" and conf["alert"]["version"] == "1"
    (proposed,) = _records("retrain_proposed")
    assert (proposed.version, proposed.details["run_id"]) == ("1", "freshness__2026-06-01__v1")
    assert proposed.details["age_days"] == pytest.approx(47.0) and proposed.details["age_source"] == "data"
    (warned,) = _records("stale_champion")
    assert warned.details["actions"][0].startswith("retraining proposed: train_credit_approval run freshness__2026-06-01__v1")
    (message,) = env["slack"].messages
    assert "stale champion" in message["text"] and "freshness__2026-06-01__v1" in json.dumps(message)


def test_the_same_day_again_proposes_and_warns_nothing_more(env, dag):
    sent = len(env["slack"].messages)

    run = dag.test(logical_date=datetime(2026, 6, 1, 12, tzinfo=UTC))

    states = _states(run)
    assert str(run.state) == "success", states
    assert states["propose"] == "success" and states["trigger_retrain"] == "skipped", states  # the run exists
    assert list(_train_runs()) == ["freshness__2026-06-01__v1"]
    assert len(_records("retrain_proposed")) == 1 and len(_records("stale_champion")) == 1
    assert len(env["slack"].messages) == sent


def test_the_next_day_waits_for_the_proposed_run_and_says_so(env, dag):
    run = dag.test(logical_date=datetime(2026, 6, 2, tzinfo=UTC))

    states = _states(run)
    assert str(run.state) == "success", states
    assert (states["propose"], states["trigger_retrain"], states["notify"]) == ("skipped", "skipped", "success")
    assert list(_train_runs()) == ["freshness__2026-06-01__v1"]
    assert len(_records("retrain_proposed")) == 1
    latest = _records("stale_champion")[-1]
    assert latest.details["day"] == "2026-06-02"
    assert "freshness__2026-06-01__v1) is still queued or running" in latest.details["actions"][0]
    assert "no retraining proposed" in env["slack"].messages[-1]["text"]


def test_a_dry_run_only_reports(env, dag):
    sent, records = len(env["slack"].messages), len(_records("stale_champion"))

    run = dag.test(logical_date=datetime(2026, 6, 3, tzinfo=UTC), run_conf={"dry_run": True})

    states = _states(run)
    assert states["check"] == "success" and states["route"] == "success"
    assert {states[t] for t in ("propose", "trigger_retrain", "notify")} == {"skipped"}, states
    assert len(env["slack"].messages) == sent and len(_records("stale_champion")) == records


def test_a_fresh_champion_leads_to_nothing(env, dag):
    _set_max_age(env["config_path"], 60)  # 49 days old on 2026-06-03
    sent, proposals = len(env["slack"].messages), len(_records("retrain_proposed"))

    run = dag.test(logical_date=datetime(2026, 6, 3, 6, tzinfo=UTC))

    states = _states(run)
    assert str(run.state) == "success", states
    assert {states[t] for t in ("propose", "trigger_retrain", "notify")} == {"skipped"}, states
    assert len(env["slack"].messages) == sent and len(_records("retrain_proposed")) == proposals
    assert list(_train_runs()) == ["freshness__2026-06-01__v1"]
