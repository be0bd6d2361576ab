"""End to end: the retire and restore DAGs with ``dag.test()``, against a real MLflow store, a real Triton
server, a local archive folder and the fake Slack webhook.

One registry for the module, used as a scenario (the credit model trained once, registered as five versions):

* version 1: no alias, but exported and loaded on Triton: protected;
* version 2: ``@champion``: protected;
* versions 3 and 4: candidates (``manual``); version 3 was exported and unloaded (its files remain);
* version 5: a candidate whose registered source holds no model: its archive step fails, and only its own.

Then: the retire DAG without Triton (refused before anything), in dry run (only its plan record), for
real (3 and 4 archived, unloaded and retired; 5 fails alone; 1 and 2 untouched), and the restore DAG
bringing version 3 back as a new version.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from threadpoolctl import threadpool_limits

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
    from tests.fakes.slack import FakeSlack

    tmp = tmp_path_factory.mktemp("retire")
    shutil.copytree(ROOT / "config", tmp / "config")
    repo = tmp / "triton" / "models"
    repo.mkdir(parents=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    with TritonServer(venv=triton_venv, log_path=tmp / "tritonserver.log").start(
        repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    ) as server, FakeSlack() as slack:
        server.wait_ready(60)
        mp.setenv("MODELOPS_TRITON_URL", server.url)
        mp.setenv("MODELOPS_TRITON_REPOSITORY", str(repo))
        mp.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps(slack.connection()))
        with TritonClient(server.url) as triton:
            yield {"tmp": tmp, "client": tracking.configure(), "triton": triton, "repo": repo, "slack": slack,
                   "archive": tmp / "archive", "server_url": server.url, "mp": mp}
    mp.undo()


@pytest.fixture(scope="module")
def dags(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return {kind: bag.get_dag(f"{kind}_{MODEL}") for kind in ("retire", "restore")}


def _set_retirement(env, **settings):
    path = env["tmp"] / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["retirement"] = {"archive_uri": str(env["archive"]), **settings}
    path.write_text(yaml.safe_dump(raw))


@pytest.fixture(scope="module")
def versions(env):
    """Versions 1-5 as the module docstring describes them."""
    from include import tracking
    from include.config import get_model_config
    from include.promotion import registry
    from include.serving.triton.repository import export_version, set_served_versions
    from include.training.train import train

    client, repo = env["client"], env["repo"]
    config = get_model_config(MODEL)
    data = env["tmp"] / "train.parquet"
    write_dataset(generate_batch(2000, seed=7), str(data))
    run_id = tracking.upsert_run(client, config.experiment_name, {"test.retire": "1"}, "retire-e2e")
    with threadpool_limits(1):  # HistGradientBoosting's OpenMP threads crawl on a busy 2-core machine
        model_uri = train(config, str(data), run_id)
    tracking.close_run(client, run_id, "FINISHED", "trained")
    registry.ensure_registered_model(client, MODEL)
    for _ in range(4):
        client.create_model_version(MODEL, model_uri, run_id=run_id, model_id=model_uri.removeprefix("models:/"))
    not_a_model = env["tmp"] / "not_a_model"
    not_a_model.mkdir()
    (not_a_model / "README").write_text("no MLmodel here\n")
    client.create_model_version(MODEL, str(not_a_model), run_id=run_id)
    registry.promote(client, MODEL, "2", actor="tester", reason="the champion")
    export_version(client, MODEL, "1", config, repo)
    shutil.copytree(repo / MODEL / "1", repo / MODEL / "3")  # exported files of a version Triton does not serve
    set_served_versions(repo, MODEL, ["1"])
    env["triton"].load(MODEL)
    env["triton"].wait_ready(MODEL, "1", timeout=120)
    _set_retirement(env, manual=["1", "2", "3", "4", "5"])
    return ["1", "2", "3", "4", "5"]


def _states(dag_run) -> dict[str, str]:
    """``{task_id or task_id[map_index]: state}``."""
    return {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state)
            for ti in dag_run.get_task_instances()}


def _registry(env) -> dict:
    from include.governance.retirement import all_versions, registry_aliases

    client = env["client"]
    return {"tags": {str(v.version): dict(v.tags) for v in all_versions(client, MODEL)},
            "aliases": registry_aliases(client, MODEL)}


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _records(since: int = 0):
    from include.governance.ledger import default_ledger

    return [e for e in default_ledger().records(model=MODEL) if e.seq > since]


def _head() -> int:
    from include.governance.ledger import default_ledger

    head = default_ledger().head()
    return head.seq if head else 0


def test_mark_retired_runs_in_the_models_alias_pool(dags):
    from include.dag_ids import alias_pool

    dag = dags["retire"]
    assert dag.get_task("retire_version.mark_retired").pool == alias_pool(MODEL)
    group = dag.task_group_dict["retire_version"]
    assert type(group).__name__ == "MappedTaskGroup"  # one set of task instances per candidate
    assert {t.task_id for t in dag.tasks if t.task_group is group} == {
        "retire_version.archive", "retire_version.verify", "retire_version.unload", "retire_version.mark_retired"}


def test_without_triton_nothing_is_evaluated(env, dags, versions):
    before, seq = _registry(env), _head()
    env["mp"].setenv("MODELOPS_TRITON_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    try:
        dag_run = dags["retire"].test(run_conf={"dry_run": False})
    finally:
        env["mp"].setenv("MODELOPS_TRITON_URL", env["server_url"])

    states = _states(dag_run)
    assert str(dag_run.state) == "failed", states
    assert states["evaluate"] == "failed"
    assert _registry(env) == before
    assert [e.action for e in _records(seq)] == []
    assert _files(env["archive"]) == []


@pytest.fixture(scope="module")
def dry_run(env, dags, versions):
    before, files, seq = _registry(env), _files(env["repo"]), _head()
    env["slack"].clear()
    dag_run = dags["retire"].test(run_conf={"dry_run": True})
    return {"run": dag_run, "before": before, "files": files, "seq": seq}


def test_a_dry_run_reports_and_records_its_plan_and_changes_nothing(env, dry_run):
    states = _states(dry_run["run"])
    assert str(dry_run["run"].state) == "success", states
    assert states["evaluate"] == states["notify_owners"] == "success"
    assert {s for t, s in states.items() if t.startswith("retire_version.")} <= {"skipped"}
    assert _registry(env) == dry_run["before"]  # tags and aliases
    assert _files(env["archive"]) == []
    assert _files(env["repo"]) == dry_run["files"]  # version 3's exported files are still there
    (planned,) = _records(dry_run["seq"])
    assert (planned.action, planned.versions, planned.details["dry_run"]) == ("retire_planned", ("3", "4", "5"), True)
    assert {p["version"]: p["why"] for p in planned.details["protected"]} == {
        "1": ["loaded on Triton (READY)"], "2": ["@champion"]}
    (message,) = [m for m in env["slack"].messages if "retirement dry run" in m["text"]]
    assert "3 versions would be retired" in message["text"]
    assert "dry run: nothing was archived, unloaded or retired" in message["text"]


@pytest.fixture(scope="module")
def real_run(env, dags, dry_run):
    before, seq = _registry(env), _head()
    env["slack"].clear()
    dag_run = dags["retire"].test(run_conf={"dry_run": False})
    return {"run": dag_run, "before": before, "seq": seq}


def test_candidates_are_archived_unloaded_and_retired_each_on_its_own(env, real_run):
    from include.governance.archive import LocalArchiveStore, verify

    client = env["client"]
    states = _states(real_run["run"])
    assert str(real_run["run"].state) == "failed", states  # version 5 could not be archived
    assert states["evaluate"] == states["notify_owners"] == "success"
    # mapped in candidate order 3, 4, 5: the first two complete, the third stops at its archive step
    for step in ("archive", "verify", "unload", "mark_retired"):
        assert (states[f"retire_version.{step}[0]"], states[f"retire_version.{step}[1]"]) == ("success", "success")
    assert states["retire_version.archive[2]"] == "failed"
    assert {states[f"retire_version.{s}[2]"] for s in ("verify", "unload", "mark_retired")} == {"upstream_failed"}

    store = LocalArchiveStore(env["archive"])
    for version in ("3", "4"):
        tags = client.get_model_version(MODEL, version).tags
        assert (tags["retired"], tags["retired.archive"]) == ("true", f"{store.uri}/{MODEL}/{version}")
        assert tags["retired.reason"] == "manual: listed in retirement.manual"
        assert verify(store, f"{MODEL}/{version}").version == version
    assert not (env["repo"] / MODEL / "3").exists()
    assert env["triton"].model_ready(MODEL, "1")  # still serving
    after = _registry(env)
    for version in ("1", "2", "5"):
        assert after["tags"][version] == real_run["before"]["tags"][version], version
    assert after["aliases"] == {"champion": "2"}
    assert not store.exists(f"{MODEL}/5/manifest.json")

    by_version: dict[str, list[str]] = {}
    for entry in _records(real_run["seq"]):
        for version in entry.versions:
            by_version.setdefault(version, []).append(entry.action)
    assert by_version["3"] == by_version["4"] == [
        "retire_planned", "archived", "archive_verified", "unloaded", "retired"]
    assert by_version["5"] == ["retire_planned", "retire_failed"]
    assert "1" not in by_version and "2" not in by_version
    (failed,) = [e for e in _records(real_run["seq"]) if e.action == "retire_failed"]
    assert failed.details["step"] == "archive" and "holds no MLmodel file" in failed.details["error"]
    assert failed.dag_id == f"retire_{MODEL}" and failed.run_id == real_run["run"].run_id

    (notice,) = [m for m in env["slack"].messages if m["text"].startswith("[INFO] credit_approval: retirement:")]
    assert "3 versions to retire" in notice["text"]
    assert f"archiving, verifying, unloading and retiring versions 3, 4, 5 in run {real_run['run'].run_id}" \
        in notice["text"]


def test_the_restore_dag_brings_a_retired_version_back_as_a_new_version(env, dags, real_run):
    client = env["client"]
    dag_run = dags["restore"].test(run_conf={"version": "3", "reason": "auditor asked for it"})
    states = _states(dag_run)
    assert str(dag_run.state) == "success", states

    new = max(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))
    assert int(new) == 6
    restored = client.get_model_version(MODEL, new)
    assert restored.tags["restored_from"] == f"{MODEL}/3"
    assert "retired" not in restored.tags and not restored.aliases
    (record,) = [e for e in _records(real_run["seq"]) if e.action == "restore"]
    assert (record.version, record.versions, record.reason) == (new, (new, "3"), "auditor asked for it")
    assert record.details["restored_from"] == f"{MODEL}/3"
    assert record.dag_id == f"restore_{MODEL}"


def test_the_restore_dag_fails_for_a_version_never_archived(env, dags, real_run):
    dag_run = dags["restore"].test(run_conf={"version": "5", "reason": "restore from the archive"})
    states = _states(dag_run)
    assert str(dag_run.state) == "failed", states
    assert states["check_archive"] == "failed" and states["restore"] == "upstream_failed"
