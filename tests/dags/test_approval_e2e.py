"""End to end: a human's Approve or Reject of a promotion is answered as Airflow's REST API stores it, and the
answer is an audit ledger record on the candidate, with the human as actor; a Reject moves nothing."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit_approval"


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db):
    tmp = tmp_path_factory.mktemp("approval")
    shutil.copytree(ROOT / "config", tmp / "config")
    path = tmp / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["approval"] = {"required": True, "timeout_hours": 1}
    path.write_text(yaml.safe_dump(raw))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    from include import tracking

    yield {"tmp": tmp, "client": tracking.configure()}
    mp.undo()


@pytest.fixture(scope="module")
def dags(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return {"train": bag.get_dag(f"train_{MODEL}"), "promote": bag.get_dag(f"promote_{MODEL}")}


def _train(env, dags, seed: int) -> None:
    path = env["tmp"] / f"batch{seed}.parquet"
    write_dataset(generate_batch(4000, seed=seed), str(path))
    trained = dags["train"].test(run_conf={"dataset_uri": str(path)})
    assert str(trained.state) == "success"


def _answer(option: str, user: str, stop: threading.Event) -> threading.Thread:
    """Answer the open approval as Airflow's ``PATCH …/hitlDetails`` route does (the same steps on the same
    metadata database): store the responder, time and option, then resume the parked task with the event."""
    from airflow.models.hitl import HITLDetail, HITLUser
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    def run() -> None:
        while not stop.is_set():
            with create_session() as session:
                detail = session.scalars(select(HITLDetail).where(HITLDetail.responded_at.is_(None))).first()
                if detail is not None and detail.task_instance.state == TaskInstanceState.AWAITING_INPUT:
                    detail.responded_by = HITLUser(id=user, name=user)
                    detail.responded_at = datetime.now(UTC)
                    detail.chosen_options = [option]
                    detail.params_input = {}
                    session.add(detail)
                    handle_event_submit(TriggerEvent(detail.as_resume_event_payload()),
                                        task_instance=detail.task_instance, session=session)
                    return
            time.sleep(0.5)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _promote_answered(dags, option: str, user: str):
    stop = threading.Event()
    thread = _answer(option, user, stop)
    try:
        return dags["promote"].test()
    finally:
        stop.set()
        thread.join(timeout=10)


def _champion(client):
    from include.promotion.registry import CHAMPION, alias_version

    found = alias_version(client, MODEL, CHAMPION)
    return str(found.version) if found else None


def test_a_reject_is_recorded_with_the_human_and_moves_nothing(env, dags):
    from include.governance.ledger import default_ledger

    _train(env, dags, seed=1)

    run = _promote_answered(dags, "Reject", "alice")

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["approve"] == "success" and states["promote"] == "skipped"
    assert _champion(env["client"]) is None
    (record,) = default_ledger().records(model=MODEL, actions=["reject", "approve"], run_id=run.run_id)
    assert (record.action, record.actor, record.version) == ("reject", "alice", "1")
    assert record.details["chosen_options"] == ["Reject"] and record.dag_id == f"promote_{MODEL}"


def test_an_approve_is_recorded_with_the_human_and_promotes(env, dags):
    from include.governance.ledger import default_ledger

    run = _promote_answered(dags, "Approve", "bob")

    assert str(run.state) == "success"
    assert _champion(env["client"]) == "1"
    (record,) = default_ledger().records(model=MODEL, actions=["reject", "approve"], run_id=run.run_id)
    assert (record.action, record.actor, record.version) == ("approve", "bob", "1")
    promote = default_ledger().records(model=MODEL, actions=["promote"], run_id=run.run_id)
    assert [r.seq > record.seq for r in promote] == [True]
