"""Alias moves of one model never interleave across DAGs: a promotion and a rollback started at once.

Every task that moves a model's aliases (the promotion's ``promote``, the rollback DAG's ``switch``,
the deployment's automatic rollback) runs in the model's one-slot pool (``alias_pool``), which the
stack's setup creates. The test holds the pool at 0 slots while a promotion (re-confirming
``@champion``) and a rollback (to ``@previous_champion``) run up to their alias moves, so both
are ready to move at the same moment; then it opens the one slot. One move runs, the other waits
in ``scheduled`` until the first has ended, and ``@champion`` is what the later move made it.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from include.dag_ids import alias_pool
from tests.prod.flows import (
    MODEL,
    PROMOTE,
    ROLLBACK,
    RUN_TIMEOUT_S,
    champion_and_previous,
    records,
    settle,
    states,
)

pytestmark = pytest.mark.prod_stack
POOL = alias_pool(MODEL)
MOVES = {PROMOTE: "promote", ROLLBACK: "switch"}  # the alias-moving task of each DAG


def _move(prod, dag_id: str, run_id: str) -> dict:
    return prod.airflow.task_instances(dag_id, run_id)[MOVES[dag_id]]


def _wait_both_waiting(prod, runs: dict[str, str]) -> None:
    """Until each run's alias move is ``scheduled`` (ready to run, held by the closed pool)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        waiting = {dag_id: _move(prod, dag_id, run_id)["state"] for dag_id, run_id in runs.items()}
        if all(state == "scheduled" for state in waiting.values()):
            return
        for dag_id, run_id in runs.items():
            run = prod.airflow.run(dag_id, run_id)
            assert run["state"] not in ("success", "failed"), (dag_id, run["state"], states(prod, dag_id, run_id))
        assert time.monotonic() < deadline, waiting
        time.sleep(1)


def test_a_promotion_and_a_rollback_at_once_move_the_champion_one_at_a_time(prod):
    previous, champion = champion_and_previous(prod)
    settle(prod)
    assert prod.airflow.pool(POOL)["slots"] == 1  # created by the stack's setup
    prod.airflow.set_pool_slots(POOL, 0)
    try:
        rollback = prod.airflow.trigger(ROLLBACK, {"target_version": previous, "reason": "serialisation test"})
        promotion = prod.airflow.trigger(PROMOTE, {"version": champion})
        runs = {ROLLBACK: rollback["dag_run_id"], PROMOTE: promotion["dag_run_id"]}
        _wait_both_waiting(prod, runs)
        held = prod.airflow.pool(POOL)
        assert (held["scheduled_slots"], held["running_slots"], held["queued_slots"]) == (2, 0, 0), held
    finally:
        prod.airflow.set_pool_slots(POOL, 1)

    seen_one_running_one_waiting = False
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not all(prod.airflow.run(d, r)["state"] in ("success", "failed") for d, r in runs.items()):
        pool = prod.airflow.pool(POOL)
        assert pool["running_slots"] + pool["queued_slots"] <= 1, pool  # never two moves at once
        if pool["running_slots"] == 1 and pool["scheduled_slots"] == 1:
            seen_one_running_one_waiting = True
        assert time.monotonic() < deadline, {d: states(prod, d, r) for d, r in runs.items()}
        time.sleep(0.3)

    for dag_id, run_id in runs.items():
        assert prod.airflow.run(dag_id, run_id)["state"] == "success", (dag_id, states(prod, dag_id, run_id))
    moves = {dag_id: _move(prod, dag_id, run_id) for dag_id, run_id in runs.items()}
    at = {dag_id: {k: datetime.fromisoformat(ti[k]) for k in ("queued_when", "start_date", "end_date")}
          for dag_id, ti in moves.items()}
    first, second = sorted(moves, key=lambda d: at[d]["start_date"])
    assert moves[first]["pool"] == moves[second]["pool"] == POOL
    # the later move was queued only once the earlier one had ended: it waited for the whole move
    assert at[second]["queued_when"] >= at[first]["end_date"], moves
    assert at[second]["start_date"] >= at[first]["end_date"], moves
    assert seen_one_running_one_waiting

    client = prod.mlflow()
    now = str(client.get_model_version_by_alias(MODEL, "champion").version)
    assert now == (previous if second == ROLLBACK else champion)  # the later move decided
    assert [r["run_id"] for r in records(prod, previous, "rollback")].count(runs[ROLLBACK]) == 1
    assert [r["run_id"] for r in records(prod, champion, "promote")].count(runs[PROMOTE]) == 1
    settle(prod)  # a promotion that moved the champion back starts a deployment
