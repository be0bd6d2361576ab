"""The lifecycle DAG ids: ``<stage>_<model>``, one stage per DAG file."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.dag_ids import INSTALLATION_DAGS, Stage, dag_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("stage", "expected"), [
    (Stage.TRAIN, "train_credit_approval"),
    (Stage.PROMOTE, "promote_credit_approval"),
    (Stage.DEPLOY, "deploy_credit_approval"),
    (Stage.ROLLBACK, "rollback_credit_approval"),
    (Stage.BATCH_SCORE, "batch_score_credit_approval"),
    (Stage.MONITOR, "monitor_credit_approval"),
    (Stage.RETIRE, "retire_credit_approval"),
    (Stage.RESTORE, "restore_credit_approval"),
    (Stage.FRESHNESS, "freshness_credit_approval"),
])
def test_each_stage_names_its_dag(stage, expected):
    assert dag_id(stage, "credit_approval") == expected


def test_a_stage_may_be_given_by_its_value():
    assert dag_id("batch_score", "churn_v2") == "batch_score_churn_v2"


def test_the_stages_are_the_dag_files():
    stems = {p.stem for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_")}
    assert stems == {s.value for s in Stage} | set(INSTALLATION_DAGS)


@pytest.mark.parametrize(("stage", "model"), [("retrain", "credit_approval"), ("train", "")])
def test_an_unknown_stage_or_an_empty_model_is_refused(stage, model):
    with pytest.raises(ValueError):
        dag_id(stage, model)
