"""include.training.attempts against a real SQLite MLflow store (the ``client`` fixture of conftest.py): each training
attempt recorded on the shared run."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from include import tracking
from include.training import attempts


@pytest.fixture
def run_id(client: MlflowClient, request: pytest.FixtureRequest) -> str:
    """A run as the validate task opens it (RUNNING)."""
    return tracking.upsert_run(client, "attempts-tests", {"test.case": request.node.name}, request.node.name)


def test_first_attempt_is_recorded_as_running(client, run_id):
    assert attempts.begin(client, run_id, 1, "worker-1 pid 42") == []
    run = client.get_run(run_id)
    assert run.data.tags["modelops.train.attempt.1"] == "running on worker-1 pid 42"
    assert run.info.status == "RUNNING"
    assert "modelops.train.killed_attempt" not in run.data.tags


def test_an_attempt_left_running_is_closed_as_killed_by_the_next(client, run_id):
    attempts.begin(client, run_id, 1, "worker-1 pid 42")  # ... and then the worker is SIGKILLed

    assert attempts.begin(client, run_id, 2, "worker-2 pid 7") == [1]

    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.info.end_time is not None
    tags = run.data.tags
    assert tags["modelops.train.killed_attempt"] == "1"
    assert tags["modelops.train.attempt.1"].startswith("killed: ended without recording its end")
    assert "'running on worker-1 pid 42'" in tags["modelops.train.attempt.1"]
    assert tags["modelops.train.attempt.2"] == "running on worker-2 pid 7"
    assert tags[tracking.OUTCOME_TAG].startswith("killed: training attempt 1")


def test_the_retry_trains_into_the_same_run_which_mlflow_reopens(client, run_id):
    attempts.begin(client, run_id, 1, "w")
    attempts.begin(client, run_id, 2, "w")
    assert client.get_run(run_id).info.status == "KILLED"

    with mlflow.start_run(run_id=run_id):  # what the entrypoint does
        assert client.get_run(run_id).info.status == "RUNNING"
        mlflow.log_metric("train_rows", 10)
    attempts.end(client, run_id, 2, "succeeded")

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["modelops.train.attempt.1"].startswith("killed:")
    assert run.data.tags["modelops.train.attempt.2"] == "succeeded"


def test_finished_and_failed_attempts_are_not_killed_again(client, run_id):
    attempts.begin(client, run_id, 1, "w")
    attempts.end(client, run_id, 1, "failed: exit 1")
    assert attempts.begin(client, run_id, 2, "w") == []
    assert client.get_run(run_id).info.status == "RUNNING"
    assert client.get_run(run_id).data.tags["modelops.train.attempt.1"] == "failed: exit 1"


def test_a_quarantined_run_keeps_its_failed_status(client, run_id):
    attempts.begin(client, run_id, 1, "w")
    tracking.close_run(client, run_id, "FAILED", "rejected")
    attempts.begin(client, run_id, 2, "w")
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["modelops.train.killed_attempt"] == "1"


def test_killed_closes_the_run_naming_the_attempt(client, run_id):
    attempts.begin(client, run_id, 3, "w")
    attempts.killed(client, run_id, 3, "execution timeout")
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["modelops.train.attempt.3"] == "killed: execution timeout"
    assert run.data.tags["modelops.train.killed_attempt"] == "3"
    assert attempts.begin(client, run_id, 4, "w") == []  # already recorded: not found again
