"""A real Triton Inference Server (CPU, python backend) serving exported registry versions.

One server for the module, on free loopback ports, used as a scenario: version 1 loads and
serves with parity to the MLflow model, version 2 loads beside it, a broken version 4 fails to
load while version 2 keeps serving, a config without version 4 is the rollback, unload.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd
import pytest

from include.serving.triton.client import TritonClient, TritonError
from include.serving.triton.repository import export_version, set_served_versions
from include.serving.triton.server import TritonServer, TritonServerError, free_port

if TYPE_CHECKING:
    from conftest import Registry  # tests/include/serving/triton/conftest.py

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[4]
TOLERANCE = 1e-5  # probabilities, Triton vs mlflow.pyfunc; measured ~1e-7
START_TIMEOUT_S = 60


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (zombies excluded)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("triton") / "models"


@pytest.fixture(scope="module")
def server(triton_venv: Path, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    log_path = tmp_path_factory.mktemp("triton-log") / "tritonserver.log"
    started = time.monotonic()
    with TritonServer(venv=triton_venv, log_path=log_path).start(repo) as running:
        running.wait_ready(START_TIMEOUT_S)
        log.info("tritonserver ready in %.2fs", time.monotonic() - started)
        yield running


@pytest.fixture(scope="module")
def triton(server: TritonServer) -> Iterator[TritonClient]:
    with TritonClient(server.url) as client:
        yield client


@pytest.fixture(scope="module")
def first_version(registry: Registry, repo: Path, triton: TritonClient) -> np.ndarray:
    """Version 1 exported and loaded; its outputs on the holdout rows."""
    export_version(registry.client, registry.name, "1", registry.config, repo)
    triton.load(registry.name)
    triton.wait_ready(registry.name, "1", timeout=60)
    return triton.infer(registry.name, registry.holdout, version="1")


def test_server_is_live_and_ready_on_loopback(server: TritonServer, triton: TritonClient) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert triton.is_live() and triton.is_ready()
    assert triton.repository_index() == []  # explicit model control: nothing loads by itself


def test_served_version_matches_the_mlflow_model(registry: Registry, first_version: np.ndarray) -> None:
    expected = np.asarray(registry.pyfunc("1").predict(registry.holdout))[:, 1]

    assert first_version.shape == (200,)
    np.testing.assert_allclose(first_version, expected, rtol=0, atol=TOLERANCE)


def test_single_rows_and_batches_score_alike(registry: Registry, server: TritonServer, triton: TritonClient,
                                             first_version) -> None:
    """Twenty one-row requests, one after another: each is scored by version 1 as one row (Triton's statistics
    count 20 more rows), and the scores equal those of the 200-row batch. Latency is measured in ``bench/``."""
    rows = registry.holdout.head(20)
    before = _counts(server, registry.name)
    answers = [triton.infer_with_version(registry.name, rows.iloc[[i]], version="1") for i in range(len(rows))]
    requests, _executions = (after - was for after, was in zip(_counts(server, registry.name), before, strict=True))

    assert [version for _, version in answers] == ["1"] * 20
    assert [scores.shape for scores, _ in answers] == [(1,)] * 20
    np.testing.assert_allclose([scores[0] for scores, _ in answers], first_version[:20], rtol=0, atol=1e-12)
    assert requests == 20


def _json_request(frame: pd.DataFrame, config, form: str) -> dict:
    """A KServe v2 JSON body, as curl sends it: ``packed`` (two tensors) or ``named`` (one per feature)."""
    numeric = [c.name for c in config.dataset.features if c.type != "category"]
    categorical = [c.name for c in config.dataset.features if c.type == "category"]
    rows = len(frame)
    if form == "packed":
        return {"inputs": [
            {"name": "numeric_features", "shape": [rows, len(numeric)], "datatype": "FP64",
             "data": frame[numeric].astype(float).to_numpy().ravel().tolist()},
            {"name": "categorical_features", "shape": [rows, len(categorical)], "datatype": "BYTES",
             "data": frame[categorical].astype(str).to_numpy().ravel().tolist()},
        ]}
    types = {c.name: {"int": "INT64", "float": "FP64", "category": "BYTES"}[c.type] for c in config.dataset.features}
    return {"inputs": [{"name": name, "shape": [rows, 1], "datatype": datatype,
                        "data": frame[name].astype(str if datatype == "BYTES" else object).tolist()}
                       for name, datatype in types.items()]}


def _post_json(server: TritonServer, name: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{name}/versions/1/infer", json=body, timeout=30)


def _probabilities(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["outputs"][0]["data"], dtype=np.float64)


def test_both_input_forms_score_alike(registry: Registry, server: TritonServer, first_version) -> None:
    rows = registry.holdout.head(50)

    for form in ("packed", "named"):
        got = _probabilities(_post_json(server, registry.name, _json_request(rows, registry.config, form)))
        np.testing.assert_allclose(got, first_version[:50], rtol=0, atol=1e-12, err_msg=form)


def test_requests_of_both_forms_batched_together_each_get_their_own_rows(
    registry: Registry, server: TritonServer, first_version
) -> None:
    """Concurrent single-row requests, the forms alternating: the dynamic batcher groups them into shared calls."""
    bodies = [(i, _json_request(registry.holdout.iloc[[i]], registry.config, ("packed", "named")[i % 2]))
              for i in range(120)]

    def send(item: tuple[int, dict]) -> tuple[int, float]:
        return item[0], float(_probabilities(_post_json(server, registry.name, item[1]))[0])

    before = _counts(server, registry.name)
    with ThreadPoolExecutor(8) as pool:
        answers = dict(pool.map(send, bodies))
    requests, executions = (after - was for after, was in zip(_counts(server, registry.name), before, strict=True))

    np.testing.assert_allclose([answers[i] for i in range(120)], first_version[:120], rtol=0, atol=1e-12)
    assert requests == 120 and executions < requests  # some calls scored several requests


def _counts(server: TritonServer, name: str) -> tuple[int, int]:
    """Triton's statistics for version 1: (requests scored, model executions)."""
    stats = httpx.get(f"{server.url}/v2/models/{name}/versions/1/stats", timeout=10).json()["model_stats"][0]
    return stats["inference_count"], stats["execution_count"]


def test_the_client_sends_one_input_per_feature_to_models_without_packed_inputs(
    registry: Registry, triton: TritonClient, first_version
) -> None:
    layout = triton._layout(registry.name, "1")
    triton._layouts[(registry.name, "1")] = replace(layout, packed={})  # how it sees a model of another exporter
    try:
        got = triton.infer(registry.name, registry.holdout, version="1")
    finally:
        triton._layouts[(registry.name, "1")] = layout

    np.testing.assert_allclose(got, first_version, rtol=0, atol=1e-12)


def test_missing_float_values_are_scored_like_the_mlflow_model(registry: Registry, triton: TritonClient,
                                                               first_version) -> None:
    rows = registry.holdout.head(40).astype({"annual_income": float})
    rows.loc[rows.index[::3], "annual_income"] = np.nan

    got = triton.infer(registry.name, rows, version="1")

    expected = np.asarray(registry.pyfunc("1").predict(rows))[:, 1]
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("age", np.nan, r"input 'age': 1 missing values cannot be sent as INT64"),
    ("credit_score", 700.5, r"input 'credit_score': non-integer values cannot be sent as INT64"),
])
def test_integer_features_the_model_cannot_take_are_refused_before_sending(
    registry: Registry, triton: TritonClient, first_version, column: str, value: float, message: str
) -> None:
    rows = registry.holdout.head(3).astype({column: float})
    rows.loc[rows.index[1], column] = value

    with pytest.raises(ValueError, match=message):
        triton.infer(registry.name, rows, version="1")


def test_bad_request_bodies_are_named_by_the_model(registry: Registry, server: TritonServer, first_version) -> None:
    rows = registry.holdout.head(2)
    packed = _json_request(rows, registry.config, "packed")["inputs"]
    named = _json_request(rows, registry.config, "named")["inputs"]
    cases = [
        ({"inputs": packed + named[:1]}, r"send the packed inputs or one input per feature, not both \(also got age\)"),
        ({"inputs": packed[:1]}, r"missing input categorical_features"),
        ({"inputs": [i for i in named if i["name"] != "region"]}, r"missing input region"),
        ({"inputs": [{**packed[0], "shape": [2, 5], "data": packed[0]["data"][:10]}, packed[1]]}, r"numeric_features"),
    ]
    for body, message in cases:
        response = _post_json(server, registry.name, body)
        assert response.status_code == 400, response.text
        assert re.search(message, response.json()["error"]), response.json()["error"]
    np.testing.assert_allclose(_probabilities(_post_json(server, registry.name, {"inputs": packed})),
                               first_version[:2], rtol=0, atol=1e-12)  # still serving


def test_categories_that_are_not_utf8_are_a_bad_request(registry: Registry, server: TritonServer, first_version) -> None:
    numeric = np.zeros((1, 6)).tobytes()
    categorical = b"".join(struct.pack("<I", len(v)) + v for v in (b"rent", b"\xff\xfe", b"north"))
    header = json.dumps({"inputs": [
        {"name": "numeric_features", "shape": [1, 6], "datatype": "FP64", "parameters": {"binary_data_size": 48}},
        {"name": "categorical_features", "shape": [1, 3], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(categorical)}},
    ]}).encode()

    response = httpx.post(f"{server.url}/v2/models/{registry.name}/versions/1/infer", content=header + numeric + categorical,
                          headers={"Inference-Header-Content-Length": str(len(header))}, timeout=30)

    assert response.status_code == 400, response.text
    assert "categorical values must be UTF-8 text" in response.json()["error"]


def test_second_version_loads_beside_the_first(registry: Registry, repo: Path, triton: TritonClient,
                                               first_version: np.ndarray) -> None:
    export_version(registry.client, registry.name, "2", registry.config, repo, keep_versions=["1"])
    triton.load(registry.name)

    assert triton.model_ready(registry.name, "1") and triton.model_ready(registry.name, "2")
    np.testing.assert_array_equal(triton.infer(registry.name, registry.holdout, version="1"), first_version)
    second = triton.infer(registry.name, registry.holdout, version="2")
    expected = np.asarray(registry.pyfunc("2").predict(registry.holdout))[:, 1]
    np.testing.assert_allclose(second, expected, rtol=0, atol=TOLERANCE)
    assert np.abs(second - first_version).max() > 1e-3  # a different model
    np.testing.assert_array_equal(triton.infer(registry.name, registry.holdout), second)  # no version: the newest


def test_broken_version_fails_to_load_while_the_previous_keeps_serving(
    registry: Registry, repo: Path, server: TritonServer, triton: TritonClient
) -> None:
    export_version(registry.client, registry.name, "2", registry.config, repo, keep_versions=["1"])
    triton.load(registry.name)
    before = triton.infer(registry.name, registry.holdout, version="2")
    export_version(registry.client, registry.name, "4", registry.config, repo, keep_versions=["2"])
    (repo / registry.name / "4" / "model.onnx").write_bytes(b"corrupt")

    with pytest.raises(TritonError, match=r"version 4 is at UNAVAILABLE state: .*model\.onnx failed"):
        triton.load(registry.name)

    assert not triton.model_ready(registry.name, "4")
    assert triton.model_ready(registry.name, "2")
    np.testing.assert_array_equal(triton.infer(registry.name, registry.holdout, version="2"), before)
    assert server.is_ready()  # not strict: the server still serves
    set_served_versions(repo, registry.name, ["2"])  # the rollback: config without the broken version
    triton.load(registry.name)
    assert [m["version"] for m in triton.repository_index() if m.get("state") == "READY"] == ["2"]
    np.testing.assert_array_equal(triton.infer(registry.name, registry.holdout), before)


def test_bad_requests_are_named(registry: Registry, triton: TritonClient, first_version) -> None:
    with pytest.raises(ValueError, match="missing input column"):
        triton.infer(registry.name, registry.holdout.drop(columns=["region"]))
    with pytest.raises(TritonError, match=r"HTTP 404: Request for unknown model: 'no_such_model' is not found"):
        triton.infer("no_such_model", registry.holdout)
    with pytest.raises(TritonError, match=r"failed to load 'no_such_model'"):
        triton.load("no_such_model")


def test_unload_stops_serving(registry: Registry, triton: TritonClient, server: TritonServer, first_version) -> None:
    triton.unload(registry.name)
    deadline = time.monotonic() + 30
    while any(m.get("state") != "UNAVAILABLE" for m in triton.repository_index()) and time.monotonic() < deadline:
        time.sleep(0.2)

    assert not triton.model_ready(registry.name)
    with pytest.raises(TritonError, match="has no available versions"):
        triton.infer(registry.name, registry.holdout.head(1))
    assert server.is_ready()


def test_stop_leaves_no_process_behind(registry: Registry, triton_venv: Path, tmp_path: Path) -> None:
    export_version(registry.client, registry.name, "1", registry.config, tmp_path / "models")
    server = TritonServer(venv=triton_venv, log_path=tmp_path / "triton.log").start(tmp_path / "models")
    server.wait_ready(START_TIMEOUT_S)
    with TritonClient(server.url) as client:
        client.load(registry.name)
    pgid = server.pid
    assert len(_group_members(pgid)) >= 2  # the server and the python backend's stub

    assert server.stop() == 0
    assert _group_members(pgid) == []
    assert server.stop() is None  # idempotent


def test_a_server_that_cannot_start_is_reported_with_its_log(triton_venv: Path, tmp_path: Path,
                                                             server: TritonServer) -> None:
    clash = TritonServer(venv=triton_venv, log_path=tmp_path / "clash.log")
    clash.start(tmp_path / "models", http_port=server.http_port)  # the port is taken

    with pytest.raises(TritonServerError, match="exited with code"):
        clash.wait_ready(START_TIMEOUT_S)
    clash.stop()


def test_missing_install_is_named(tmp_path: Path) -> None:
    with pytest.raises(TritonServerError, match="tritonserver not found in .*setup_triton.sh"):
        TritonServer(venv=tmp_path / "nothing-here")


def test_cli_serves_until_sigterm(triton_venv: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MODELOPS_TRITON_VENV": str(triton_venv)}
    cli = subprocess.Popen(
        [sys.executable, "-m", "include.serving.triton.server", "--repository", str(tmp_path / "models"),
         "--http-port", str(port), "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
         "--log-file", str(tmp_path / "triton.log")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        with TritonClient(f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not client.is_ready() and cli.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.is_ready(), cli.stdout.read() if cli.poll() is not None else "not ready"
        cli.send_signal(signal.SIGTERM)
        output, _ = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, output
    assert "Triton ready on http://127.0.0.1:" in output
    assert "Stopped tritonserver" in output
