"""End to end: the ``audit_ledger`` DAG verifies the chain, anchors its head in MLflow, and refuses a tampered one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db):
    tmp = tmp_path_factory.mktemp("ledger_dag")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_LEDGER_URL", f"sqlite:///{tmp / 'ledger.db'}")
    from include import tracking
    from include.governance.ledger import Ledger

    ledger = Ledger(f"sqlite:///{tmp / 'ledger.db'}")
    for version in ("1", "2", "3"):
        ledger.append(action="promote", model="credit", actor="scheduler", version=version, reason="gates passed")
    yield {"client": tracking.configure(), "ledger": ledger}
    mp.undo()


@pytest.fixture(scope="module")
def dag(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "audit_ledger.py"))
    assert bag.import_errors == {}
    return bag.get_dag("audit_ledger")


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_an_intact_ledger_is_anchored_in_mlflow(env, dag):
    from include.governance.integrity import MlflowAnchorStore

    run = dag.test()

    assert str(run.state) == "success", _states(run)
    (anchor,) = MlflowAnchorStore(env["client"], env["ledger"]).anchors()
    assert (anchor.seq, anchor.hash) == (3, env["ledger"].head().hash)


def test_a_tampered_ledger_fails_at_verify_and_is_not_anchored(env, dag):
    from include.governance.integrity import MlflowAnchorStore

    with sqlite3.connect(env["ledger"].url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE modelops_ledger SET reason = 'forced through' WHERE seq = 2")

    run = dag.test()

    assert str(run.state) == "failed"
    assert _states(run) == {"verify": "failed", "anchor": "upstream_failed", "apply_retention": "upstream_failed"}
    assert len(MlflowAnchorStore(env["client"], env["ledger"]).anchors()) == 1  # only the earlier one
