"""Triton logs what it serves, whoever asks, and scores live traffic with the challenger in shadow or canary.

A real tritonserver (CPU, python backend) on loopback serves version 1 of the session registry as the
champion; requests come with plain HTTP/JSON (no project code), with gRPC (``tritonclient`` run by
Triton's own virtualenv: a client in another process and language binding) and with the project's
client. The inference log is then read the way hourly monitoring reads it.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd
import pytest

from include.config import ModelConfig
from include.governance import audit
from include.monitoring import inference_log
from include.serving import shadow
from include.serving.triton import request_log
from include.serving.triton.client import TritonClient
from include.serving.triton.repository import challenger_name, export_version
from include.serving.triton.server import TritonServer

if TYPE_CHECKING:
    from conftest import Registry  # tests/include/serving/triton/conftest.py

TOLERANCE = 1e-6
FLUSH_SECONDS = 0.3


def _config(registry: Registry, mode: str = "shadow", **challenger):
    serving = registry.config.serving.model_copy(update={
        "inference_log": registry.config.serving.inference_log.model_copy(update={"flush_seconds": FLUSH_SECONDS}),
        "challenger": registry.config.serving.challenger.model_copy(update={"mode": mode, **challenger}),
    })
    return registry.config.model_copy(update={"serving": serving})


@pytest.fixture(scope="module")
def log_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-log") / "inference_log"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-log-repo") / "models"


@pytest.fixture(scope="module")
def server(triton_venv: Path, repo: Path, log_root: Path, tmp_path_factory: pytest.TempPathFactory,
           registry: Registry) -> Iterator[TritonServer]:
    log_path = tmp_path_factory.mktemp("server-log-triton") / "tritonserver.log"
    export_version(registry.client, registry.name, "1", _config(registry), repo)
    with TritonServer(venv=triton_venv, log_path=log_path, inference_log=log_root).start(repo) as running:
        running.wait_ready(60)
        with TritonClient(running.url) as client:
            client.load(registry.name)
            client.wait_ready(registry.name, "1", timeout=60)
        yield running


@pytest.fixture(scope="module")
def triton(server: TritonServer) -> Iterator[TritonClient]:
    with TritonClient(server.url) as client:
        yield client


def _rows(registry: Registry, log_root: Path, ids: list[str], *, timeout: float = 15,
          roles: tuple[str, ...] = ()) -> pd.DataFrame:
    """The logged rows with these request ids (every role), once all have been flushed (in each of ``roles``)."""
    deadline = time.monotonic() + timeout
    while True:
        now = pd.Timestamp.now(tz="UTC")
        frame = inference_log.read_range(registry.name, now - pd.Timedelta(hours=2), now + pd.Timedelta(minutes=1),
                                         root=log_root, source="online",
                                         features={c.name: c.type for c in registry.config.dataset.features})
        found = frame[frame["request_id"].isin(ids)]
        complete = all(set(found.loc[found["role"] == role, "request_id"]) >= set(ids) for role in roles)
        if (set(found["request_id"]) >= set(ids) and complete) or time.monotonic() > deadline:
            return found.reset_index(drop=True)
        time.sleep(0.2)


def _json_request(row: pd.Series, registry: Registry, request_id: str) -> dict:
    """KServe v2 JSON, one input per feature: what curl, a Java service or a load balancer would send."""
    inputs = []
    for column in registry.config.dataset.features:
        value = row[column.name]
        if column.type == "category":
            inputs.append({"name": column.name, "shape": [1, 1], "datatype": "BYTES", "data": [str(value)]})
        elif column.type == "int":
            inputs.append({"name": column.name, "shape": [1, 1], "datatype": "INT64", "data": [int(value)]})
        else:
            inputs.append({"name": column.name, "shape": [1, 1], "datatype": "FP64", "data": [float(value)]})
    return {"id": request_id, "inputs": inputs}


def test_a_plain_http_request_is_logged_by_the_server_with_its_id_and_version(
        server: TritonServer, registry: Registry, log_root: Path) -> None:
    row = registry.holdout.iloc[3]
    response = httpx.post(f"{server.url}/v2/models/{registry.name}/infer",
                          json=_json_request(row, registry, "curl-1"), timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    assert body["model_version"] == "1" and body["id"] == "curl-1"
    assert outputs["request_id"] == ["curl-1"]  # the id it was logged under comes back

    [logged] = _rows(registry, log_root, ["curl-1"]).to_dict("records")

    assert logged["model_version"] == "1" and logged["model_name"] == registry.name and logged["role"] == "live"
    assert logged["prediction"] == pytest.approx(outputs["probability"][0], abs=TOLERANCE)
    for column in registry.config.dataset.features:
        assert logged[column.name] == pytest.approx(row[column.name]) if column.type != "category" \
            else logged[column.name] == row[column.name]
    assert logged["latency_ms"] > 0
    assert abs(logged["ts"] - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=1)


def test_a_request_without_an_id_gets_one_made_up_and_returned(server: TritonServer, registry: Registry,
                                                                log_root: Path) -> None:
    body = _json_request(registry.holdout.iloc[4], registry, "x")
    del body["id"]
    response = httpx.post(f"{server.url}/v2/models/{registry.name}/infer", json=body, timeout=30).json()
    [made_up] = next(o["data"] for o in response["outputs"] if o["name"] == "request_id")

    assert len(made_up) == 32 and _rows(registry, log_root, [made_up])["model_version"].tolist() == ["1"]


def test_a_grpc_request_is_logged(server: TritonServer, triton_venv: Path, registry: Registry, log_root: Path) -> None:
    row = registry.holdout.iloc[5]
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tritonclient.grpc as grpc
        row = json.loads(sys.argv[1])
        inputs = []
        for name, kind in {[(c.name, c.type) for c in registry.config.dataset.features]!r}:
            if kind == "category":
                tensor = grpc.InferInput(name, [1, 1], "BYTES"); tensor.set_data_from_numpy(np.array([[row[name].encode()]], dtype=object))
            elif kind == "int":
                tensor = grpc.InferInput(name, [1, 1], "INT64"); tensor.set_data_from_numpy(np.array([[row[name]]], dtype=np.int64))
            else:
                tensor = grpc.InferInput(name, [1, 1], "FP64"); tensor.set_data_from_numpy(np.array([[row[name]]], dtype=np.float64))
            inputs.append(tensor)
        client = grpc.InferenceServerClient("127.0.0.1:{server.grpc_port}")
        result = client.infer({registry.name!r}, inputs, request_id="grpc-1")
        print(json.dumps({{"version": result.get_response().model_version,
                           "probability": float(result.as_numpy("probability")[0][0])}}))
    """)
    payload = json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    done = subprocess.run([str(triton_venv / "bin" / "python"), "-c", script, payload], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)

    [logged] = _rows(registry, log_root, ["grpc-1"]).to_dict("records")

    assert answer["version"] == "1" and logged["model_version"] == "1"
    assert logged["prediction"] == pytest.approx(answer["probability"], abs=TOLERANCE)


def test_the_project_client_logs_under_its_own_ids_and_verification_is_marked(
        triton: TritonClient, registry: Registry, log_root: Path) -> None:
    rows = registry.holdout.head(8)
    ids = [f"client-{i}" for i in range(8)]
    scores, version, returned = triton.infer_with_ids(registry.name, rows, request_ids=ids)
    triton.infer(registry.name, rows.head(2), version="1", role="verification")

    logged = _rows(registry, log_root, ids).set_index("request_id").loc[ids]

    assert version == "1" and returned == ids
    np.testing.assert_allclose(logged["prediction"].to_numpy(), scores, atol=TOLERANCE)
    assert (logged["role"] == "live").all()
    now = pd.Timestamp.now(tz="UTC")
    every = inference_log.read_range(registry.name, now - pd.Timedelta(hours=2), now, root=log_root)
    assert (every["role"] == "verification").sum() == 2
    live, challenger = inference_log.split_roles(every)
    assert "verification" not in set(live["role"]) and challenger.empty


def test_the_layout_is_the_one_monitoring_reads(log_root: Path) -> None:
    hour = pd.Timestamp("2026-03-04T05:00Z")
    assert request_log.partition(log_root, "m", int(hour.timestamp() * 1e6)) == \
        inference_log.partition_path("m", "online", hour, root=log_root)
    assert set(request_log.ROLES) == {"live", "shadow", "canary", "verification"}


# --- shadow and canary ---------------------------------------------------------------------------


@pytest.fixture
def in_shadow(triton: TritonClient, registry: Registry, repo: Path) -> Iterator[ModelConfig]:
    """Version 2 as the challenger in shadow, for one test (the canary test replaces it); stopped at the end."""
    config = _config(registry, "shadow", timeout_ms=100)
    shadow.start(registry.client, triton, repo, config, "2", actor="test", reason="shadow test")
    yield config
    shadow.stop(registry.client, triton, repo, config, actor="test", reason="shadow test done")


def test_in_shadow_the_caller_gets_the_champion_and_the_challenger_is_logged_beside_it(
        in_shadow, triton: TritonClient, registry: Registry, log_root: Path) -> None:
    rows = registry.holdout.iloc[20:60]
    ids = [f"shadow-{i}" for i in range(len(rows))]
    champion = registry.pyfunc("1").predict(rows)[:, 1]
    challenger = registry.pyfunc("2").predict(rows)[:, 1]
    assert np.abs(champion - challenger).max() > 1e-3  # the two versions answer differently

    answers = np.concatenate([triton.infer_with_ids(registry.name, rows.iloc[[i]], request_ids=[ids[i]])[0]
                              for i in range(len(rows))])
    logged = _rows(registry, log_root, ids, roles=("live", "shadow"))

    np.testing.assert_allclose(answers, champion, atol=TOLERANCE)
    live = logged[logged["role"] == "live"].set_index("request_id").loc[ids]
    shadowed = logged[logged["role"] == "shadow"].set_index("request_id").loc[ids]
    assert set(live["model_version"]) == {"1"} and set(shadowed["model_version"]) == {"2"}
    np.testing.assert_allclose(live["prediction"].to_numpy(), champion, atol=TOLERANCE)
    np.testing.assert_allclose(shadowed["prediction"].to_numpy(), challenger, atol=TOLERANCE)
    assert (shadowed["ts"].dt.floor("h") == live["ts"].dt.floor("h")).all()  # the same hour as the request
    records = [r for r in audit.read_model(registry.client, registry.name) if r["action"] == shadow.START_ACTION]
    assert records and records[-1]["version"] == "2" and records[-1]["details"]["mode"] == "shadow"


def test_a_challenger_that_fails_every_request_never_changes_a_response(
        in_shadow, triton: TritonClient, registry: Registry, repo: Path, log_root: Path) -> None:
    folder = repo / challenger_name(registry.name) / "2"
    original = (folder / "model.py").read_text()
    (folder / "model.py").write_text(original + textwrap.dedent("""

        def _broken(self, *args, **kwargs):
            raise RuntimeError("challenger broken on purpose")


        TritonPythonModel._score = _broken
        """))
    try:
        triton.load(challenger_name(registry.name))
        rows = registry.holdout.iloc[60:80]
        ids = [f"broken-{i}" for i in range(len(rows))]
        answers = triton.infer_with_ids(registry.name, rows, request_ids=ids)[0]
        logged = _rows(registry, log_root, ids)
    finally:
        (folder / "model.py").write_text(original)
        triton.load(challenger_name(registry.name))

    np.testing.assert_allclose(answers, registry.pyfunc("1").predict(rows)[:, 1], atol=TOLERANCE)
    assert set(logged["role"]) == {"live"} and len(logged) == len(rows)


def test_canary_answers_a_sticky_share_of_keys_with_the_challenger(
        triton: TritonClient, registry: Registry, repo: Path, log_root: Path, server: TritonServer) -> None:
    config = _config(registry, "canary", canary_fraction=0.5, timeout_ms=2000)
    shadow.start(registry.client, triton, repo, config, "2", actor="test", reason="canary test")
    try:
        rows = registry.holdout.iloc[100:140].reset_index(drop=True)
        champion = registry.pyfunc("1").predict(rows)[:, 1]
        challenger = registry.pyfunc("2").predict(rows)[:, 1]

        def ask(i: int, key: str, request_id: str) -> float:
            body = _json_request(rows.iloc[i], registry, request_id)
            body["parameters"] = {"routing_key": key}
            out = httpx.post(f"{server.url}/v2/models/{registry.name}/infer", json=body, timeout=30).json()
            return next(o["data"][0] for o in out["outputs"] if o["name"] == "probability")

        first = [ask(i, f"customer-{i}", f"canary-{i}") for i in range(len(rows))]
        again = [ask(i, f"customer-{i}", f"canary-again-{i}") for i in range(len(rows))]
        logged = _rows(registry, log_root, [f"canary-{i}" for i in range(len(rows))]).set_index("request_id")
    finally:
        shadow.stop(registry.client, triton, repo, config, actor="test", reason="canary test done")

    by_challenger = [abs(a - c) < TOLERANCE and abs(a - p) > 1e-6 for a, c, p in zip(first, challenger, champion,
                                                                                        strict=True)]
    assert 5 <= sum(by_challenger) <= 35  # about half of the keys
    np.testing.assert_allclose(first, again, atol=TOLERANCE)  # sticky: a key is always answered by the same version
    for i, routed in enumerate(by_challenger):
        assert logged.loc[f"canary-{i}", "role"] == ("canary" if routed else "live")
        assert logged.loc[f"canary-{i}", "model_version"] == ("2" if routed else "1")
    assert shadow.current(repo, registry.name) is None
    assert not triton.model_ready(challenger_name(registry.name))


def test_buffered_rows_are_written_when_the_server_shuts_down(triton_venv: Path, registry: Registry,
                                                             tmp_path: Path) -> None:
    repo, root = tmp_path / "models", tmp_path / "log"
    slow = registry.config.model_copy(update={"serving": registry.config.serving.model_copy(update={
        "inference_log": registry.config.serving.inference_log.model_copy(update={"flush_seconds": 3600})})})
    export_version(registry.client, registry.name, "1", slow, repo)
    with TritonServer(venv=triton_venv, log_path=tmp_path / "triton.log", inference_log=root).start(repo) as running:
        running.wait_ready(60)
        with TritonClient(running.url) as client:
            client.load(registry.name)
            client.wait_ready(registry.name, "1", timeout=60)
            client.infer_with_ids(registry.name, registry.holdout.head(5), request_ids=[f"s{i}" for i in range(5)])
            time.sleep(0.5)
            assert not list(root.rglob("*.parquet"))  # still buffered
    frame = inference_log.read_range(registry.name, pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=2),
                                     pd.Timestamp.now(tz="UTC"), root=root)
    assert sorted(frame["request_id"]) == [f"s{i}" for i in range(5)]


def test_the_hour_compares_the_shadow_with_the_champion_and_the_gate_judges_it(
        in_shadow, triton: TritonClient, registry: Registry, log_root: Path) -> None:
    from include.config import ShadowGate
    from include.governance.gates import shadow_evidence_ready, shadow_gate
    from include.monitoring import challenger, history
    from include.monitoring.hourly import assess_window

    rows = registry.holdout.iloc[140:200]
    ids = [f"gate-{i}" for i in range(len(rows))]
    first = pd.Timestamp.now(tz="UTC").floor("h")
    triton.infer_with_ids(registry.name, rows, request_ids=ids)
    curl = httpx.post(f"{triton.url}/v2/models/{registry.name}/infer",
                      json=_json_request(rows.iloc[0], registry, "monitored-curl"), timeout=30)
    assert curl.status_code == 200
    shadowed = _rows(registry, log_root, [*ids, "monitored-curl"], roles=("live", "shadow"))
    assert (shadowed["role"] == "shadow").sum() == len(rows) + 1  # the curl request was shadowed too
    hour, end = first, pd.Timestamp.now(tz="UTC").floor("h") + pd.Timedelta(hours=1)  # one window, even across an hour

    result = assess_window(registry.client, in_shadow, hour, end, champion="1", root=str(log_root), check_gaps=False)

    every = inference_log.read_range(registry.name, hour, end, root=log_root)
    live, _ = inference_log.split_roles(every)
    assert result.assessment.rows == len(live)  # every client's live rows, none of the shadow or verification ones
    assert "monitored-curl" in set(live["request_id"])
    champion = registry.pyfunc("1").predict(rows)[:, 1]
    other = registry.pyfunc("2").predict(rows)[:, 1]
    assert result.challenger is not None and result.challenger.version == "2" and result.challenger.mode == "shadow"
    assert result.challenger.requests >= len(rows)
    found = challenger.evidence(registry.client, history.monitoring_run(registry.client, in_shadow), "2").as_dict()
    assert found["hours"] == 1 and found["requests"] == result.challenger.requests
    assert found["agreement"] == pytest.approx(result.challenger.agreement)
    assert 0.5 < found["agreement"] <= 1.0
    # the rows of this test alone agree as the two registry models do
    assert np.mean((champion >= 0.5) == (other >= 0.5)) > 0.5
    assert "approval_rate" in found["kpi_drops"]

    lenient = in_shadow.model_copy(update={"gates": in_shadow.gates.model_copy(update={"shadow": ShadowGate(
        min_hours=1, min_requests=50, min_agreement=0.5, max_kpi_drop={"approval_rate": 0.5})})})
    strict = in_shadow.model_copy(update={"gates": in_shadow.gates.model_copy(update={"shadow": ShadowGate(
        min_hours=1, min_requests=50, min_agreement=1.0, max_kpi_drop={"approval_rate": -1.0})})})
    waiting = in_shadow.model_copy(update={"gates": in_shadow.gates.model_copy(update={"shadow": ShadowGate(
        min_hours=2, min_requests=50)})})

    assert shadow_evidence_ready(lenient, found) and not shadow_evidence_ready(waiting, found)
    assert shadow_gate(lenient, found, champion="1").passed
    failed = shadow_gate(strict, found, champion="1")
    assert not failed.passed and "approval_rate worse than the champion's" in failed.detail
    assert not shadow_gate(waiting, found, champion="1").passed  # the deadline came before the evidence
    assert shadow_gate(strict, None, champion=None).passed  # no champion: nothing to compare with


def test_plain_http_requests_are_shadowed_too(in_shadow, server: TritonServer, registry: Registry,
                                              log_root: Path) -> None:
    rows = registry.holdout.iloc[0:30]
    ids = [f"json-shadow-{i}" for i in range(len(rows))]
    for i, request_id in enumerate(ids):
        response = httpx.post(f"{server.url}/v2/models/{registry.name}/infer",
                              json=_json_request(rows.iloc[i], registry, request_id), timeout=30)
        assert response.status_code == 200, response.text

    logged = _rows(registry, log_root, ids, roles=("live", "shadow"))
    shadowed = logged[logged["role"] == "shadow"].set_index("request_id")

    assert sorted(shadowed.index) == sorted(ids) and set(shadowed["model_version"]) == {"2"}
    np.testing.assert_allclose(shadowed.loc[ids, "prediction"].to_numpy(), registry.pyfunc("2").predict(rows)[:, 1],
                               atol=TOLERANCE)
