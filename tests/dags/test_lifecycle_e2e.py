"""End to end: the training and promotion DAGs run with ``dag.test()`` against a real MLflow store.

One registry for the module, used as a scenario: the first champion, a redundant retrain that is
skipped, bad batches that are rejected, and a worse challenger that is not promoted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from include.data.dataset import write_dataset
from include.demo.datagen import CORRUPTED_COLUMN, CORRUPTIONS, generate_batch

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit_approval"


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db):
    """A fresh MLflow store and an editable copy of the config for this module."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    shutil.copytree(ROOT / "config", tmp / "config")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    from include import tracking

    client = tracking.configure()
    yield {"tmp": tmp, "client": client}
    mp.undo()


@pytest.fixture(scope="module")
def dags(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return {"train": bag.get_dag(f"train_{MODEL}"), "promote": bag.get_dag(f"promote_{MODEL}")}


def _batch(env, name: str, **kwargs) -> str:
    path = env["tmp"] / "data" / f"{name}.parquet"
    write_dataset(generate_batch(kwargs.pop("rows", 4000), **kwargs), str(path))
    return str(path)


def _alias(client, alias):
    from include.promotion.registry import alias_version

    found = alias_version(client, MODEL, alias)
    return str(found.version) if found else None


def _versions(client):
    return sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def _states(dag_run):
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture(scope="module")
def first_champion(env, dags):
    """Train on a clean batch and promote it: version 1 becomes the champion."""
    uri = _batch(env, "clean", seed=1)
    trained = dags["train"].test(run_conf={"dataset_uri": uri})
    assert str(trained.state) == "success", _states(trained)
    promoted = dags["promote"].test()
    assert str(promoted.state) == "success", _states(promoted)
    return uri


def _mlflow_run(client, dag_run):
    (run,) = client.search_runs(
        [client.get_experiment_by_name(f"modelops/{MODEL}").experiment_id],
        filter_string=f"tags.`airflow.run_id` = '{dag_run.run_id}'",
    )
    return run


def test_clean_batch_becomes_champion_with_lineage_tags(env, first_champion):
    from include.data.dataset import read_dataset
    from include.data.fingerprint import dataset_fingerprint, schema_hash
    from include.demo.datagen import COLUMN_TYPES

    client = env["client"]
    assert _versions(client) == [1]
    assert _alias(client, "champion") == "1"
    assert _alias(client, "challenger") is None  # consumed by the promotion
    version = client.get_model_version(MODEL, "1")
    df = read_dataset(first_champion)
    assert version.tags["data_fingerprint"] == dataset_fingerprint(df, COLUMN_TYPES)
    assert version.tags["schema_hash"] == schema_hash(df, COLUMN_TYPES)
    for tag in ("code_commit", "dependency_hash", "training_backend", "params", "idempotency_key"):
        assert version.tags[tag] and version.tags[tag] != "unknown", tag
    assert version.tags["training_backend"] == "local"
    assert version.tags["gates.result"] == "passed"
    assert version.tags["compliance.pii_reviewed"] == "true"
    audit_actions = [v for k, v in version.tags.items() if k.startswith("audit.")]
    assert any('"action": "register"' in a for a in audit_actions)
    assert any('"action": "promote"' in a for a in audit_actions)

    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["modelops.outcome"] == "registered as version 1"
    assert run.data.metrics["roc_auc"] > 0.7
    assert run.data.tags["data_fingerprint"] == version.tags["data_fingerprint"]
    assert run.inputs.dataset_inputs[0].dataset.source  # logged with mlflow.log_input
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/roc_curve.png", "plots/confusion_matrix.png"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "validation")} >= {"validation/validation_result.json"}


def test_the_challenger_and_champion_asset_events_say_which_version_moved(env, first_champion):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    version = env["client"].get_model_version(MODEL, "1")
    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetEvent.extra).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name.in_([f"{MODEL}.challenger", f"{MODEL}.champion"]))
            .order_by(AssetEvent.timestamp)
        ).all()
    extras = {name: extra for name, extra in rows}  # the latest event of each asset
    assert extras[f"{MODEL}.challenger"] == {
        "model": MODEL, "version": "1", "run_id": version.run_id, "dag_run_id": version.tags["airflow.run_id"]}
    champion = extras[f"{MODEL}.champion"]
    assert (champion["model"], champion["version"], champion["run_id"]) == (MODEL, "1", version.run_id)
    assert champion["previous_champion"] is None and champion["dag_run_id"].startswith("manual__")


def test_same_data_code_and_params_skips_retraining(env, dags, first_champion):
    client = env["client"]
    dag_run = dags["train"].test(run_conf={"dataset_uri": first_champion})
    states = _states(dag_run)
    assert str(dag_run.state) == "success"
    assert states["needs_training"] == "success"
    assert {states[t] for t in ("train", "evaluate", "register")} == {"skipped"}
    assert _versions(client) == [1]
    run = _mlflow_run(client, dag_run)  # closed, not left RUNNING
    assert run.info.status == "KILLED"
    assert run.data.tags["modelops.outcome"].startswith("skipped: version 1 was trained from the same data")


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_bad_batch_is_rejected_and_nothing_changes(env, dags, first_champion, corruption):
    client = env["client"]
    uri = _batch(env, f"bad-{corruption}", seed=7, corruption=corruption)
    dag_run = dags["train"].test(run_conf={"dataset_uri": uri})
    states = _states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states["validate"] == "failed"
    assert states["train"] != "success" and states["register"] != "success"
    assert _versions(client) == [1]
    assert _alias(client, "champion") == "1"

    # Bad data is not retried: the first try fails for good.
    assert {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}["validate"] == 1

    run = _mlflow_run(client, dag_run)
    assert run.info.status == "FAILED"
    assert run.data.tags["quarantine"] == "rejected"
    assert run.data.tags["data_fingerprint" if "unreadable" not in run.data.tags["quarantine.reason"]
                         else "files_sha256"].startswith("sha256:")
    assert CORRUPTED_COLUMN[corruption] in run.data.tags["validation.summary"]


def test_corrupt_parquet_is_quarantined_without_retries(env, dags, first_champion):
    client = env["client"]
    good = Path(_batch(env, "to-corrupt", seed=8))
    raw = good.read_bytes()
    good.write_bytes(raw[: len(raw) // 2] + bytes(4000) + raw[len(raw) // 2 + 4000:])
    dag_run = dags["train"].test(run_conf={"dataset_uri": str(good)})
    assert str(dag_run.state) == "failed"
    validate = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "validate")
    assert (str(validate.state), validate.try_number) == ("failed", 1)
    run = _mlflow_run(client, dag_run)
    assert run.info.status == "FAILED"
    assert "to-corrupt.parquet" in run.data.tags["quarantine.reason"]
    assert _versions(client) == [1]


def test_a_failure_after_validation_closes_the_mlflow_run_as_failed(env, dags, first_champion):
    """Training that cannot start (bad estimator params) used to leave the MLflow run RUNNING forever."""
    client = env["client"]
    path = env["tmp"] / "config" / "models" / f"{MODEL}.yaml"
    original = path.read_text()
    raw = yaml.safe_load(original)
    raw["model"]["params"] = {**raw["model"]["params"], "max_iter": -5}
    path.write_text(yaml.safe_dump(raw))
    try:
        dag_run = dags["train"].test(run_conf={"dataset_uri": _batch(env, "params", seed=9)})
    finally:
        path.write_text(original)
    states = _states(dag_run)
    assert (str(dag_run.state), states["validate"], states["train"]) == ("failed", "success", "failed")
    run = _mlflow_run(client, dag_run)
    assert run.info.status == "FAILED"
    assert run.data.tags["modelops.outcome"].startswith("failed in task train: ")
    assert _versions(client) == [1]


def test_worse_challenger_is_not_promoted(env, dags, first_champion):
    client = env["client"]
    path = env["tmp"] / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["model"] = {"estimator": "sklearn.dummy.DummyClassifier", "params": {"strategy": "prior"}}
    path.write_text(yaml.safe_dump(raw))

    trained = dags["train"].test(run_conf={"dataset_uri": first_champion})
    assert str(trained.state) == "success", _states(trained)
    assert _versions(client) == [1, 2]
    assert _alias(client, "challenger") == "2"

    promoted = dags["promote"].test()
    assert str(promoted.state) == "failed"
    assert _states(promoted)["promote"] != "success"
    assert _alias(client, "champion") == "1"
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["gates.result"] == "failed"
    assert tags["gate.min_metric"] == "failed"
    assert tags["gate.no_regression"] == "failed"
    assert tags["gate.compliance"] == "passed"
    assert "roc_auc" in tags["gates.detail"]
    assert any('"action": "reject"' in v for k, v in tags.items() if k.startswith("audit."))


def test_an_alert_on_data_already_trained_on_skips_and_tells_slack(env, dags, first_champion, fake_slack):
    """A drift alert that points at data already trained on starts a run that skips itself; the model's
    Slack channel is told which alert, which data, which version and how to point the alert at new data.
    A manual run that skips the same way posts nothing."""
    import json
    from urllib.parse import quote

    from include.inbound import drift_alerts, payloads

    client = env["client"]
    before = _versions(client)
    manual = dags["train"].test(run_conf={"dataset_uri": first_champion})
    assert (str(manual.state), _states(manual)["train"]) == ("success", "skipped")
    assert fake_slack.messages == []

    payload = {"model": MODEL, "alert_id": "evidently-e2e-1", "status": "firing", "summary": "annual_income drifted",
               "dataset_uri": first_champion}
    (group,) = drift_alerts.group_by_model(drift_alerts.normalize(payloads.parse_payload(json.dumps(payload))))
    dag_run = dags["train"].test(run_conf=group.run_conf())  # the conf the webhook gives the run
    states = _states(dag_run)
    assert str(dag_run.state) == "success"
    assert (states["needs_training"], states["train"], states["register"]) == ("success", "skipped", "skipped")
    assert _versions(client) == before
    outcome = _mlflow_run(client, dag_run).data.tags["modelops.outcome"]
    version = outcome.removeprefix("skipped: version ").split()[0]
    assert version in {str(v) for v in before}

    (message,) = fake_slack.messages
    header, fields, summary, actions, links = message["blocks"]
    assert header["text"]["text"] == f":warning: WARNING · {MODEL}: retraining skipped: the data was already trained on"
    assert [f["text"] for f in fields["fields"]] == [f"*Model*\n{MODEL}", f"*Version*\n{version}"]
    text = summary["text"]["text"]
    assert f"Run `{dag_run.run_id}` of `train_{MODEL}` trained nothing: version {version} was already trained" in text
    assert "Started by: drift alert from project (evidently-e2e-1): annual_income drifted" in text
    assert f"Data: `{first_champion}` (fingerprint `sha256:" in text
    assert "The alert named this data in its `dataset_uri`" in text and "force=true" in text
    assert [(b["text"]["text"], b["url"]) for b in links["elements"]] == [
        ("Airflow run", f"http://localhost:8080/dags/train_{MODEL}/runs/{quote(dag_run.run_id)}")]  # [api] base_url unset
