"""The Model Ops view in a real ``airflow api-server`` and a real browser (Debian's chromium through Playwright).

One server for the module, with the simple auth manager (users ``admin``, ``viewer`` and ``nobody``, a user
without a role), this module's audit ledger, and an MLflow tracking server on loopback over this module's
SQLite store (``AIRFLOW_CONN_MLFLOW_DEFAULT``, so the view links to its web UI). The store and ledger are
seeded like the demo (:mod:`tests.plugins.ui.seed`); Triton is configured at a port nothing listens on, so
the view must show it unreachable. The DAGs are serialized into the metadata database first, as in
production, so the page's buttons can start runs.

Anonymous callers are refused (the page redirects to the login page, the data routes answer 401); the data
routes answer a viewer with what was seeded. In the browser: log in through the Airflow UI's login form, open
"Model Ops" from the nav, see the champion and the charts' data, roll back to a chosen version and find the
run queued with its conf through ``GET /api/v2/dags/rollback_credit_approval/dagRuns``. Screenshots go to the
test's temporary folder and to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import mlflow
import pytest

from include import tracking
from include.promotion import registry
from tests.plugins.ui.seed import MODEL, Seeded, seed
from tests.servers import airflow_api_server, airflow_tokens, free_port, serving

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("MODELOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORDS = {"admin": "ui-admin-4d2f", "viewer": "ui-viewer-81ce", "nobody": "ui-nobody-0b7a"}
STARTUP_TIMEOUT_S = 240
UI = "/modelops/ui/"
API = f"/modelops/ui/api/models/{MODEL}"
ROLLBACK_DAG = f"rollback_{MODEL}"


@dataclass
class Api:
    url: str
    mlflow_url: str
    tokens: dict[str, str]
    log: Path

    def get(self, path: str, user: str | None = "viewer", **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.get(f"{self.url}{path}", headers={**headers, **kwargs.pop("headers", {})}, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's MLflow store (SQLite); mlflow's global URIs are restored afterwards."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield f"sqlite:///{tmp_path_factory.mktemp('ui-mlflow') / 'mlflow.db'}"
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def seeded(store: str, audit_ledger: str) -> Seeded:
    return seed(tracking.configure(store))


@pytest.fixture(scope="module")
def mlflow_server(seeded: Seeded, store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on loopback over the seeded store (already migrated): the API server's MLflow and web UI."""
    home = tmp_path_factory.mktemp("ui-mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with serving([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", store,
                  "--default-artifact-root", str(home / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                  "--workers", "1"], env=env, log=home / "server.log", ready_url=f"{url}/health",
                 name="mlflow server", timeout_s=STARTUP_TIMEOUT_S):
        yield url


@pytest.fixture(scope="module")
def api(airflow_db, audit_ledger: str, store: str, mlflow_server: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """``airflow api-server`` with the plugin, the seeded ledger, MLflow through its connection and Triton nowhere."""
    tmp = tmp_path_factory.mktemp("ui-api-server")
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    host, port = mlflow_server.removeprefix("http://").split(":")
    env = {"MODELOPS_LEDGER_URL": audit_ledger,
           "MLFLOW_TRACKING_URI": store,
           "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "http", "host": host, "port": int(port)}),
           "MODELOPS_TRITON_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: Triton is down
           "AIRFLOW__CORE__AUTH_MANAGER":
               "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer,nobody:",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False"}
    log = tmp / "api-server.log"
    with airflow_api_server(tmp, env, unset=["AIRFLOW_CONN_TRITON_DEFAULT"]) as url:
        tokens = airflow_tokens(url, PASSWORDS)
        yield Api(url, mlflow_server, tokens, log)


# --- authentication -------------------------------------------------------------------------------------


def test_anonymous_requests_are_refused(api: Api):
    page = api.get(UI, user=None, follow_redirects=False)
    assert page.status_code == 303, page.text
    login = httpx.URL(page.headers["location"])
    assert login.path == "/auth/login" and login.params["next"] == f"{api.url}{UI}"
    for path in (API, f"{API}/versions/2"):
        anonymous = api.get(path, user=None)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.json() == {"detail": "Not authenticated"}
        forged = api.get(path, user=None, headers={"Authorization": "Bearer not-a-jwt"}, cookies={})
        assert forged.status_code == 403, (path, forged.text)
    # a user without a role: the page (the model names only), but none of the model's data
    assert api.get(UI, user="nobody").status_code == 200
    refused = api.get(API, user="nobody")
    assert refused.status_code == 403 and "audit log" in refused.json()["detail"]
    # the session cookie the Airflow UI logs in with is enough, as for /api/v2
    cookie = api.get(API, user=None, cookies={"_token": api.tokens["viewer"]})
    assert cookie.status_code == 200, cookie.text


def test_the_data_routes_are_in_the_plugin_s_openapi_schema_and_the_page_is_not(api: Api):
    paths = api.get("/modelops/openapi.json", user=None).json()["paths"]
    assert {"/ui/api/models/{model}", "/ui/api/models/{model}/versions/{version}"} <= set(paths)
    assert "/ui/" not in paths


# --- the data ---------------------------------------------------------------------------------------------


def test_the_model_s_status_is_what_was_seeded(api: Api, seeded: Seeded, store: str):
    answer = api.get(API)
    assert answer.status_code == 200, answer.text
    status = answer.json()
    client = tracking.configure(store)
    champion = registry.alias_version(client, MODEL, registry.CHAMPION)
    pointers = {p["alias"]: p for p in status["aliases"]}
    assert pointers["champion"]["version"] == str(champion.version) == "2"
    assert (pointers["previous_champion"]["version"], pointers["challenger"]["version"]) == ("1", "3")
    assert pointers["champion"]["mlflow_url"] == f"{api.mlflow_url}/#/models/{MODEL}/versions/2"
    assert status["triton"]["state"] == "unreachable" and status["triton"]["agrees_with_champion"] is None
    mon = status["monitoring"]
    assert len(mon["hours"]) == 48 and mon["hours"][-1] == seeded.last_hour
    assert [v for v in mon["drift_share"] if v is not None] == [seeded.drift[h] for h in seeded.assessed]
    assert status["alerts"]["level"] == "warning"
    assert [r["action"] for r in status["ledger"]][:2] == ["retire_planned", "deploy"]
    assert api.get("/modelops/ui/api/models/no_such_model").status_code == 404


def test_a_version_s_lineage_links_to_the_live_mlflow_ui(api: Api, seeded: Seeded):
    answer = api.get(f"{API}/versions/2")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["lineage"]["training_run"]["id"] == seeded.training_runs["2"]
    assert body["lineage"]["data"]["dataset_uri"] == "file:///data/credit_approval/train-v2.parquet"
    assert body["links"]["version"] == f"{api.mlflow_url}/#/models/{MODEL}/versions/2"
    run_link = body["links"]["training_run"]
    assert run_link.startswith(f"{api.mlflow_url}/#/experiments/") and run_link.endswith(seeded.training_runs["2"])
    assert httpx.get(api.mlflow_url, timeout=30).status_code == 200  # the MLflow web UI the links open
    assert api.get(f"{API}/versions/99").status_code == 404


# --- in the browser ---------------------------------------------------------------------------------------


def _save(shot: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy2(shot, ARTIFACTS / shot.name)


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                    reason=f"no browser at {CHROMIUM}: `bash scripts/ensure_chromium.sh` installs Debian's chromium "
                           f"(`make test` runs it)")
def test_the_view_in_the_airflow_ui_shows_the_model_and_starts_a_rollback(api: Api, seeded: Seeded, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    expected = api.get(API).json()["monitoring"]
    reason = "ui test: v2 drifts, back to v1"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(90_000)
            expect.set_options(timeout=90_000)

            # log in through the Airflow UI's own login form
            page.goto(f"{api.url}/")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(PASSWORDS["admin"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)

            # open the view from the nav: the Airflow UI frames the page the plugin app serves
            page.get_by_role("link", name="Model Ops").click()
            page.wait_for_url("**/plugin/model-ops**")
            view = page.frame_locator("iframe[title='Model Ops']")
            expect(view.locator("body[data-loaded='true']")).to_be_attached()
            section = view.locator(f"section[data-model='{MODEL}']")
            expect(section.locator("[data-alias='champion'] .tile-value")).to_have_text("v2")
            expect(section.locator("[data-alias='previous_champion'] .tile-value")).to_have_text("v1")
            expect(section.locator("[data-triton-state='unreachable']")).to_contain_text("unreachable")
            expect(section.locator(".alerts")).to_have_attribute("data-level", "warning")
            last_drift = seeded.drift[seeded.last_hour]
            expect(section.locator(".conditions")).to_contain_text(f"value {last_drift:.3f}")
            for chart in ("drift", "kpi-approval_rate", "kpi-repayment_rate", "kpi-default_precision", "rows",
                          "latency"):
                expect(view.locator(f"canvas#chart-{MODEL}-{chart}")).to_be_visible()
            frame = page.locator("iframe[title='Model Ops']").element_handle().content_frame()
            assert frame is not None and frame.url.endswith(UI), frame
            charted = frame.evaluate(
                """(model) => {
                    const data = (id) => Chart.getChart(document.getElementById(`chart-${model}-${id}`)).data;
                    const kpi = data("kpi-approval_rate");
                    return {labels: data("drift").labels.length, drift: data("drift").datasets[0].data,
                            rate: kpi.datasets[0].data, baseline: kpi.datasets[1].data, line: kpi.datasets[2].data,
                            rows: data("rows").datasets[0].data};
                }""", MODEL)
            approval = next(k for k in expected["kpis"] if k["name"] == "approval_rate")
            assert charted == {"labels": 48, "drift": expected["drift_share"], "rate": approval["values"],
                               "baseline": approval["baselines"], "line": approval["thresholds"],
                               "rows": expected["rows"]}
            shot = tmp_path / "model-ops-in-airflow.png"
            page.screenshot(path=shot)
            _save(shot)

            # roll back to a chosen version through Airflow's REST API, with the session of the login above
            rollback = section.locator("form[data-action='rollback']")
            rollback.locator("select").select_option("1")
            rollback.locator("input[name='reason']").fill(reason)
            rollback.get_by_role("button", name="Roll back").click()
            result = rollback.locator(".action-result.ok")
            expect(result).to_contain_text("queued")
            run_id = result.get_attribute("data-run-id")
            rollback.scroll_into_view_if_needed()
            shot = tmp_path / "model-ops-rollback-queued.png"
            page.screenshot(path=shot)
            _save(shot)

            # a version's lineage, with its MLflow UI pages: opened outside the sandboxed frame
            section.locator("tr[data-version='2']").get_by_role("button", name="lineage").click()
            lineage = section.locator(".lineage-panel")
            expect(lineage).to_contain_text("file:///data/credit_approval/train-v2.parquet")
            training = lineage.get_by_role("link", name=seeded.training_runs["2"])
            expect(training).to_have_attribute("href", re.compile(
                rf"^{re.escape(api.mlflow_url)}/#/experiments/\d+/runs/{seeded.training_runs['2']}$"))
            with page.context.expect_page() as opened:
                training.click()
            opened.value.wait_for_load_state()
            assert opened.value.url == training.get_attribute("href")
            opened.value.close()
            lineage.scroll_into_view_if_needed()
            shot = tmp_path / "model-ops-lineage.png"
            page.screenshot(path=shot)
            _save(shot)

            # the run's link hands the Airflow UI its own route to the run
            result.get_by_role("link", name="Open the run in Airflow").click()
            page.wait_for_url(f"**/dags/{ROLLBACK_DAG}/runs/**")
            assert page.url.endswith(f"/dags/{ROLLBACK_DAG}/runs/{quote(run_id, safe='')}"), page.url

            # the whole page, opened directly (outside the frame), for a readable full-length screenshot
            full = browser.new_page(viewport={"width": 1280, "height": 900}, storage_state=page.context.storage_state())
            full.goto(f"{api.url}{UI}")
            full.wait_for_selector("body[data-loaded='true']")
            shot = tmp_path / "model-ops-view-full.png"
            full.screenshot(path=shot, full_page=True)
            _save(shot)
        finally:
            browser.close()

    runs = api.get(f"/api/v2/dags/{ROLLBACK_DAG}/dagRuns", user="admin").json()["dag_runs"]
    run = next(r for r in runs if r["dag_run_id"] == run_id)
    assert run["state"] == "queued"
    assert run["conf"] == {"target_version": "1", "reason": reason, "from_version": "2"}
    assert run["triggering_user_name"] == "admin"
