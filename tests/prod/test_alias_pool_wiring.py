"""Which tasks hold a model's alias pool: exactly those that move its aliases, in every DAG that moves them.

The pool (one slot per model, :func:`include.dag_ids.alias_pool`) serialises the moves across DAGs;
``test_alias_serialisation.py`` shows it on the running stack. Here, from the parsed DAGs: the
promotion's ``promote``, the rollback DAG's ``switch``, the deployment's
``roll_back_failed_deployment`` and retirement's ``mark_retired`` are in it, nothing else is, and the setup creates it with one slot.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from include.config import model_configs
from include.dag_ids import Stage, alias_pool, dag_id
from scripts import prod_stack

ROOT = Path(__file__).resolve().parents[2]
MOVES = {Stage.PROMOTE: {"promote"}, Stage.ROLLBACK: {"switch"}, Stage.DEPLOY: {"roll_back_failed_deployment"},
         Stage.RETIRE: {"retire_version.mark_retired"}}  # it removes the aliases left on a retired version


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.mark.parametrize("model", sorted(model_configs()))
def test_exactly_the_alias_moves_run_in_the_models_pool(dagbag, model):
    dags = {stage: dagbag.dags[dag_id(stage, model)] for stage in Stage if dag_id(stage, model) in dagbag.dags}
    assert set(MOVES) <= set(dags)
    in_pool = {stage: {t.task_id for t in dag.tasks if t.pool == alias_pool(model)} for stage, dag in dags.items()}
    assert in_pool == {stage: MOVES.get(stage, set()) for stage in dags}


def test_the_pool_name_is_per_model():
    assert alias_pool("credit_approval") == "modelops_aliases_credit_approval"
    assert alias_pool("a") != alias_pool("b")
    with pytest.raises(ValueError, match="model name"):
        alias_pool("")


def test_the_setup_creates_one_single_slot_pool_per_model():
    pools = prod_stack.alias_pools()
    assert set(pools) == {alias_pool(m) for m in model_configs()}
    assert all(p["slots"] == 1 and p["include_deferred"] is False for p in pools.values())
