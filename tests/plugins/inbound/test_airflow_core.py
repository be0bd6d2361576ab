"""The webhook's Airflow core calls, pinned against Airflow's own ``POST /api/v2/dags/{dag_id}/dagRuns``.

``modelops.inbound.airflow_core`` does what that endpoint does with Airflow internals (``DagModel``, the
API's DB DAG bag, ``create_dagrun``), because no public interface creates runs inside the API server.
Here both run on the same metadata database, for one DAG in each state the endpoint tells apart: they
must accept and refuse the same DAGs and create the same run (apart from who triggered it). An Airflow
release that adds a check, changes a column or creates runs differently fails here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from modelops.inbound import airflow_core

DAG_ID = "webhook_core_pin"
DEFAULT_URI = "/data/pin/default.parquet"
PIN_DAG = f'''
from datetime import datetime

from airflow.sdk import Param, dag, task


@dag(dag_id="{DAG_ID}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     params={{"dataset_uri": Param("{DEFAULT_URI}", type="string", minLength=1),
             "force": Param(False, type="boolean")}})
def pin():
    @task
    def noop():
        pass

    noop()


pin()
'''


@pytest.fixture(scope="module")
def core_api(airflow_db, tmp_path_factory) -> Iterator:
    """Airflow's core API app in this process (simple auth manager, everyone admin), with the pin DAG parsed
    and serialized into the metadata database as the DAG processor would."""
    from airflow.api_fastapi.app import create_app
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from fastapi.testclient import TestClient

    folder = tmp_path_factory.mktemp("pin-dags")
    (folder / "pin.py").write_text(PIN_DAG)
    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {} and DAG_ID in bag.dags
    sync_bag_to_db(bag, "dags-folder", None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
        with TestClient(create_app(apps="core")) as client:
            yield client


@pytest.fixture
def dag_model(core_api) -> Iterator:
    """Set the pin DAG's ``DagModel`` columns for one test: ``dag_model(is_stale=True)``; reset afterwards."""
    from airflow.models import DagModel
    from airflow.utils.session import create_session

    defaults = {"is_stale": False, "has_import_errors": False, "allowed_run_types": None}

    def set_columns(**columns) -> None:
        with create_session() as session:
            model = session.get(DagModel, DAG_ID)
            for name, value in {**defaults, **columns}.items():
                assert hasattr(model, name), f"DagModel has no column {name!r} any more"
                setattr(model, name, value)

    set_columns()
    yield set_columns
    set_columns()


def _run_id(prefix: str = "manual__pin_") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _ours(dag_id: str, run_id: str, conf: dict, note: str = "from the webhook"):
    """Trigger the way the webhook does; the refusal (NotTriggerable) or the ParamValidationError, else None."""
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            dag = airflow_core.latest_triggerable_dag(session, dag_id)
            airflow_core.create_manual_run(dag, session, run_id=run_id, conf=conf, note=note,
                                           triggering_user="drift-webhook", run_after=datetime.now(UTC))
    except (airflow_core.NotTriggerable, ValueError) as exc:
        return exc
    return None


def _theirs(core_api, dag_id: str, run_id: str, conf: dict, note: str = "from the webhook"):
    return core_api.post(f"/api/v2/dags/{dag_id}/dagRuns",
                         json={"logical_date": None, "dag_run_id": run_id, "conf": conf, "note": note})


def _stored(run_id: str) -> dict | None:
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == DAG_ID, DagRun.run_id == run_id))
        if run is None:
            return None
        return {"run_type": str(run.run_type), "triggered_by": run.triggered_by.value, "state": str(run.state),
                "logical_date": run.logical_date, "data_interval": (run.data_interval_start, run.data_interval_end),
                "conf": run.conf, "note": run.note, "user": run.triggering_user_name,
                "dag_version": str(run.created_dag_version_id), "bundle_version": run.bundle_version}


def test_the_webhook_creates_the_run_airflows_endpoint_creates(core_api, dag_model):
    ours, theirs = _run_id(), _run_id()
    conf = {"dataset_uri": "/data/pin/drifted.parquet"}
    assert _ours(DAG_ID, ours, conf) is None
    answer = _theirs(core_api, DAG_ID, theirs, conf)
    assert answer.status_code == 200, answer.text

    mine, airflows = _stored(ours), _stored(theirs)
    assert airflows is not None and airflows["user"] != "drift-webhook"
    assert mine == {**airflows, "user": "drift-webhook"}
    assert (mine["run_type"], mine["triggered_by"], mine["state"]) == ("manual", "rest_api", "queued")
    assert mine["logical_date"] is None and mine["data_interval"] == (None, None)
    assert mine["conf"] == conf and mine["note"] == "from the webhook"


def test_the_latest_serialized_version_carries_the_dags_params(core_api, dag_model):
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.utils.session import create_session

    with create_session() as session:
        dag = airflow_core.latest_triggerable_dag(session, DAG_ID)
    assert dag.dag_id == DAG_ID
    assert dag.params["dataset_uri"] == DEFAULT_URI and dag.params["force"] is False
    with pytest.raises(ParamValidationError, match="dataset_uri"):
        dag.params.deep_merge({"dataset_uri": ""}).validate()


# state of the DAG → the webhook's status (None: triggerable); Airflow's endpoint must agree on refusing.
STATES = {
    "parsed": ({}, None),
    "stale": ({"is_stale": True}, 404),
    "import_errors": ({"has_import_errors": True}, 409),
    "manual_runs_not_allowed": ({"allowed_run_types": ["scheduled", "asset_triggered"]}, 409),
    "manual_runs_allowed": ({"allowed_run_types": ["manual", "scheduled"]}, None),
}


@pytest.mark.parametrize("state", sorted(STATES))
def test_the_webhook_refuses_exactly_what_airflows_endpoint_refuses(core_api, dag_model, state):
    columns, status = STATES[state]
    dag_model(**columns)
    ours, theirs = _run_id(), _run_id()

    refused = _ours(DAG_ID, ours, {})
    answer = _theirs(core_api, DAG_ID, theirs, {})

    if status is None:
        assert refused is None and _stored(ours) is not None
        assert answer.status_code == 200, answer.text
    else:
        assert isinstance(refused, airflow_core.NotTriggerable) and refused.status_code == status, refused
        assert _stored(ours) is None
        assert answer.status_code in (400, 404), answer.text
        assert _stored(theirs) is None


def test_a_dag_never_parsed_is_404_for_both(core_api):
    refused = _ours("no_such_dag_pin", _run_id(), {})
    assert isinstance(refused, airflow_core.NotTriggerable) and refused.status_code == 404
    assert _theirs(core_api, "no_such_dag_pin", _run_id(), {}).status_code == 404


def test_a_conf_that_does_not_fit_the_params_creates_no_run_for_either(core_api, dag_model):
    from airflow.sdk.exceptions import ParamValidationError

    ours, theirs = _run_id(), _run_id()
    refused = _ours(DAG_ID, ours, {"dataset_uri": ""})
    assert isinstance(refused, ParamValidationError) and "dataset_uri" in str(refused)
    answer = _theirs(core_api, DAG_ID, theirs, {"dataset_uri": ""})
    assert answer.status_code == 400 and "dataset_uri" in answer.text
    assert _stored(ours) is None and _stored(theirs) is None


def test_runs_are_found_by_id_and_by_literal_prefix_since_a_time(core_api, dag_model):
    from airflow.utils.session import create_session

    stem = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).replace(microsecond=0)
    runs = {  # run id → run_after
        f"drift_webhook__{stem}_new": now,
        f"drift_webhook__{stem}_old": now - timedelta(days=2),
        f"driftXwebhook__{stem}_lookalike": now,  # "_" is a LIKE wildcard: the prefix must be taken literally
        f"manual__{stem}_named": now - timedelta(days=3),
    }
    with create_session() as session:
        dag = airflow_core.latest_triggerable_dag(session, DAG_ID)
        for run_id, run_after in runs.items():
            airflow_core.create_manual_run(dag, session, run_id=run_id, conf={"n": run_id}, note="",
                                           triggering_user="drift-webhook", run_after=run_after)

    with create_session() as session:
        found = airflow_core.runs_of(session, DAG_ID, run_ids=[f"manual__{stem}_named", "manual__absent"],
                                     id_prefix="drift_webhook__", run_after_from=now - timedelta(days=1))
        by_id_only = airflow_core.runs_of(session, DAG_ID, run_ids=[f"drift_webhook__{stem}_old"],
                                          id_prefix="drift_webhook__")
    mine = [row for row in found if stem in row[0]]
    assert mine == [(f"manual__{stem}_named", "queued", {"n": f"manual__{stem}_named"}),  # oldest first
                    (f"drift_webhook__{stem}_new", "queued", {"n": f"drift_webhook__{stem}_new"})]
    assert by_id_only == [(f"drift_webhook__{stem}_old", "queued", {"n": f"drift_webhook__{stem}_old"})]

