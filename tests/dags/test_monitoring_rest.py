"""A manual monitoring run as the README triggers it: Airflow's REST API on a real ``airflow api-server``.

``POST /api/v2/dags/monitor_<model>/dagRuns`` with ``"logical_date": null`` and the hour in the conf
creates a manual run without a logical date or data interval (so it cannot take a scheduled run's);
its ``assess`` task, run for that very run with ``airflow tasks test``, assesses the hour the conf
names on a real MLflow store. The trigger form's ``hour`` field is typed; a value that is not a
date-time is refused at trigger time, naming the param. One server (with a token from the simple
auth manager) for the module; no model is registered: the hour's traffic names a version the
registry does not know, which is a finding, not a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.servers import free_port, serving

pytestmark = pytest.mark.e2e
MODEL = "credit_approval"
DAG_ID = f"monitor_{MODEL}"
HOUR = pd.Timestamp("2026-11-20T10:00:00Z")
ROWS = 150
PASSWORD = "monitoring-rest-test-4b1d"
STARTUP_TIMEOUT_S = 180
TASK_TIMEOUT_S = 300


@dataclass
class Api:
    url: str
    token: str
    env: dict[str, str]
    log: Path

    def post_run(self, body: dict) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v2/dags/{DAG_ID}/dagRuns", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {self.token}"})

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=60, headers={"Authorization": f"Bearer {self.token}"})


@pytest.fixture(scope="module")
def api(airflow_db, tmp_path_factory) -> Iterator[Api]:
    """``airflow api-server`` (core API) on loopback, its MLflow store and inference log in this module's folder."""
    tmp = tmp_path_factory.mktemp("monitoring-rest")
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps({"admin": PASSWORD}))
    env = {**os.environ,
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "MODELOPS_INFERENCE_LOG": str(tmp / "inference_log"),
           "MODELOPS_DATA_DIR": str(tmp / "data"),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)}
    airflow = Path(sys.executable).parent / "airflow"
    # The server creates runs from the serialized DAGs in the database, as in production.
    subprocess.run([str(airflow), "dags", "reserialize"], check=True, capture_output=True, env=env)
    port = free_port()
    log = tmp / "api-server.log"
    url = f"http://127.0.0.1:{port}"
    with serving([str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                  "--apps", "core"], env=env, log=log, ready_url=f"{url}/api/v2/monitor/health",
                 name="airflow api-server", timeout_s=STARTUP_TIMEOUT_S):
        answer = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": PASSWORD}, timeout=30)
        assert answer.status_code in (200, 201), answer.text
        yield Api(url, answer.json()["access_token"], env, log)


def _traffic(api: Api, hour: pd.Timestamp, rows: int) -> None:
    """``rows`` predictions of version 1 in ``hour`` of the inference log the server's tasks read."""
    from include.config import get_model_config
    from include.demo.datagen import generate_batch
    from include.monitoring import inference_log

    features = get_model_config(MODEL).dataset.feature_names
    batch = generate_batch(rows, seed=41, start=hour.isoformat(), hours=1)
    scores = np.random.default_rng(41).uniform(0, 1, rows)
    inference_log.log_predictions(MODEL, "1", "online", batch[features], scores, ts=batch["applied_at"],
                                  request_ids=batch["application_id"].tolist(), root=api.env["MODELOPS_INFERENCE_LOG"])


def _metric_at(api: Api, key: str, hour: pd.Timestamp) -> list[float]:
    from mlflow.tracking import MlflowClient

    from include.config import get_model_config
    from include.monitoring import history, windows

    client = MlflowClient(api.env["MLFLOW_TRACKING_URI"], api.env["MLFLOW_TRACKING_URI"])
    run_id = history.monitoring_run(client, get_model_config(MODEL))
    return [p.value for p in client.get_metric_history(run_id, key) if p.step == windows.hour_step(hour)]


def test_the_trigger_form_offers_a_typed_hour(api) -> None:
    response = api.get(f"/api/v2/dags/{DAG_ID}/details")

    assert response.status_code == 200, response.text
    hour = response.json()["params"]["hour"]
    assert hour["value"] is None  # empty: the last complete hour
    assert hour["schema"]["type"] == ["null", "string"] and hour["schema"]["format"] == "date-time"
    assert "the hour to assess" in hour["description"]


def test_a_manual_run_over_rest_assesses_the_hour_its_conf_names(api) -> None:
    _traffic(api, HOUR, ROWS)

    response = api.post_run({"logical_date": None, "conf": {"hour": HOUR.strftime("%Y-%m-%dT%H:%M:%SZ")}})

    assert response.status_code == 200, response.text
    run = response.json()
    assert run["run_type"] == "manual" and run["logical_date"] is None
    assert run["data_interval_start"] is None and run["data_interval_end"] is None  # no scheduled run's date taken
    assert run["conf"] == {"hour": "2026-11-20T10:00:00Z"}

    airflow = Path(sys.executable).parent / "airflow"
    done = subprocess.run([str(airflow), "tasks", "test", DAG_ID, "assess", run["dag_run_id"]], capture_output=True,
                          text=True, env=api.env, timeout=TASK_TIMEOUT_S)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "assessing 2026-11-20 10:00:00+00:00 to 2026-11-20 11:00:00+00:00 (hour)" in output
    assert _metric_at(api, "rows", HOUR) == [float(ROWS)]
    assert _metric_at(api, "data_quality.no_reference_profile", HOUR) == [1.0]  # version 1 is not registered


def test_a_manual_run_without_conf_leaves_the_hour_to_the_run(api) -> None:
    response = api.post_run({"logical_date": None})

    assert response.status_code == 200, response.text
    run = response.json()
    assert run["logical_date"] is None and run["conf"] == {}
    assert run["dag_run_id"].startswith("manual__")


@pytest.mark.parametrize("hour", ["yesterday", "10:00", "2026-11-20", 42])
def test_an_hour_that_is_not_a_date_time_is_refused_at_trigger_time(api, hour) -> None:
    before = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns").json()["total_entries"]

    response = api.post_run({"logical_date": None, "conf": {"hour": hour}})

    assert response.status_code == 400, response.text
    assert "Invalid input for param hour" in response.json()["detail"]
    assert api.get(f"/api/v2/dags/{DAG_ID}/dagRuns").json()["total_entries"] == before
