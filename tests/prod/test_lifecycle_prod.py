"""The lifecycle as it runs in production, driven by the scheduler alone (no ``dag.test()``).

On the loopback production stack (Airflow's scheduler, DAG processor, triggerer and a Celery worker
on PostgreSQL and Redis; an MLflow tracking server on PostgreSQL with S3 artifacts; Triton):

1. ``train_<model>`` is triggered over Airflow's REST API, as a user or CI would; the scheduler runs
   it, the ``@challenger`` asset event starts the promotion, the ``@champion`` asset event starts
   the deployment, and Triton answers with the new champion. The registry is read through the
   tracking server; the model's files are in the S3 bucket.
2. A signed drift alert posted to the webhook starts a retraining run on the data it names; the
   scheduler runs it, and the retrained version goes through the same chain to Triton.

Prints the time from the trigger (and from the alert) to the new champion live on Triton.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from include.inbound.signatures import signed_headers
from tests.prod.flows import (
    DEPLOY,
    MODEL,
    PROMOTE,
    TRAIN,
    champion_goes_live,
    known,
    records,
    states,
    succeeds,
    training_data,
)

pytestmark = pytest.mark.prod_stack
WEBHOOK = "/modelops/api/v1/drift-alerts"


def _triton_answers_with(prod, version: str) -> None:
    from include.config import get_model_config
    from include.demo.datagen import generate_batch
    from include.serving.triton.client import TritonClient

    features = generate_batch(20, seed=11)[get_model_config(MODEL).dataset.feature_names]
    scores, answered = TritonClient(prod.stack.triton_url).infer_with_version(MODEL, features)
    assert answered == version and scores.shape == (20,)


def _version_of_run(client, mlflow_run_id: str):
    found = client.search_model_versions(f"name = '{MODEL}' and run_id = '{mlflow_run_id}'")
    assert len(found) == 1, [v.version for v in found]  # exactly one version per training run
    return found[0]


def _actions(prod, version: str) -> list[str]:
    return [r["action"] for r in records(prod, version)]


def _model_files_in_s3(prod, client, version) -> list[str]:
    """The S3 keys of ``version``'s model files, found from where the tracking server says they are."""
    model_id = version.source.removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location
    assert location.startswith("mlflow-artifacts:"), location  # proxied by the server, stored in S3
    prefix = location.removeprefix("mlflow-artifacts:").lstrip("/")
    return [key for key in prod.s3_keys() if key.startswith(prefix + "/")]


@pytest.fixture(scope="module")
def first_champion(prod):
    """``train_<model>`` triggered over REST on the model's default data (``force``: another test on this stack may
    have trained on it already); the scheduler does the rest."""
    before_runs = known(prod, TRAIN, PROMOTE, DEPLOY)
    t0 = time.monotonic()
    run = prod.airflow.trigger(TRAIN, {"force": True})
    assert run["state"] == "queued" and run["run_type"] == "manual"
    succeeds(prod, TRAIN, run["dag_run_id"])
    trained = time.monotonic()
    promotion, deployment = champion_goes_live(prod, before_runs)
    live = time.monotonic()
    print(f"\ntrigger -> champion live on Triton: {live - t0:.0f} s (training run {trained - t0:.0f} s, "
          f"promotion + deployment {live - trained:.0f} s)")
    return {"run": run, "promotion": promotion, "deployment": deployment, "elapsed_s": live - t0}


def test_the_scheduler_trains_promotes_and_deploys_the_champion(prod, first_champion):
    client = prod.mlflow()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    registered = records(prod, champion.version, "register")
    assert [r["run_id"] for r in registered] == [first_champion["run"]["dag_run_id"]]  # from the run we triggered
    assert _version_of_run(client, champion.run_id).version == champion.version
    assert champion.tags["gates.result"] == "passed"
    assert champion.tags["serving.triton"] == "live"
    assert {"register", "promote", "deploy"} <= set(_actions(prod, champion.version))
    assert "challenger" not in client.get_registered_model(MODEL).aliases  # consumed by the promotion
    _triton_answers_with(prod, str(champion.version))


def test_the_champions_files_are_in_s3(prod, first_champion):
    client = prod.mlflow()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    files = _model_files_in_s3(prod, client, champion)
    names = {key.rsplit("/", 1)[-1] for key in files}
    assert {"MLmodel", "requirements.txt"} <= names, files
    run = client.get_run(champion.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    run_prefix = run.info.artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
    assert any(key.startswith(run_prefix + "/reference_profile/") for key in prod.s3_keys())


def test_a_signed_drift_alert_retrains_and_the_new_champion_goes_live(prod, first_champion):
    client = prod.mlflow()
    before = client.get_model_version_by_alias(MODEL, "champion")
    data = training_data(prod, "snapshot-2", seed=2)
    alert = {"version": "4", "status": "firing", "receiver": "modelops", "groupKey": "{}:{alertname=\"FeatureDrift\"}",
             "alerts": [{"status": "firing", "labels": {"alertname": "FeatureDrift", "model": MODEL},
                         "annotations": {"summary": "annual_income drifted", "dataset_uri": data},
                         "startsAt": "2026-11-22T10:00:00Z", "fingerprint": "a1b2c3d4e5f60718"}]}
    body = json.dumps(alert).encode()
    before_runs = known(prod, TRAIN, PROMOTE, DEPLOY)

    t0 = time.monotonic()
    answer = httpx.post(f"{prod.stack.airflow_url}{WEBHOOK}", content=body, timeout=60,
                        headers={"Content-Type": "application/json", **signed_headers(prod.webhook_secret, body)})

    assert answer.status_code == 200, answer.text
    (started,) = answer.json()["runs"]
    assert started["dag_id"] == TRAIN and started["created"] is True
    run = succeeds(prod, TRAIN, started["run_id"])
    assert run["conf"]["dataset_uri"] == data
    assert states(prod, TRAIN, started["run_id"])["register"] == "success"  # trained, not skipped
    retrained = time.monotonic()
    champion_goes_live(prod, before_runs)
    live = time.monotonic()
    print(f"\ndrift alert -> retrained champion live on Triton: {live - t0:.0f} s "
          f"(retraining run {retrained - t0:.0f} s, promotion + deployment {live - retrained:.0f} s)")

    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert int(champion.version) == int(before.version) + 1
    assert [r["run_id"] for r in records(prod, champion.version, "register")] == [started["run_id"]]
    assert champion.tags["dataset_uri"] == data
    assert champion.tags["data_fingerprint"] != before.tags["data_fingerprint"]
    assert str(client.get_model_version_by_alias(MODEL, "previous_champion").version) == str(before.version)
    assert champion.tags["serving.triton"] == "live"
    assert client.get_model_version(MODEL, before.version).tags["serving.triton"] == "standby"
    _triton_answers_with(prod, str(champion.version))
    assert _model_files_in_s3(prod, client, champion)
