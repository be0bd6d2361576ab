"""End to end: a challenger must win on live traffic (shadow) before the promotion DAG promotes it.

Real Triton, real MLflow (SQLite), the real train / promote / deploy DAGs with ``dag.test()``. The model's
config asks for ``serving.challenger.mode: shadow`` and a ``shadow`` gate. While the promotion DAG waits
(deferred: ``dag.test`` runs the trigger in this process), a background thread plays live traffic with
plain HTTP requests and runs the hourly assessment, which is where the evidence comes from.

* version 1: nothing to compare with, the gate passes at once; deployed;
* version 2 with a lenient gate: shadowed, judged on the evidence, promoted, deployed; the deployment
  takes its challenger copy off Triton;
* version 3 with a gate it cannot pass: shadowed, rejected; the champion stays version 2 and the
  challenger is taken off Triton.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
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

    tmp = tmp_path_factory.mktemp("shadow")
    shutil.copytree(ROOT / "config", tmp / "config")
    repo, log_root = tmp / "triton" / "models", tmp / "inference_log"
    repo.mkdir(parents=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    mp.setenv("MODELOPS_INFERENCE_LOG", str(log_root))
    _configure(tmp, min_agreement=0.5, max_drop=0.5)
    with TritonServer(venv=triton_venv, log_path=tmp / "tritonserver.log").start(
        repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    ) as server:
        server.wait_ready(60)
        mp.setenv("MODELOPS_TRITON_URL", server.url)
        mp.setenv("MODELOPS_TRITON_REPOSITORY", str(repo))
        data = tmp / "train.parquet"
        write_dataset(generate_batch(3000, seed=5), str(data))
        yield {"tmp": tmp, "client": tracking.configure(), "triton": TritonClient(server.url), "data": str(data),
               "repo": repo, "url": server.url, "log": log_root}
    mp.undo()


def _configure(tmp: Path, *, min_agreement: float, max_drop: float, **params) -> None:
    path = tmp / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["serving"] = {"inference_log": {"flush_seconds": 0.5}, "challenger": {"mode": "shadow", "timeout_ms": 2000}}
    raw["gates"]["shadow"] = {"min_hours": 1, "min_requests": 60, "min_agreement": min_agreement,
                              "max_kpi_drop": {"approval_rate": max_drop}, "deadline_hours": 0.05, "poll_seconds": 1}
    raw["gates"]["max_regression"] = 1.0  # the offline gates let every version through to the live test
    raw.pop("evidence", None)  # (the evidence gates have their own tests; here only the live evidence counts)
    raw["model"]["params"].update(params)
    path.write_text(yaml.safe_dump(raw))


@pytest.fixture(scope="module")
def dags(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return {kind: bag.get_dag(f"{kind}_{MODEL}") for kind in ("train", "promote", "deploy", "monitor")}


def _states(dag_run):
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _champion(env) -> str:
    return str(env["client"].get_model_version_by_alias(MODEL, "champion").version)


def _live_traffic(env, stop: threading.Event) -> None:
    """Once the challenger is on Triton: 80 plain HTTP requests, then the hour's assessment (as monitoring does)."""
    from include.config import get_model_config
    from include.governance import audit
    from include.monitoring import inference_log
    from include.monitoring.hourly import assess_window
    from include.serving import shadow
    from include.serving.triton.repository import challenger_name

    config = get_model_config(MODEL)
    challenger = str(env["client"].get_model_version_by_alias(MODEL, "challenger").version)

    def started() -> bool:  # recorded once the champion's model was reloaded with the challenger named
        return any(r["action"] == shadow.START_ACTION and r["version"] == challenger
                   for r in audit.read(env["client"], MODEL, challenger))

    while not stop.is_set() and not (env["triton"].model_ready(challenger_name(MODEL)) and started()):
        time.sleep(0.5)
    if stop.is_set():
        return
    rows = generate_batch(80, seed=int(time.time()) % 1000)[config.dataset.feature_names]
    first = pd.Timestamp.now(tz="UTC").floor("h")
    ids = [f"live-{time.time_ns()}-{i}" for i in range(len(rows))]
    for request_id, (_, row) in zip(ids, rows.iterrows(), strict=True):
        inputs = [{"name": c.name, "shape": [1, 1],
                   "datatype": {"category": "BYTES", "int": "INT64"}.get(c.type, "FP64"),
                   "data": [str(row[c.name]) if c.type == "category" else getattr(row[c.name], "item", lambda v=row[c.name]: v)()]}
                  for c in config.dataset.features]
        httpx.post(f"{env['url']}/v2/models/{MODEL}/infer", json={"id": request_id, "inputs": inputs},
                   timeout=30).raise_for_status()
    # Monitoring assesses an hour after it ended; here: once both versions' rows of these requests are written
    # (the shadow thread may lag the responses on a busy machine, and each instance flushes every 0.5 s).
    last = pd.Timestamp.now(tz="UTC").floor("h")  # the traffic may straddle an hour: one window over both
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stop.is_set():
        logged = inference_log.read_range(MODEL, first, last + pd.Timedelta(hours=1), root=env["log"])
        sent = logged[logged["request_id"].isin(ids)]
        if (sent["role"] == "shadow").sum() >= len(ids) and (sent["role"] == "live").sum() >= len(ids):
            break
        time.sleep(0.5)
    assess_window(env["client"], config, first, last + pd.Timedelta(hours=1), champion=_champion(env),
                  root=str(env["log"]), check_gaps=False)


def _promote_with_live_traffic(env, dags):
    stop = threading.Event()
    player = threading.Thread(target=_live_traffic, args=(env, stop), daemon=True)
    player.start()
    try:
        return dags["promote"].test()
    finally:
        stop.set()
        player.join(60)


def _train(env, dags) -> str:
    run = dags["train"].test(run_conf={"dataset_uri": env["data"]})
    assert str(run.state) == "success", _states(run)
    return str(env["client"].get_model_version_by_alias(MODEL, "challenger").version)


def test_a_challenger_is_promoted_only_after_winning_in_shadow(env, dags) -> None:
    from include.governance import audit
    from include.serving import shadow
    from include.serving.triton.repository import challenger_name

    first = _train(env, dags)
    run = dags["promote"].test()
    assert str(run.state) == "success", _states(run)
    assert _states(run)["wait_for_live_evidence"] == "success"  # no champion: nothing to wait for
    assert str(dags["deploy"].test().state) == "success"
    assert _champion(env) == first

    _configure(env["tmp"], min_agreement=0.5, max_drop=0.5, max_iter=40)
    second = _train(env, dags)
    run = _promote_with_live_traffic(env, dags)

    assert str(run.state) == "success", _states(run)
    assert _champion(env) == second
    tags = env["client"].get_model_version(MODEL, second).tags
    assert tags["gate.shadow"] == "passed" and tags["gates.result"] == "passed"
    assert "request(s)" in tags["gates.detail"] and "agreement" in tags["gates.detail"]
    assert shadow.current(env["repo"], MODEL)["version"] == second  # still in shadow until it is live
    assert str(dags["deploy"].test().state) == "success"
    assert shadow.current(env["repo"], MODEL) is None
    assert not env["triton"].model_ready(challenger_name(MODEL))
    actions = [r["action"] for r in audit.read(env["client"], MODEL, second)]
    assert shadow.START_ACTION in actions and shadow.STOP_ACTION in actions


def test_a_challenger_worse_on_live_traffic_is_rejected_and_the_champion_untouched(env, dags) -> None:
    from include.governance import audit
    from include.serving import shadow
    from include.serving.triton.repository import challenger_name

    champion = _champion(env)
    _configure(env["tmp"], min_agreement=1.0, max_drop=-1.0, max_iter=20)  # nothing passes this
    third = _train(env, dags)
    run = _promote_with_live_traffic(env, dags)

    states = _states(run)
    assert str(run.state) == "failed" and states["check_shadow_gate"] == "failed", states
    assert states["promote"] != "success"
    assert _champion(env) == champion
    assert env["client"].get_model_version(MODEL, third).tags["gate.shadow"] == "failed"
    assert shadow.current(env["repo"], MODEL) is None
    assert not env["triton"].model_ready(challenger_name(MODEL))
    records = audit.read(env["client"], MODEL, third)
    assert [r["action"] for r in records if r["action"] in ("reject", shadow.STOP_ACTION)] == ["reject",
                                                                                              shadow.STOP_ACTION]
