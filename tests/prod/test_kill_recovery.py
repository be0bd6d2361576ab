"""Crashes on the production stack: a part SIGKILLed mid-run, restarted; the lifecycle completes, once.

- The Celery worker (its whole process group: the worker, its pool, the task and the training process)
  is SIGKILLed while ``train`` runs. The scheduler finds the task without a heartbeat, fails the try,
  and the retry runs on the restarted worker: one new version, registered once, promoted once.
- The scheduler is SIGKILLed while a promotion runs. The task goes on on the worker; the restarted
  scheduler adopts it and finishes the run: ``@champion`` moves once, with one audit record, and
  the deployment follows.

The stack's heartbeat timeout is short (``HEARTBEAT_TIMEOUT_S`` in ``conftest.py``) so a lost try is
noticed in seconds instead of Airflow's five minutes.
"""

from __future__ import annotations

import time

import pytest

from scripts import prod_stack
from tests.prod.flows import (
    DEPLOY,
    MODEL,
    PROMOTE,
    RUN_TIMEOUT_S,
    TRAIN,
    champion_goes_live,
    current_champion,
    known,
    records,
    settle,
    states,
    succeeds,
)

pytestmark = pytest.mark.prod_stack


def _wait_task(prod, dag_id: str, run_id: str, task_id: str, wanted: set[str], timeout_s: float = RUN_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        ti = prod.airflow.task_instances(dag_id, run_id).get(task_id) or {}
        if ti.get("state") in wanted:
            return ti
        assert prod.airflow.run(dag_id, run_id)["state"] not in ("success", "failed"), states(prod, dag_id, run_id)
        assert time.monotonic() < deadline, (task_id, ti.get("state"), states(prod, dag_id, run_id))
        time.sleep(0.5)


def _versions(client) -> set[str]:
    return {str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")}


def _training_processes(prod) -> list[int]:
    """Processes of this stack running the training entrypoint."""
    return [pid for pid in prod_stack.stray_processes(prod.stack)
            if b"include.training.train" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_a_worker_killed_during_training_is_replaced_and_the_version_is_registered_once(prod):
    settle(prod)
    client = prod.mlflow()
    versions = _versions(client)
    before = known(prod)
    run = prod.airflow.trigger(TRAIN, {"force": True})
    run_id = run["dag_run_id"]
    _wait_task(prod, TRAIN, run_id, "train", {"running"})
    deadline = time.monotonic() + 60
    while not _training_processes(prod):  # the training process itself is under way
        assert time.monotonic() < deadline, states(prod, TRAIN, run_id)
        time.sleep(0.2)

    killed = prod_stack.kill_part(prod.stack, "celery-worker")  # the worker, its pool, the task, the training
    assert len(killed) >= 4, killed
    time.sleep(1)
    assert _training_processes(prod) == []  # nothing of the try goes on without its worker
    prod_stack.restart_part(prod.stack, "celery-worker")

    succeeds(prod, TRAIN, run_id)
    train = prod.airflow.task_instances(TRAIN, run_id)["train"]
    assert train["try_number"] == 2  # the killed try failed for want of a heartbeat; the retry trained
    champion_goes_live(prod, before)
    (new,) = _versions(client) - versions  # exactly one new version
    assert [r["run_id"] for r in records(prod, new, "register")] == [run_id]
    assert len(records(prod, new, "promote")) == 1
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == new


def test_a_scheduler_killed_during_a_promotion_is_restarted_and_the_champion_moves_once(prod):
    settle(prod)
    client = prod.mlflow()
    champion = current_champion(prod)
    versions = _versions(client)
    before = known(prod)
    run = prod.airflow.trigger(TRAIN, {"force": True})
    succeeds(prod, TRAIN, run["dag_run_id"])
    (new,) = _versions(client) - versions
    promotion = prod.airflow.wait_new_run(PROMOTE, before[PROMOTE], RUN_TIMEOUT_S)
    _wait_task(prod, PROMOTE, promotion["dag_run_id"], "check_gates", {"queued", "running"})

    assert prod_stack.kill_part(prod.stack, "scheduler")
    time.sleep(5)  # the promotion's task goes on (or waits) without a scheduler
    prod_stack.restart_part(prod.stack, "scheduler")

    succeeds(prod, PROMOTE, promotion["dag_run_id"])
    assert [r["dag_run_id"] for r in prod.airflow.runs(PROMOTE) if r["dag_run_id"] not in before[PROMOTE]] == [
        promotion["dag_run_id"]]  # one promotion for the one new version, none created twice
    deployment = prod.airflow.wait_new_run(DEPLOY, before[DEPLOY], RUN_TIMEOUT_S)
    succeeds(prod, DEPLOY, deployment["dag_run_id"])
    promoted = records(prod, new, "promote")
    assert [r["run_id"] for r in promoted] == [promotion["dag_run_id"]]  # one move, one record
    assert promoted[0]["details"]["changed"] is True and promoted[0]["details"]["previous_champion"] == champion
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == new
    assert str(client.get_model_version_by_alias(MODEL, "previous_champion").version) == champion
    assert len(records(prod, new, "deploy")) == 1
