"""The deferrable wait for a Triton model version: ready, failed to load, or timed out.

Against a real Triton Inference Server (python backend) with a version that loads and one whose
``initialize`` raises; and against a loopback server answering with Triton's protocol for what a real
one cannot be made to do on cue (an index that errors, a version unloaded, readiness arriving late).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import AirflowFailException
from fastapi import FastAPI, Response

from modelops.serving.operators import TritonModelReadyOperator
from modelops.serving.triggers import TritonModelReadyTrigger
from tests.servers import free_port, serving_app

START_TIMEOUT_S = 60
BROKEN_MESSAGE = "pin: this version cannot load"
CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] } ]
"""
LOADS = """
class TritonPythonModel:
    def initialize(self, args):
        pass

    def execute(self, requests):
        return []
"""
BREAKS = f"""
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("{BROKEN_MESSAGE}")

    def execute(self, requests):
        return []
"""


def first_event(trigger: TritonModelReadyTrigger) -> dict[str, Any]:
    """Run the trigger as the triggerer does, until its first (and only) event."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first())


# --- a real Triton --------------------------------------------------------------------------------


def _model(repo: Path, name: str, model_py: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n{CONFIG}')
    (repo / name / "1" / "model.py").write_text(model_py)


@pytest.fixture(scope="module")
def triton(triton_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tritonserver (explicit model control) whose repository holds ``pin_ok`` and ``pin_broken``."""
    from include.serving.triton.server import TritonServer

    repo = tmp_path_factory.mktemp("trigger-triton") / "models"
    _model(repo, "pin_ok", LOADS)
    _model(repo, "pin_broken", BREAKS)
    log = tmp_path_factory.mktemp("trigger-triton-log") / "tritonserver.log"
    with TritonServer(venv=triton_venv, log_path=log).start(repo) as server:
        server.wait_ready(START_TIMEOUT_S)
        yield server.url


def _load(url: str, name: str) -> httpx.Response:
    return httpx.post(f"{url}/v2/repository/models/{name}/load", json={}, timeout=120)


def test_a_loaded_version_is_ready(triton):
    assert _load(triton, "pin_ok").status_code == 200
    event = first_event(TritonModelReadyTrigger(url=triton, model="pin_ok", version="1", timeout=30, poll_interval=0.1))
    assert event == {"status": "ready", "model": "pin_ok", "version": "1"}


def test_a_version_that_failed_to_load_fails_with_tritons_reason(triton):
    answer = _load(triton, "pin_broken")
    assert answer.status_code == 400 and BROKEN_MESSAGE in answer.text  # Triton refused it: the premise
    event = first_event(TritonModelReadyTrigger(url=triton, model="pin_broken", version="1", timeout=60,
                                                poll_interval=0.1))
    assert (event["status"], event["model"], event["version"]) == ("failed", "pin_broken", "1")
    assert BROKEN_MESSAGE in event["reason"]  # the failure ends the wait: the status is not "timeout"


def test_a_version_never_loaded_times_out(triton):
    event = first_event(TritonModelReadyTrigger(url=triton, model="pin_ok", version="2", timeout=0.5, poll_interval=0.1))
    assert event == {"status": "timeout", "reason": "not ready after 0s", "model": "pin_ok", "version": "2"}


# --- Triton's protocol on cue ---------------------------------------------------------------------


class FakeTriton:
    """Answers ``GET /v2/models/{m}/versions/{v}/ready`` (200 or 400, as Triton does) and
    ``POST /v2/repository/index`` (Triton's entries, or an error status); counts the readiness polls."""

    def __init__(self) -> None:
        self.ready_after_polls: int | None = None  # None: never ready
        self.index: list[dict[str, str]] = []
        self.index_status = 200
        self.polls = 0
        app = FastAPI()

        @app.get("/v2/models/{model}/versions/{version}/ready")
        def ready(model: str, version: str) -> Response:
            self.polls += 1
            ok = self.ready_after_polls is not None and self.polls > self.ready_after_polls
            return Response(status_code=200 if ok else 400)

        @app.post("/v2/repository/index")
        def index() -> Any:
            if self.index_status != 200:
                return Response(content='{"error":"index unavailable"}', status_code=self.index_status,
                                media_type="application/json")
            return self.index

        self.app = app


@pytest.fixture
def fake() -> Iterator[tuple[FakeTriton, str]]:
    triton = FakeTriton()
    with serving_app(triton.app) as url:
        yield triton, url


def test_readiness_that_arrives_after_some_polls_is_ready(fake):
    triton, url = fake
    triton.ready_after_polls = 3
    event = first_event(TritonModelReadyTrigger(url=url, model="m", version="7", timeout=30, poll_interval=0.01))
    assert event == {"status": "ready", "model": "m", "version": "7"}
    assert triton.polls == 4


def test_an_unavailable_version_with_a_reason_is_a_failure_but_an_unloaded_one_is_not(fake):
    triton, url = fake
    triton.index = [
        {"name": "m", "version": "6", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "other", "version": "7", "state": "UNAVAILABLE", "reason": "other model broke"},
        {"name": "m", "version": "7", "state": "UNAVAILABLE", "reason": "unloaded"},
    ]
    waited = first_event(TritonModelReadyTrigger(url=url, model="m", version="7", timeout=0.3, poll_interval=0.05))
    assert waited["status"] == "timeout"  # unloaded, or another model's failure: keep waiting

    triton.index[2] = {"name": "m", "version": "7", "state": "UNAVAILABLE",
                       "reason": "failed to load 'm' version 7: Internal: onnx runtime error"}
    failed = first_event(TritonModelReadyTrigger(url=url, model="m", version="7", timeout=30, poll_interval=0.05))
    assert failed == {"status": "failed", "reason": "failed to load 'm' version 7: Internal: onnx runtime error",
                      "model": "m", "version": "7"}


def test_an_index_that_errors_is_not_a_failure(fake):
    triton, url = fake
    triton.index_status = 500
    event = first_event(TritonModelReadyTrigger(url=url, model="m", version="7", timeout=0.3, poll_interval=0.05))
    assert event["status"] == "timeout" and triton.polls >= 2


def test_a_server_not_answering_yet_is_waited_for_until_the_timeout():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    event = first_event(TritonModelReadyTrigger(url=url, model="m", version="7", timeout=0.3, poll_interval=0.05))
    assert event == {"status": "timeout", "reason": "not ready after 0s", "model": "m", "version": "7"}


def test_the_trigger_serializes_to_an_importable_path_and_its_arguments():
    trigger = TritonModelReadyTrigger(url="http://triton:8000/", model="m", version=7, timeout=300, poll_interval=2)
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert type(again) is TritonModelReadyTrigger
    assert kwargs == {"url": "http://triton:8000", "model": "m", "version": "7", "timeout": 300, "poll_interval": 2}
    assert again.serialize() == (path, kwargs)


@pytest.mark.parametrize("event", [
    {"status": "failed", "reason": "onnx runtime error", "model": "m", "version": "7"},
    {"status": "timeout", "reason": "not ready after 300s", "model": "m", "version": "7"},
])
def test_the_operator_fails_without_retry_when_the_version_is_not_ready(event):
    operator = TritonModelReadyOperator(task_id="wait_ready", model="m", version="7")
    with pytest.raises(AirflowFailException, match=f"Triton model m version 7 is not ready: {event['reason']}"):
        operator.execute_complete({}, event)


def test_the_operator_returns_the_ready_version():
    operator = TritonModelReadyOperator(task_id="wait_ready", model="m", version="7")
    assert operator.execute_complete({}, {"status": "ready", "model": "m", "version": "7"}) == "7"
