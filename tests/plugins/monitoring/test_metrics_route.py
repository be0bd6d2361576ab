"""``GET /modelops/metrics`` served by a real ``airflow api-server`` on loopback, behind Airflow's authentication.

The server (started with :func:`tests.plugins.inbound.webhook_server.running_api_server`) reads this
module's MLflow store (``MLFLOW_TRACKING_URI``, SQLite), in which the monitoring code wrote an hour of
the configured model ``credit_approval``. Users come from the simple auth manager's ``POST /auth/token``:
``viewer``, ``nobody`` (no role) and ``analyst`` (a viewer refused the runs of ``monitor_credit_approval``
by :class:`MonitorRunsAuthManager`, this module's auth manager).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pandas as pd
import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from fastapi.routing import APIRoute
from prometheus_client.parser import text_string_to_metric_families

from include import tracking
from include.config import get_model_config
from include.monitoring import history
from include.monitoring.assessment import HourAssessment
from modelops.app import create_app
from modelops.monitoring import metrics_route
from tests.plugins.inbound.webhook_server import running_api_server

MODEL = "credit_approval"  # the configured model (config/models/credit_approval.yaml)
MONITOR_DAG = f"monitor_{MODEL}"
ANALYST = "analyst"
PASSWORDS = {"viewer": "metrics-viewer-8c1d", "nobody": "metrics-nobody-40fa", ANALYST: "metrics-analyst-d27e"}
HOUR = pd.Timestamp("2026-11-20T09:00Z")
AUTH_MANAGER = "tests.plugins.monitoring.test_metrics_route.MonitorRunsAuthManager"  # imported by the server


class MonitorRunsAuthManager(SimpleAuthManager):
    """The simple auth manager, but user ``analyst`` may not read the runs of ``monitor_credit_approval``."""

    def is_authorized_dag(self, *, method, user, access_entity: DagAccessEntity | None = None,
                          details: DagDetails | None = None) -> bool:
        if (user.username == ANALYST and access_entity == DagAccessEntity.RUN and details is not None
                and details.id == MONITOR_DAG):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)


@dataclass
class Api:
    url: str
    tokens: dict[str, str]

    def metrics(self, user: str | None = "viewer", **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.get(f"{self.url}/modelops/metrics", headers={**headers, **kwargs.pop("headers", {})},
                         timeout=60, **kwargs)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """This module's MLflow store, holding one assessed hour of MODEL and its champion alias."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('metrics-mlflow') / 'mlflow.db'}"
    client = tracking.configure(uri)
    config = get_model_config(MODEL)
    assessment = HourAssessment(MODEL, "2", HOUR.isoformat(), 321, "warning", "drift", healthy=False,
                                drift={"share_drifted": 0.375, "features": {"age": {"score": 0.004}}},
                                kpis={"approval_rate": {"name": "approval_rate", "value": 0.58, "rows": 321}},
                                drops={"approval_rate": 0.07})
    history.log_hour(client, history.monitoring_run(client, config), assessment, pd.Series([8.0, 12.0]))
    client.create_registered_model(MODEL)
    for _ in (1, 2):
        client.create_model_version(MODEL, "file:///nowhere")
    client.set_registered_model_alias(MODEL, "champion", "2")
    return uri


@pytest.fixture(scope="module")
def api(airflow_db, store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    passwords = tmp_path_factory.mktemp("metrics-users") / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    env = {"MLFLOW_TRACKING_URI": store,
           "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"viewer:viewer,nobody:,{ANALYST}:viewer",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False"}
    with running_api_server(tmp_path_factory, env, name="metrics-api-server") as server:
        tokens = {}
        for user, password in PASSWORDS.items():
            answer = httpx.post(f"{server.url}/auth/token", json={"username": user, "password": password}, timeout=30)
            assert answer.status_code in (200, 201), answer.text
            tokens[user] = answer.json()["access_token"]
        yield Api(server.url, tokens)


def _samples(text: str) -> dict[str, dict[frozenset, float]]:
    out: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


def test_the_route_carries_the_airflow_access_check():
    routes = [r for r in create_app().routes if isinstance(r, APIRoute) and r.path == "/metrics"]

    assert len(routes) == 1
    assert metrics_route.require_metrics_access in [d.call for d in routes[0].dependant.dependencies]


def test_anonymous_callers_and_bad_tokens_are_refused(api):
    anonymous = api.metrics(user=None)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json() == {"detail": "Not authenticated"}
    assert api.metrics(user=None, params={"model": "no_such_model"}).status_code == 401  # nothing told before auth

    assert api.metrics(user=None, headers={"Authorization": "Bearer not.a.jwt"}).status_code == 403
    no_role = api.metrics(user="nobody")
    assert no_role.status_code == 403 and MONITOR_DAG in no_role.json()["detail"]


def test_access_is_decided_on_the_model_s_monitoring_dag(api):
    refused = api.metrics(user=ANALYST)

    assert refused.status_code == 403, refused.text
    assert f"read access to the runs of the DAGs {MONITOR_DAG}" in refused.json()["detail"]


def test_a_viewer_gets_the_model_s_metrics_in_the_text_format(api):
    started = time.perf_counter()
    response = api.metrics()
    elapsed = time.perf_counter() - started

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    got = _samples(response.text)
    at = frozenset({"model": MODEL, "version": "2"}.items())
    assert got["modelops_assessed_rows"] == {at: 321}
    assert got["modelops_alert_level"] == {at: 1}
    assert got["modelops_drift_share"] == {at: 0.375}
    assert got["modelops_feature_drift_score"] == {at | {("feature", "age")}: 0.004}
    assert got["modelops_kpi_value"] == {at | {("kpi", "approval_rate")}: 0.58}
    assert got["modelops_kpi_drop"] == {at | {("kpi", "approval_rate")}: 0.07}
    assert got["modelops_hour_timestamp_seconds"] == {at: HOUR.timestamp()}
    assert got["modelops_alias_info"] == {frozenset({"model": MODEL, "alias": "champion", "version": "2"}.items()): 1}
    assert got["modelops_metrics_read_success"] == {frozenset({"model": MODEL}.items()): 1}
    assert elapsed < 5, elapsed


def test_the_model_parameter_narrows_to_configured_models(api):
    named = api.metrics(params={"model": MODEL})
    assert named.status_code == 200 and "modelops_assessed_rows{" in named.text

    unknown = api.metrics(params={"model": "no_such_model"})
    assert unknown.status_code == 404 and "not a configured model: no_such_model" in unknown.json()["detail"]
