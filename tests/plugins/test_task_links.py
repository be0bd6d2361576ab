"""The task instance links, end to end: real DAG runs, then the links Airflow shows for their tasks and where
they lead.

One MLflow store (SQLite) and a real Triton server for the module; the real DAGs run with ``dag.test()``: a
training run (version 1), a training run whose batch is quarantined, the promotion, the deployment to Triton
and a monitoring run over an hour of traffic. The MLflow connection names the store and the web UI's address
(``extra.ui_url``). Then:

* in this process, each task's links as the API server computes them (the serialized task's
  ``get_extra_links``, which asks the plugin's global links), checked against what the runs wrote to MLflow;
* through a real ``airflow api-server`` with the plugin: the core API's list of a task's links, and the
  plugin's routes behind them (Airflow's authentication, the redirects to the MLflow UI, Triton's state).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pytest
import yaml

from include import links
from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch
from tests.servers import airflow_api_server, airflow_tokens

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit_approval"
UI = "https://mlflow.links.test/ml"  # the connection's extra.ui_url (with a trailing slash there)
PASSWORDS = {"viewer": "links-viewer-4c1d", "nobody": "links-nobody-9e2a"}


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db, triton_venv):
    from include import tracking
    from include.serving.triton.server import TritonServer
    from include.serving.triton.server import free_port as triton_port

    tmp = tmp_path_factory.mktemp("links")
    shutil.copytree(ROOT / "config", tmp / "config")
    path = tmp / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["model"]["params"]["max_iter"] = 40
    path.write_text(yaml.safe_dump(raw))
    repo = tmp / "triton" / "models"
    repo.mkdir(parents=True)
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", store)
    mp.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "http", "extra": {"tracking_uri": store, "ui_url": f"{UI}/"}}))
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    mp.setenv("MODELOPS_DATA_DIR", str(tmp / "data"))
    mp.setenv("MODELOPS_INFERENCE_LOG", str(tmp / "inference_log"))
    with TritonServer(venv=triton_venv, log_path=tmp / "tritonserver.log").start(
        repo, http_port=triton_port(), grpc_port=triton_port(), metrics_port=triton_port()
    ) as server:
        server.wait_ready(60)
        mp.setenv("MODELOPS_TRITON_URL", server.url)
        mp.setenv("MODELOPS_TRITON_REPOSITORY", str(repo))
        yield {"tmp": tmp, "client": tracking.configure(store), "store": store, "triton_url": server.url}
    mp.undo()


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _run(dag, expect: str = "success", **kwargs):
    dag_run = dag.test(**kwargs)
    assert str(dag_run.state) == expect, _states(dag_run)
    return dag_run


def _traffic(env, version: str, hour: pd.Timestamp) -> None:
    """An hour of applications scored by ``version`` into the inference log."""
    import mlflow.pyfunc

    from include.config import get_model_config
    from include.monitoring import inference_log

    config = get_model_config(MODEL)
    batch = generate_batch(300, seed=11, start=hour.isoformat(), hours=1)
    features = batch[config.dataset.feature_names]
    scores = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}").predict(features)
    inference_log.log_predictions(MODEL, version, "online", features, scores, latency_ms=3.0,
                                  request_ids=batch["application_id"].tolist(), ts=batch["applied_at"])


@pytest.fixture(scope="module")
def runs(env) -> dict:
    """The DAG runs: train (v1), train on a quarantined batch, promote, deploy, monitor one hour."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dags = {kind: bag.get_dag(f"{kind}_{MODEL}") for kind in ("train", "promote", "deploy", "monitor")}
    clean, bad = env["tmp"] / "clean.parquet", env["tmp"] / "bad.parquet"
    write_dataset(generate_batch(3000, seed=5), str(clean))
    write_dataset(generate_batch(2000, seed=7, corruption="nulls"), str(bad))
    out = {"train": _run(dags["train"], run_conf={"dataset_uri": str(clean)})}
    out["quarantined"] = _run(dags["train"], "failed", run_conf={"dataset_uri": str(bad)})
    out["promote"] = _run(dags["promote"])
    out["deploy"] = _run(dags["deploy"])
    hour = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(hours=3)
    _traffic(env, "1", hour)
    out["monitor"] = _run(dags["monitor"], logical_date=(hour + pd.Timedelta(hours=1)).to_pydatetime())
    return out


# --- helpers: what the runs wrote, what Airflow shows --------------------------------------------------


def _extra_links(dag_run) -> dict[str, dict[str, str]]:
    """Each task's links as the API server computes them: the serialized task (of the DAG in Airflow's database)
    asked for every extra link it has, the plugin's global ones included; links without a URL left out."""
    from airflow.models.serialized_dag import SerializedDagModel

    dag = SerializedDagModel.get_dag(dag_run.dag_id)
    found = {}
    for ti in dag_run.get_task_instances():
        task = dag.get_task(ti.task_id)
        assert set(links.NAMES) <= set(task.extra_links), task.extra_links
        found[ti.task_id] = {name: url for name in task.extra_links if (url := task.get_extra_links(ti, name))}
    return found


def _training_run(env, dag_run):
    client = env["client"]
    (run,) = client.search_runs([client.get_experiment_by_name(f"modelops/{MODEL}").experiment_id],
                                filter_string=f"tags.`airflow.run_id` = '{dag_run.run_id}'")
    return run


def _return_value(dag_run, task_id: str):
    from modelops.links import return_value

    return return_value(dag_run.dag_id, dag_run.run_id, task_id)


def _route(dag_run, target: str) -> str:
    from modelops.links import route_url

    return route_url(dag_run.dag_id, target, dag_run.run_id)


def _ran(dag_run) -> set[str]:
    return {ti.task_id for ti in dag_run.get_task_instances() if ti.try_number > 0}


# --- the links, as the API server computes them ---------------------------------------------------------


def test_training_tasks_link_the_run_the_data_docs_and_the_registered_version(env, runs):
    dag_run = runs["train"]
    shown = _extra_links(dag_run)
    mlflow_run = _route(dag_run, "mlflow-run")
    assert mlflow_run == f"/modelops/links/train_{MODEL}/mlflow-run?run_id={_quoted(dag_run.run_id)}"
    for task_id in _ran(dag_run):
        assert shown[task_id][links.MLFLOW_RUN] == mlflow_run, task_id
    assert shown["validate"][links.DATA_DOCS] == _route(dag_run, "data-docs")
    assert {t for t, found in shown.items() if links.DATA_DOCS in found} == {"validate"}
    assert shown["register"][links.MODEL_VERSION] == f"{UI}/#/models/{MODEL}/versions/1"
    assert {t for t, found in shown.items() if links.MODEL_VERSION in found} == {"register"}
    assert not any(links.TRITON_STATUS in found or links.EVIDENTLY_REPORT in found for found in shown.values())


def test_a_quarantined_batch_still_links_its_run_and_data_docs_and_nothing_after(env, runs):
    dag_run = runs["quarantined"]
    shown = _extra_links(dag_run)
    assert _states(dag_run)["validate"] == "failed"
    assert shown["validate"] == {links.MLFLOW_RUN: _route(dag_run, "mlflow-run"),
                                 links.DATA_DOCS: _route(dag_run, "data-docs")}
    for task_id in set(shown) - _ran(dag_run):  # never ran: nothing to open
        assert shown[task_id] == {}, task_id
    assert shown["register"] == {}


def test_promotion_tasks_link_the_candidate_version(env, runs):
    shown = _extra_links(runs["promote"])
    assert str(_return_value(runs["promote"], "resolve_candidate")) == "1"  # Airflow's XCom reads "1" back as 1
    for task_id, found in shown.items():
        assert found == {links.MODEL_VERSION: f"{UI}/#/models/{MODEL}/versions/1"}, task_id


def test_deployment_tasks_link_the_deployed_version_and_tritons_status(env, runs):
    dag_run = runs["deploy"]
    shown = _extra_links(dag_run)
    assert _return_value(dag_run, "plan")["version"] == "1"
    for task_id in ("plan", "export", "load", "wait_ready", "verify", "mark_live", "roll_back_failed_deployment"):
        assert shown[task_id] == {links.MODEL_VERSION: f"{UI}/#/models/{MODEL}/versions/1",
                                  links.TRITON_STATUS: _route(dag_run, "triton")}, task_id


def test_monitoring_tasks_link_the_monitoring_run_and_the_hours_evidently_report(env, runs):
    dag_run = runs["monitor"]
    assessed = _return_value(dag_run, "assess")
    assert assessed["report_path"], assessed["assessment"]["notes"]
    shown = _extra_links(dag_run)
    assert shown["assess"] == {links.MLFLOW_RUN: _route(dag_run, "mlflow-run"),
                               links.EVIDENTLY_REPORT: _route(dag_run, "evidently-report"),
                               links.MODEL_VERSION: f"{UI}/#/models/{MODEL}/versions/1"}
    assert all(found == shown["assess"] for found in shown.values())


def test_other_dags_and_a_store_without_a_web_ui_get_no_mlflow_links(env, runs, monkeypatch):
    from airflow.models.taskinstancekey import TaskInstanceKey

    from modelops.links import task_links

    assert task_links(TaskInstanceKey("audit_ledger", "verify", "manual__x", 1, -1)) == {}
    deployed = next(ti for ti in runs["deploy"].get_task_instances() if ti.task_id == "plan").key
    trained = next(ti for ti in runs["train"].get_task_instances() if ti.task_id == "register").key
    assert set(task_links(deployed)) == {links.MODEL_VERSION, links.TRITON_STATUS}
    # A local SQLite store and no extra.ui_url: no MLflow web UI is known; Triton's status is still linked.
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "http", "extra": {"tracking_uri": env["store"]}}))
    assert task_links(deployed) == {links.TRITON_STATUS: _route(runs["deploy"], "triton")}
    assert task_links(trained) == {}
    # The tracking server's own http(s) address is its web UI's, never with its credentials.
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "http", "host": "mlflow.internal", "port": 5000, "login": "airflow", "password": "pw-7d3e"}))
    assert task_links(trained)[links.MODEL_VERSION] == f"http://mlflow.internal:5000/#/models/{MODEL}/versions/1"


def _quoted(run_id: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(run_id)


# --- through a real API server --------------------------------------------------------------------------


@dataclass
class Api:
    url: str
    tokens: dict[str, str]

    def get(self, path: str, user: str | None = "viewer") -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=60, follow_redirects=False)


@pytest.fixture(scope="module")
def api(env, runs, tmp_path_factory) -> Iterator[Api]:
    """``airflow api-server`` with the plugin, on this module's Airflow database, MLflow store, config and Triton;
    simple-auth users ``viewer`` and ``nobody`` (no role)."""
    tmp = tmp_path_factory.mktemp("links-api-server")
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    server_env = {"AIRFLOW__CORE__AUTH_MANAGER":
                      "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
                  "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer:viewer,nobody:",
                  "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                  "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False"}
    with airflow_api_server(tmp, server_env) as url:
        tokens = airflow_tokens(url, PASSWORDS)
        yield Api(url, tokens)


def _core_links(api: Api, dag_run, task_id: str) -> dict[str, str]:
    answer = api.get(f"/api/v2/dags/{dag_run.dag_id}/dagRuns/{dag_run.run_id}/taskInstances/{task_id}/links")
    assert answer.status_code == 200, answer.text
    return {name: url for name, url in answer.json()["extra_links"].items() if url}


def _followed(api: Api, link: str, user: str | None = "viewer") -> str:
    """Where following ``link`` (a path of the plugin's routes) leads: its redirect's target."""
    answer = api.get(link, user=user)
    assert answer.status_code == 307, answer.text
    return answer.headers["location"]


def test_the_api_server_lists_the_same_links_as_the_ui_shows(api, runs):
    for kind, task_id in (("train", "validate"), ("train", "register"), ("deploy", "mark_live"),
                          ("monitor", "assess"), ("quarantined", "register")):
        assert _core_links(api, runs[kind], task_id) == _extra_links(runs[kind])[task_id], (kind, task_id)


def test_the_run_and_data_docs_links_open_the_training_runs_pages(env, api, runs):
    client = env["client"]
    for kind in ("train", "quarantined"):
        dag_run = runs[kind]
        shown = _core_links(api, dag_run, "validate")
        run = _training_run(env, dag_run)
        experiment = run.info.experiment_id
        assert _followed(api, shown[links.MLFLOW_RUN]) == f"{UI}/#/experiments/{experiment}/runs/{run.info.run_id}"
        docs = _followed(api, shown[links.DATA_DOCS])
        prefix = f"{UI}/#/experiments/{experiment}/runs/{run.info.run_id}/artifacts/"
        assert docs.startswith(prefix + "validation/data_docs/validations/") and docs.endswith(".html"), docs
        page = docs.removeprefix(prefix)
        folder, name = page.rsplit("/", 1)
        assert name in {Path(a.path).name for a in client.list_artifacts(run.info.run_id, folder)}, page
    assert _training_run(env, runs["quarantined"]).data.tags["quarantine"] == "rejected"


def test_the_evidently_link_opens_the_report_the_hour_wrote(env, api, runs):
    dag_run = runs["monitor"]
    assessed = _return_value(dag_run, "assess")
    shown = _core_links(api, dag_run, "assess")
    monitoring = env["client"].get_run(assessed["monitoring_run_id"])
    base = f"{UI}/#/experiments/{monitoring.info.experiment_id}/runs/{monitoring.info.run_id}"
    assert _followed(api, shown[links.MLFLOW_RUN]) == base
    report = _followed(api, shown[links.EVIDENTLY_REPORT])
    assert report == f"{base}/artifacts/{assessed['report_path']}"
    hour = pd.Timestamp(assessed["window"]["start"])
    assert assessed["report_path"] == f"reports/{hour:%Y-%m-%d}/{hour:%H}00/data_drift.html"
    folder, name = assessed["report_path"].rsplit("/", 1)
    assert name in {Path(a.path).name for a in env["client"].list_artifacts(monitoring.info.run_id, folder)}


def test_the_triton_link_answers_tritons_state_of_the_deployed_version(env, api, runs):
    dag_run = runs["deploy"]
    link = _core_links(api, dag_run, "verify")[links.TRITON_STATUS]
    answer = api.get(link)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"], body["ready"]) == (MODEL, "1", True)
    assert body["versions"] == {"1": "READY"}
    assert (body["dag_id"], body["run_id"], body["triton_url"]) == (dag_run.dag_id, dag_run.run_id, env["triton_url"])
    assert body["detail"] == f"version 1 of {MODEL} is READY on Triton"


def test_the_routes_need_airflow_authentication_and_read_access(api, runs):
    link = _extra_links(runs["train"])["validate"][links.DATA_DOCS]
    assert api.get(link, user=None).status_code == 401
    assert api.get(link, user="nobody").status_code == 403
    plain = httpx.get(f"{api.url}{link}", headers={"Authorization": "Bearer not-a-token"}, timeout=30)
    assert plain.status_code in (401, 403)


def test_a_link_to_nothing_answers_404_saying_why(api, runs):
    train, monitor = runs["train"], runs["monitor"]
    answer = api.get(f"/modelops/links/{train.dag_id}/evidently-report?run_id={_quoted(train.run_id)}")
    assert answer.status_code == 404 and "produces nothing of this kind" in answer.json()["detail"]
    answer = api.get(f"/modelops/links/{train.dag_id}/mlflow-run?run_id=no-such-run")
    assert answer.status_code == 404
    assert "no MLflow run of" in answer.json()["detail"] and "no-such-run" in answer.json()["detail"]
    answer = api.get(f"/modelops/links/{monitor.dag_id}/triton?run_id={_quoted(monitor.run_id)}")
    assert answer.status_code == 404
    answer = api.get("/modelops/links/audit_ledger/mlflow-run?run_id=x")
    assert answer.status_code == 404 and "not a lifecycle DAG" in answer.json()["detail"]
    answer = api.get(f"/modelops/links/deploy_{MODEL}/triton?run_id=never-ran")
    assert answer.status_code == 404 and "deployed nothing" in answer.json()["detail"]
    assert urlsplit(_extra_links(train)["validate"][links.DATA_DOCS]).path.startswith("/modelops/links/")


def test_every_links_route_carries_the_airflow_access_check():
    from fastapi.routing import APIRoute

    from modelops.app import create_app
    from modelops.links import ROUTE_PREFIX, require_run_access

    found = [r for r in create_app().routes if isinstance(r, APIRoute) and r.path.startswith(f"{ROUTE_PREFIX}/")]
    assert {r.path for r in found} == {f"{ROUTE_PREFIX}/{{dag_id}}/{t}" for t in
                                       ("mlflow-run", "data-docs", "evidently-report", "triton")}
    for route in found:
        assert require_run_access in [d.call for d in route.dependant.dependencies], route.path
