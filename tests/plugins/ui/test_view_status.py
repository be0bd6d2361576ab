"""What the Model Ops view reads (:mod:`modelops.ui.status`), in process, from a real SQLite MLflow store and
audit ledger seeded through the project's own functions (:mod:`tests.plugins.ui.seed`), and Triton's states."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import mlflow
import pytest

from include import tracking
from include.governance.ledger import Ledger
from include.links import MlflowUi
from modelops.ui import HOURS
from modelops.ui.status import lineage_links, model_status, probe_triton, triton_status
from tests.plugins.ui.seed import BASELINE, GAP_HOURS, MODEL, Seeded, seed
from tests.servers import free_port

URL = "http://triton.test:8000"


# --- the routes' access check and registration --------------------------------------------------------------


def test_every_data_route_of_the_view_carries_the_airflow_access_check():
    from fastapi.routing import APIRoute

    from modelops.app import UI_PREFIX, create_app
    from modelops.governance.routes import require_ledger_access

    ui = [r for r in create_app().routes if isinstance(r, APIRoute) and r.path.startswith(f"{UI_PREFIX}/")]
    data = [r for r in ui if r.path.startswith(f"{UI_PREFIX}/api/")]
    assert {r.path for r in data} == {f"{UI_PREFIX}/api/models/{{model}}",
                                      f"{UI_PREFIX}/api/models/{{model}}/versions/{{version}}"}
    for route in data:
        assert require_ledger_access in {d.call for d in route.dependant.dependencies}, route.path
    # the page is the only other route: it authenticates itself (a redirect to the login page; see the server test)
    assert [r.path for r in ui if r not in data] == [f"{UI_PREFIX}/"]


def test_the_plugin_registers_the_view_as_a_nav_entry_airflow_frames():
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    from modelops.ui import EXTERNAL_VIEW

    view = ExternalViewResponse.model_validate(EXTERNAL_VIEW)  # what GET /api/v2/plugins serves the Airflow UI
    # a url_route makes the Airflow UI show the page in a frame at /plugin/<url_route>; without one it is a link out
    assert (view.name, view.destination, view.url_route, view.href) == ("Model Ops", "nav", "model-ops", "modelops/ui/")


# --- Triton's states ------------------------------------------------------------------------------------


def _index(*entries: tuple[str, str, str]) -> list[dict]:
    return [{"name": n, "version": v, "state": s, "reason": ""} for n, v, s in entries]


def test_triton_serving_the_champion_agrees():
    status = triton_status(URL, MODEL, "2", _index((MODEL, "1", "UNAVAILABLE"), (MODEL, "2", "READY"),
                                                    ("other", "9", "READY")))
    assert (status.state, status.live_version, status.agrees_with_champion) == ("serving", "2", True)
    assert status.versions == {"1": "UNAVAILABLE", "2": "READY"}


def test_triton_serving_another_version_than_the_champion_is_flagged():
    # live is the highest READY version: the one answering requests without a version
    status = triton_status(URL, MODEL, "2", _index((MODEL, "2", "READY"), (MODEL, "10", "READY")))
    assert (status.state, status.live_version, status.agrees_with_champion) == ("serving", "10", False)
    assert "v10" in status.detail and "@champion is v2" in status.detail


def test_triton_without_a_ready_version_is_not_serving():
    status = triton_status(URL, MODEL, "2", _index((MODEL, "2", "UNAVAILABLE")))
    assert (status.state, status.live_version, status.agrees_with_champion) == ("not_serving", None, False)
    assert "no version of credit_approval is READY" in status.detail


def test_triton_that_does_not_answer_is_unreachable_not_an_error():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    status = probe_triton(url, MODEL, "2", timeout=2)
    assert (status.state, status.live_version, status.agrees_with_champion) == ("unreachable", None, None)
    assert status.url == url and status.detail.startswith("Triton is unreachable")


# --- links to the MLflow UI -----------------------------------------------------------------------------


def test_mlflow_links_only_for_a_tracking_server():
    ui = MlflowUi("http://mlflow.internal:5000")
    lineage = {"model": MODEL, "version": "2", "training_run": {"id": "r1", "experiment_id": "4"}}
    links = lineage_links(ui, lineage)
    assert links.version == f"http://mlflow.internal:5000/#/models/{MODEL}/versions/2"
    assert links.training_run == "http://mlflow.internal:5000/#/experiments/4/runs/r1"
    assert links.experiment == "http://mlflow.internal:5000/#/experiments/4"
    assert lineage_links(None, lineage) == type(links)(version=None, training_run=None, experiment=None)


# --- the model's status from a seeded registry, ledger and monitoring run ---------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, audit_ledger: str) -> Iterator:
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield tracking.configure(f"sqlite:///{tmp_path_factory.mktemp('ui-status') / 'mlflow.db'}")
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def seeded(client) -> Seeded:
    return seed(client)


@pytest.fixture(scope="module")
def status(client, seeded: Seeded, audit_ledger: str):
    return model_status(client, seeded.config, ledger=Ledger(audit_ledger), ui=MlflowUi("http://mlflow.test"),
                        triton_url=f"http://127.0.0.1:{free_port()}", triton_timeout=2)


def test_aliases_come_from_the_registry_with_the_ledger_s_term(status):
    pointers = {p.alias: p for p in status.aliases}
    assert [p.alias for p in status.aliases] == ["champion", "previous_champion", "challenger"]
    assert (pointers["champion"].version, pointers["previous_champion"].version, pointers["challenger"].version) \
        == ("2", "1", "3")
    assert pointers["champion"].set_by == "bob" and pointers["champion"].reason == "v2 passed the gates"
    assert pointers["champion"].mlflow_url == "http://mlflow.test/#/models/credit_approval/versions/2"
    assert status.triton.state == "unreachable" and status.triton.champion == "2"


def test_the_last_48_monitored_hours_are_aligned_with_gaps_left_empty(status, seeded: Seeded):
    mon = status.monitoring
    assert len(mon.hours) == HOURS == 48
    assert mon.hours[-1] == seeded.last_hour
    assert [datetime.fromisoformat(h) for h in mon.hours] == sorted(datetime.fromisoformat(h) for h in mon.hours)
    offset = HOURS - len(seeded.hours)  # the oldest hours of the window were never monitored
    assert mon.assessed[:offset] == [False] * offset
    for i, hour in enumerate(seeded.hours):
        assert mon.hours[offset + i] == hour
        assert mon.assessed[offset + i] == (i not in GAP_HOURS)
        assert mon.drift_share[offset + i] == (seeded.drift.get(hour))
    assert mon.levels[-1] == "warning" and mon.levels[offset] == "ok" and mon.levels[offset + GAP_HOURS[0]] is None
    assert set(mon.versions[offset:]) - {None} == {"2"}
    assert all(v is not None and v > 0 for v, a in zip(mon.latency_p99_ms, mon.assessed, strict=True) if a)
    assert mon.run_id == seeded.monitoring_run


def test_each_kpi_carries_the_baseline_it_was_judged_against_and_its_critical_line(status, seeded: Seeded):
    kpis = {k.name: k for k in status.monitoring.kpis}
    assert set(kpis) == {k.name for k in seeded.config.monitoring.kpis}
    rate = kpis["approval_rate"]
    assert rate.max_drop == 0.15
    for value, base, line, hour in zip(rate.values, rate.baselines, rate.thresholds, status.monitoring.hours,
                                       strict=True):
        if hour in seeded.approval_rate:
            assert value == pytest.approx(seeded.approval_rate[hour])
            assert base == pytest.approx(BASELINE["approval_rate"])
            assert line == pytest.approx(BASELINE["approval_rate"] - 0.15)
        else:
            assert value is None and base is None and line is None
    # the champion's baseline now: its training run's holdout KPIs (no healthy-days baseline frozen yet)
    assert (rate.current_baseline, rate.baseline_source) == (0.63, "holdout")


def test_the_latest_hour_s_tier_and_open_conditions(status, seeded: Seeded):
    alerts = status.alerts
    assert (alerts.hour, alerts.level, alerts.cold_start) == (seeded.last_hour, "warning", False)
    conditions = {c.name: c for c in alerts.conditions}
    assert conditions["data_drift"].source == "alert"  # what was sent for that hour
    assert conditions["data_drift"].value == pytest.approx(seeded.drift[seeded.last_hour])
    assert conditions["data_drift"].threshold == 0.3
    assert conditions["data_quality.non_finite"].value == 3 and conditions["data_quality.non_finite"].source == "metrics"
    assert "kpi.approval_rate" not in conditions  # dropped, but by less than max_drop
    assert alerts.alerted_at is not None


def test_the_ledger_shows_promotions_deployments_and_retirement_newest_first(status):
    actions = [(r.action, r.version) for r in status.ledger]
    assert actions == [("retire_planned", None), ("deploy", "2"), ("promote", "2"), ("deploy", "1"), ("promote", "1")]
    assert [r.seq for r in status.ledger] == sorted((r.seq for r in status.ledger), reverse=True)


def test_versions_and_actions(status):
    assert [(v.version, v.aliases, v.gates) for v in status.versions] == [
        ("3", ["challenger"], "passed"), ("2", ["champion"], "passed"), ("1", ["previous_champion"], "passed")]
    assert (status.actions.train_dag_id, status.actions.rollback_dag_id, status.actions.retire_dag_id) == (
        "train_credit_approval", "rollback_credit_approval", "retire_credit_approval")
    assert status.registered and status.mlflow_url == "http://mlflow.test/#/models/credit_approval"


def test_a_model_never_registered_nor_monitored_is_shown_empty(client, seeded: Seeded, audit_ledger: str):
    config = seeded.config.model_copy(update={"name": "never_registered"})
    empty = model_status(client, config, ledger=Ledger(audit_ledger), ui=None,
                         triton_url=f"http://127.0.0.1:{free_port()}", triton_timeout=2)
    assert not empty.registered and empty.versions == [] and empty.ledger == []
    assert [p.version for p in empty.aliases] == [None, None, None]
    assert empty.monitoring.hours == [] and empty.monitoring.run_id is None
    assert empty.alerts.hour is None and empty.alerts.conditions == []
