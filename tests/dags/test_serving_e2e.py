"""End to end: the deploy and rollback DAGs against a real Triton server and a real MLflow store.

A scenario on one registry and one server: version 1 trained, promoted and deployed; version 2
deployed beside it; a broken version 3 (its registry artifact corrupted) rolls itself back while
version 2 keeps serving; a deploy of a version that is not the champion is refused; the rollback
DAG steps back once, and only once, and never to a version it rolled back from; refused targets
change nothing; a forced rollback to the broken version leaves the champion serving. After each
step the ``serving.triton`` tags agree with Triton's own status: exactly one version is live.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit_approval"


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db, triton_venv):
    from include import tracking
    from include.serving.triton.client import TritonClient
    from include.serving.triton.server import TritonServer, free_port

    tmp = tmp_path_factory.mktemp("serving")
    shutil.copytree(ROOT / "config", tmp / "config")
    repo = tmp / "triton" / "models"
    repo.mkdir(parents=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
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
    """What Triton answers for the model without a version: (probabilities, the version that answered)."""
    from include.data.dataset import read_dataset

    frame = read_dataset(env["data"]).head(rows)
    features = frame[[c for c in frame.columns if c not in ("defaulted", "repaid_amount")]]
    return env["triton"].infer_with_version(MODEL, features)


def _serving_tags(env):
    versions = env["client"].search_model_versions(f"name = '{MODEL}'")
    return {str(v.version): v.tags["serving.triton"] for v in versions if "serving.triton" in v.tags}


def _assert_tags_match_triton(env):
    """Exactly one version is tagged live: the one Triton answers with; the other loaded ones are standby."""
    index = [e for e in env["triton"].repository_index() if e.get("name") == MODEL and e.get("version")]
    ready = sorted((str(e["version"]) for e in index if e.get("state") == "READY"), key=int)
    tags = _serving_tags(env)
    live = [v for v, tag in tags.items() if tag == "live"]
    assert live == ready[-1:], (tags, index)
    assert sorted((v for v, tag in tags.items() if tag in ("live", "standby")), key=int) == ready, (tags, index)
    _, answered = _served(env, rows=2)
    assert [answered] == live, (tags, index)
    return tags


def _rollback_conf(**params):
    """Every param spelled out: dag.test() keeps the previous run's params on the DAG object."""
    return {"target_version": None, "reason": "manual rollback", "force": False, "from_version": None, **params}


def _actions(env, version):
    from include.governance import audit

    return [r["action"] for r in audit.read(env["client"], MODEL, version)]


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
    assert _assert_tags_match_triton(env) == {v1: "standby", v2: "live"}
    tags = client.get_model_version(MODEL, v2).tags
    assert any('"action": "deploy"' in v for k, v in tags.items() if k.startswith("audit."))


@pytest.fixture(scope="module")
def broken(env, dags, two_deployed):
    """A third champion whose registry artifact is corrupt (every model file truncated), deployed:
    its version and the deploy run's task states."""
    client = env["client"]
    v3 = _new_champion(env, dags, max_iter=70)
    assert v3 not in two_deployed
    local = Path(client.get_model_version_download_uri(MODEL, v3).removeprefix("file://"))
    for f in local.rglob("*"):
        if f.is_file() and f.name != "MLmodel":
            f.write_bytes(b"corrupt")
    return v3, _run(dags["deploy"], expect="failed")


def test_broken_version_rolls_back_automatically(env, two_deployed, broken):
    v1, v2 = two_deployed
    v3, states = broken
    client = env["client"]
    assert states["roll_back_failed_deployment"] == "success"
    assert states["mark_live"] != "success"
    assert _champion(env) == v2
    assert env["triton"].model_ready(MODEL, v2)
    assert not env["triton"].model_ready(MODEL, v3)
    scores, answered = _served(env)
    assert answered == v2 and scores.shape == (5,)
    assert _assert_tags_match_triton(env) == {v1: "unloaded", v2: "live"}
    assert {"rollback", "deploy_failed"} <= set(_actions(env, v3))
    assert str(client.get_model_version_by_alias(MODEL, "previous_champion").version) == v1


def test_deploy_of_a_version_that_is_not_the_champion_is_refused(env, dags, two_deployed):
    v1, v2 = two_deployed
    states = _run(dags["deploy"], {"version": v1}, expect="failed")
    assert states["plan"] == "failed"
    assert states["roll_back_failed_deployment"] == "skipped"
    assert _champion(env) == v2
    assert _assert_tags_match_triton(env)[v2] == "live"


def test_manual_rollback_steps_back_once(env, dags, two_deployed):
    v1, v2 = two_deployed
    assert _champion(env) == v2
    conf = _rollback_conf(target_version=v1, reason="kpi drop")
    states = _run(dags["rollback"], conf)
    assert states["restore_after_failed_rollback"] == "skipped"
    assert _champion(env) == v1
    assert env["triton"].model_ready(MODEL, v1)
    assert not env["triton"].model_ready(MODEL, v2)
    # version 2 is unloaded and says so; version 1 alone is live
    assert _assert_tags_match_triton(env) == {v1: "live", v2: "unloaded"}
    aliases = env["client"].get_registered_model(MODEL).aliases
    assert "previous_champion" not in aliases  # nothing before 1: neither 1 itself nor 2

    _run(dags["rollback"], conf)  # the same rollback again: nothing moves
    states = _run(dags["rollback"], _rollback_conf(reason="again"), expect="failed")  # no champion before 1
    assert states["roll_back"] == "failed" and states["export"] == "upstream_failed"
    assert _champion(env) == v1
    rollbacks = [r for r in _actions(env, v1) if r == "rollback"]
    assert len(rollbacks) == 1
    _assert_tags_match_triton(env)


@pytest.mark.parametrize(("target", "force"), [
    ("missing", False),  # no such version in the registry
    ("broken", False),  # retired (tagged below), and failed its deployment
    ("rolled_back_from", False),  # the manual rollback stepped back from it
    ("rolled_back_from", True),  # forced, but without a reason of its own
])
def test_refused_rollbacks_change_nothing(env, dags, two_deployed, broken, target, force):
    client = env["client"]
    v1, v2 = two_deployed
    v3, _ = broken
    assert _champion(env) == v1  # after the manual rollback from v2
    existing = [int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")]
    version = {"missing": str(max(existing) + 100), "broken": v3, "rolled_back_from": v2}[target]
    client.set_model_version_tag(MODEL, v3, "retired", "true")
    before = _champion(env), _serving_tags(env), _served(env)[1]
    try:
        states = _run(dags["rollback"], _rollback_conf(target_version=version, force=force), expect="failed")
    finally:
        client.delete_model_version_tag(MODEL, v3, "retired")
    assert states["roll_back"] == "failed"
    assert (_champion(env), _serving_tags(env), _served(env)[1]) == before
    assert before[2] == v1


def test_monitoring_rollback_goes_to_the_champion_before_and_only_once(env, dags, two_deployed):
    v1, v2 = two_deployed
    _run(dags["promote"], {"version": v2})  # the promotion DAG passes version 2 again
    _run(dags["deploy"], {"version": None})
    assert _assert_tags_match_triton(env) == {v1: "standby", v2: "live"}
    conf = _rollback_conf(from_version=v2, reason="monitoring: critical drift and KPI drop")

    _run(dags["rollback"], conf)

    assert _champion(env) == v1
    assert _assert_tags_match_triton(env) == {v1: "live", v2: "unloaded"}
    states = _run(dags["rollback"], conf)  # a second trigger for the same hour's alert: stale, nothing to do
    assert states["roll_back"] == "skipped" and states["switch"] == "skipped"
    assert _champion(env) == v1


def test_forced_rollback_to_a_broken_version_leaves_the_champion_serving(env, dags, two_deployed, broken):
    from include.governance import audit

    v1, _v2 = two_deployed
    v3, _ = broken
    states = _run(dags["rollback"], _rollback_conf(target_version=v3, force=True, reason="drill: force a bad one"),
                  expect="failed")
    assert states["roll_back"] == "success"
    assert states["export"] == "failed"
    assert states["restore_after_failed_rollback"] == "success"
    assert states["switch"] != "success"
    assert _champion(env) == v1
    assert _assert_tags_match_triton(env)[v1] == "live"
    assert _served(env)[1] == v1
    last = audit.read(env["client"], MODEL, v3)[-1]
    assert last["action"] == "deploy_failed" and last["details"]["champion"] == v1


def test_online_predictions_are_logged_with_the_serving_version(env, two_deployed):
    """Triton itself logs the rows (the client writes nothing), under the caller's ids and the version that answered."""
    v1, _v2 = two_deployed
    import time
    from datetime import UTC, datetime, timedelta

    from include.data.dataset import read_dataset
    from include.monitoring import inference_log
    from include.serving.online import predict

    frame = read_dataset(env["data"]).head(20)
    features = frame[[c for c in frame.columns if c not in ("application_id", "applied_at", "defaulted", "repaid_amount")]]
    ids = [f"e2e-{i}" for i in frame["application_id"]]
    scores = predict(MODEL, features, client=env["triton"], request_ids=ids)
    assert scores.shape == (20,) and ((scores >= 0) & (scores <= 1)).all()

    deadline = time.monotonic() + 20  # the server's writer flushes every few seconds (serving.inference_log)
    while True:
        now = datetime.now(UTC)
        logged = inference_log.read_range(MODEL, now - timedelta(hours=1), now + timedelta(minutes=1))
        logged = logged[logged["request_id"].isin(ids)]
        if len(logged) >= len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(logged["request_id"]) == sorted(ids)  # once each: no client-side copy
    assert _champion(env) == v1  # the forced rollback to the broken version left v1 champion
    assert set(logged["model_version"]) == {v1} == {_served(env)[1]}  # logged: the version Triton answered with
    assert set(logged["source"]) == {"online"} and set(logged["role"]) == {"live"}
    assert logged.set_index("request_id").loc[ids, "prediction"].to_numpy() == pytest.approx(scores)
