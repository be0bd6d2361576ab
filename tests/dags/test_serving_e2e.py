"""End to end: the deploy and rollback DAGs against a real Triton server and a real MLflow store.

A scenario on one registry and one server: version 1 trained, promoted and deployed; version 2
deployed beside it; a broken version 3 (its registry artifact corrupted) rolls itself back while
version 2 keeps serving; the rollback DAG steps back once, and only once; bad targets change nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from include.datagen import generate_batch
from include.dataset import write_dataset

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit_approval"


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db, triton_venv):
    from include import tracking
    from include.triton.client import TritonClient
    from include.triton.server import TritonServer, free_port

    tmp = tmp_path_factory.mktemp("serving")
    shutil.copytree(ROOT / "config", tmp / "config")
    repo = tmp / "triton" / "models"
    repo.mkdir(parents=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    import include.config

    mp.setattr(include.config, "CONFIG_DIR", tmp / "config")
    with TritonServer(venv=triton_venv, log_path=tmp / "tritonserver.log").start(
        repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    ) as server:
        server.wait_ready(60)
        mp.setenv("MODELOPS_TRITON_URL", server.url)
        mp.setenv("MODELOPS_TRITON_REPOSITORY", str(repo))
        data = tmp / "train.parquet"
        write_dataset(generate_batch(3000, seed=5), str(data))
        yield {"tmp": tmp, "client": tracking.configure(), "triton": TritonClient(server.url), "data": str(data),
               "repo": repo}
    mp.undo()


@pytest.fixture(scope="module")
def dags(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return {kind: bag.get_dag(f"{kind}_{MODEL}") for kind in ("train", "promote", "deploy", "rollback")}


def _states(dag_run):
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _run(dag, conf=None, expect="success"):
    dag_run = dag.test(run_conf=conf)
    assert str(dag_run.state) == expect, _states(dag_run)
    return _states(dag_run)


def _champion(env):
    return str(env["client"].get_model_version_by_alias(MODEL, "champion").version)


def _set_params(env, **params):
    path = env["tmp"] / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["model"]["params"].update(params)
    path.write_text(yaml.safe_dump(raw))


def _new_champion(env, dags, **params):
    """Train with ``params`` and promote: returns the new champion version."""
    _set_params(env, **params)
    _run(dags["train"], {"dataset_uri": env["data"]})
    _run(dags["promote"])
    return _champion(env)


def _served(env, rows=5):
    """What Triton answers for the model without a version: the version that serves."""
    from include.dataset import read_dataset

    frame = read_dataset(env["data"]).head(rows)
    return env["triton"].infer(MODEL, frame[[c for c in frame.columns if c not in ("defaulted", "repaid_amount")]])


@pytest.fixture(scope="module")
def two_deployed(env, dags):
    v1 = _new_champion(env, dags)
    _run(dags["deploy"])
    v2 = _new_champion(env, dags, max_iter=60)
    _run(dags["deploy"])
    return v1, v2


def test_deploy_serves_the_champion_verified_and_keeps_the_previous_loaded(env, two_deployed):
    v1, v2 = two_deployed
    client, triton = env["client"], env["triton"]
    assert triton.model_ready(MODEL, v2) and triton.model_ready(MODEL, v1)  # instant switch back
    tags = client.get_model_version(MODEL, v2).tags
    assert tags["serving.triton"] == "live"
    assert any('"action": "deploy"' in v for k, v in tags.items() if k.startswith("audit."))


def test_broken_version_rolls_back_automatically(env, dags, two_deployed):
    _v1, v2 = two_deployed
    client = env["client"]
    v3 = _new_champion(env, dags, max_iter=70)
    # Corrupt the registry artifact of v3: every model file truncated.
    local = Path(client.get_model_version_download_uri(MODEL, v3).removeprefix("file://"))
    for f in local.rglob("*"):
        if f.is_file() and f.name != "MLmodel":
            f.write_bytes(b"corrupt")

    states = _run(dags["deploy"], expect="failed")
    assert states["roll_back_failed_deployment"] == "success"
    assert states["mark_live"] != "success"
    assert _champion(env) == v2
    assert env["triton"].model_ready(MODEL, v2)
    assert not env["triton"].model_ready(MODEL, v3)
    assert len(_served(env)) == 5
    records = [v for k, v in client.get_model_version(MODEL, v3).tags.items() if k.startswith("audit.")]
    assert any('"action": "rollback"' in r for r in records)


def test_rollback_dag_steps_back_once(env, dags, two_deployed):
    from include import audit

    v1, v2 = two_deployed
    assert _champion(env) == v2
    conf = {"target_version": v1, "reason": "kpi drop"}
    _run(dags["rollback"], conf)
    assert _champion(env) == v1
    assert env["triton"].model_ready(MODEL, v1)
    assert not env["triton"].model_ready(MODEL, v2)
    _run(dags["rollback"], conf)  # the same rollback again
    _run(dags["rollback"], {"reason": "kpi drop"})  # and to @previous_champion, which now is v1
    assert _champion(env) == v1
    rollbacks = [r for r in audit.read(env["client"], MODEL, v1) if r["action"] == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0]["reason"] == "kpi drop"


@pytest.mark.parametrize("target", ["999", "3"])
def test_rollback_to_a_missing_or_retired_version_changes_nothing(env, dags, two_deployed, target):
    client = env["client"]
    client.set_model_version_tag(MODEL, "3", "retired", "true")
    before = _champion(env)
    states = _run(dags["rollback"], {"target_version": target, "reason": "bad target"}, expect="failed")
    assert states["roll_back"] == "failed"
    assert _champion(env) == before


def test_online_predictions_are_logged_with_the_serving_version(env, two_deployed):
    from datetime import UTC, datetime, timedelta

    from include import inference_log
    from include.dataset import read_dataset
    from include.online import predict

    frame = read_dataset(env["data"]).head(20)
    features = frame[[c for c in frame.columns if c not in ("application_id", "applied_at", "defaulted", "repaid_amount")]]
    ids = frame["application_id"].tolist()
    scores = predict(MODEL, features, client=env["triton"], request_ids=ids, log_root=str(env["tmp"] / "log"))
    assert scores.shape == (20,) and ((scores >= 0) & (scores <= 1)).all()

    now = datetime.now(UTC)
    logged = inference_log.read_range(MODEL, now - timedelta(hours=1), now + timedelta(minutes=1), root=str(env["tmp"] / "log"))
    assert sorted(logged["request_id"]) == sorted(ids)
    assert set(logged["model_version"]) == {_champion(env)}
    assert set(logged["source"]) == {"online"}
    assert logged.set_index("request_id").loc[ids, "prediction"].to_numpy() == pytest.approx(scores)
