"""The governance API served by a real ``airflow api-server`` on loopback (one server for this module).

The server reads this module's audit ledger (``MODELOPS_LEDGER_URL``, SQLite) and MLflow store
(``MLFLOW_TRACKING_URI``, SQLite) through its environment; the tests seed both from this process and
authenticate with tokens from the simple auth manager's ``POST /auth/token`` (users ``admin``, a
``viewer`` and ``nobody``, a user without a role). Anonymous callers, invalid tokens and users
without audit-log access are refused on every governance route; a viewer gets the answers, which are
checked against what was seeded. The webhook keeps its own (HMAC) access check.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
import schemathesis
import sqlalchemy as sa
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.requests import Request

from include import tracking
from include.governance import audit, integrity
from include.governance.ledger import Ledger, canonical, records_table
from include.inbound.signatures import signed_headers
from modelops.app import GOVERNANCE_PREFIX, create_app
from modelops.governance import routes
from tests.plugins.governance.auth_manager import ANALYST, RESTRICTED_MODEL
from tests.servers import airflow_api_server, airflow_tokens

MODEL = "gov_api_model"
OTHER = RESTRICTED_MODEL  # user "analyst" may not read the audit log of its DAGs
PREFIX = f"/modelops{GOVERNANCE_PREFIX}"
PASSWORDS = {"admin": "gov-admin-5e1f", "viewer": "gov-viewer-93ab", "nobody": "gov-nobody-27cd",
             ANALYST: "gov-analyst-6b0a"}
WEBHOOK_SECRET = "governance-test-webhook-secret-1c9e"

T_REGISTER = "2026-11-01T09:00:00.000000Z"
T_CHAMPION_1 = "2026-11-01T10:00:00.000000Z"
T_CHALLENGER_2 = "2026-11-03T10:00:00.000000Z"
T_APPROVE = "2026-11-04T09:00:00.000000Z"
T_CHAMPION_2 = "2026-11-05T10:00:00.000000Z"
T_DEPLOY = "2026-11-05T11:00:00.000000Z"


@dataclass
class Api:
    url: str
    tokens: dict[str, str]
    log: Path

    def get(self, path: str, user: str | None = "viewer", **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.get(f"{self.url}{PREFIX}{path}", headers={**headers, **kwargs.pop("headers", {})}, timeout=60,
                         **kwargs)


@dataclass
class Seeded:
    tracking_uri: str
    run_id: str
    fingerprint: str
    ledger: Ledger


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's MLflow store (SQLite); mlflow's global URIs are restored afterwards."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield f"sqlite:///{tmp_path_factory.mktemp('gov-mlflow') / 'mlflow.db'}"
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def api(airflow_db, audit_ledger: str, store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """``airflow api-server`` with the plugin, this module's ledger and MLflow store, and simple-auth users:
    ``admin``, ``viewer``, ``nobody`` (no role) and ``analyst`` (a viewer refused OTHER's DAGs' audit log)."""
    tmp = tmp_path_factory.mktemp("gov-api-server")
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    env = {"MODELOPS_LEDGER_URL": audit_ledger,
           "MLFLOW_TRACKING_URI": store,
           "AIRFLOW__CORE__AUTH_MANAGER": "tests.plugins.governance.auth_manager.PerModelAuthManager",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,viewer:viewer,nobody:,{ANALYST}:viewer",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
           "AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK": json.dumps({"conn_type": "generic", "password": WEBHOOK_SECRET})}
    log = tmp / "api-server.log"
    with airflow_api_server(tmp, env, unset=["AIRFLOW_CONN_MLFLOW_DEFAULT"]) as url:
        tokens = airflow_tokens(url, PASSWORDS)
        yield Api(url, tokens, log)


@pytest.fixture(scope="module")
def seeded(api: Api, store: str, audit_ledger: str) -> Seeded:
    """Two versions of MODEL in MLflow (v1 trained by a run with a validation artifact) and their ledger history:
    registered, champion v1, challenger v2, approved, champion v2, deployed; OTHER registered."""
    client = tracking.configure(store)
    run_id = tracking.upsert_run(client, "gov-api-tests", {"test.run": "1"}, "train")
    client.log_metric(run_id, "auc", 0.91)
    client.log_param(run_id, "C", "1.0")
    client.log_text(run_id, json.dumps({"success": True}), "validation/gx_result.json")
    fingerprint = "f" * 64
    tags = {"data_fingerprint": fingerprint, "dataset_uri": "file:///data/credit.csv", "schema_hash": "s" * 16,
            "code_commit": "abc123", "gates.result": "passed"}
    client.create_registered_model(MODEL)
    for _ in (1, 2):
        client.create_model_version(MODEL, source=f"runs:/{run_id}/model", run_id=run_id, tags=tags)

    ledger = Ledger(audit_ledger)
    ledger.append(action="register", model=MODEL, version="1", actor="scheduler", reason="registered v1",
                  at=T_REGISTER, dag_id=f"train_{MODEL}", run_id="train-1")
    ledger.append(action="register", model=OTHER, version="1", actor="scheduler", reason="another model",
                  at=T_REGISTER)
    audit.write(client, audit.AuditRecord(action="alias_set", model=MODEL, version="1", actor="alice",
                                          reason="first champion", details={"alias": "champion"},
                                          dag_id=f"promote_{MODEL}", run_id="promote-1", at=T_CHAMPION_1),
                discriminator="champion", ledger=ledger)
    ledger.append(action="alias_set", model=MODEL, version="2", actor="scheduler", reason="candidate",
                  details={"alias": "challenger"}, at=T_CHALLENGER_2)
    ledger.append(action="approve", model=MODEL, version="2", actor="bob", reason="reviewed the gates",
                  at=T_APPROVE)
    ledger.append(action="alias_set", model=MODEL, version="2", actor="bob", reason="promoted after approval",
                  details={"alias": "champion"}, at=T_CHAMPION_2)
    ledger.append(action="deploy", model=MODEL, version="2", actor="scheduler", reason="served by Triton",
                  at=T_DEPLOY)
    return Seeded(store, run_id, fingerprint, ledger)


def _dicts(entries) -> list[dict]:
    return [e.as_dict() for e in entries]


def _path(route: APIRoute) -> str:
    """A concrete URL (below PREFIX) for a governance route of the app."""
    return (route.path.removeprefix(GOVERNANCE_PREFIX)
            .replace("{model}", MODEL).replace("{alias}", "champion").replace("{version}", "1"))


def _governance_routes(app=None) -> list[APIRoute]:
    return [r for r in (app or create_app()).routes
            if isinstance(r, APIRoute) and r.path.startswith(f"{GOVERNANCE_PREFIX}/")]


REQUIRED_QUERY = {"/at": {"time": "2026-11-02T00:00:00Z"}}


def _query(path: str) -> dict[str, str]:
    return next((q for suffix, q in REQUIRED_QUERY.items() if path.endswith(suffix)), {})


# --- the access check ---------------------------------------------------------------------------------


def test_every_governance_route_carries_the_airflow_access_check():
    app = create_app()
    governance = _governance_routes(app)
    assert len(governance) == 7, [r.path for r in governance]
    for route in governance:
        checks = [d.call for d in route.dependant.dependencies]
        assert routes.require_ledger_access in checks, f"{route.path} has no access check"
    # ...and every other route of the app carries the webhook's own check (nothing is left open).
    from modelops.inbound.security import signed_body
    from modelops.links import require_run_access
    from modelops.monitoring.metrics_route import require_metrics_access

    # (the Model Ops page itself, outside the schema, authenticates inline and redirects to the login page:
    # tests/plugins/ui/test_model_ops_view.py)
    known = {signed_body, routes.require_ledger_access, require_metrics_access, require_run_access}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema and route not in governance:
            checks = {d.call for d in route.dependant.dependencies}
            assert checks & known, route.path


def _request(app_route: APIRoute, path: str, query: str = "") -> Request:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": query.encode(),
             "headers": []}
    _, child = app_route.matches(scope)
    return Request({**scope, **child})


def test_the_scope_comes_from_the_route_s_own_parameters():
    by_path = {r.path: r for r in _governance_routes()}
    history_route = by_path[f"{GOVERNANCE_PREFIX}/models/{{model}}/history"]
    export = by_path[f"{GOVERNANCE_PREFIX}/ledger/export.jsonl"]
    verify = by_path[f"{GOVERNANCE_PREFIX}/ledger/verify"]

    assert routes.ledger_scope(_request(history_route, f"{GOVERNANCE_PREFIX}/models/m1/history", "model=m2")) == "m1"
    assert routes.ledger_scope(_request(export, f"{GOVERNANCE_PREFIX}/ledger/export.jsonl", "model=m2")) == "m2"
    assert routes.ledger_scope(_request(export, f"{GOVERNANCE_PREFIX}/ledger/export.jsonl")) is None
    # verify reads the whole ledger: a model in the query cannot narrow the access it needs
    assert routes.ledger_scope(_request(verify, f"{GOVERNANCE_PREFIX}/ledger/verify", "model=m2")) is None


@pytest.mark.parametrize("route", _governance_routes(), ids=lambda r: r.path)
def test_anonymous_callers_and_bad_tokens_are_refused(api, seeded, route):
    path = _path(route)
    anonymous = api.get(path, user=None)  # without even the required parameters: refused before validation
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json() == {"detail": "Not authenticated"}

    forged = api.get(path, user=None, params=_query(path), headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code == 403, forged.text

    no_role = api.get(path, user="nobody", params=_query(path))
    assert no_role.status_code == 403, no_role.text
    assert "audit log" in no_role.json()["detail"]

    viewer = api.get(path, params=_query(path))
    assert viewer.status_code == 200, viewer.text


def test_access_is_decided_on_the_dags_of_the_models_a_route_reads(api, seeded):
    # analyst may read the audit log of MODEL's DAGs, not of OTHER's
    assert api.get(f"/models/{MODEL}/history", user=ANALYST).status_code == 200
    assert api.get("/ledger/export.jsonl", user=ANALYST, params={"model": MODEL}).status_code == 200
    refused = api.get(f"/models/{OTHER}/history", user=ANALYST)
    assert refused.status_code == 403 and f"train_{OTHER}" in refused.json()["detail"]
    assert api.get(f"/models/{OTHER}/aliases", user=ANALYST).status_code == 403
    assert api.get("/ledger/export.jsonl", user=ANALYST, params={"model": OTHER}).status_code == 403
    # the whole ledger holds OTHER's records: refused, and a model in the query of verify narrows nothing
    assert api.get("/ledger/export.jsonl", user=ANALYST).status_code == 403
    assert api.get("/ledger/verify", user=ANALYST).status_code == 403
    assert api.get("/ledger/verify", user=ANALYST, params={"model": MODEL}).status_code == 403
    assert api.get("/ledger/verify", user="viewer", params={"model": MODEL}).status_code == 200


def test_a_refusal_is_logged_with_the_user(api, seeded):
    offset = api.log.stat().st_size
    assert api.get(f"/models/{MODEL}/history", user="nobody").status_code == 403
    pattern = re.compile(r"governance: refused GET \S+/history to user 'nobody': no read access to the audit log")
    deadline = time.monotonic() + 10  # the server writes its log in its own process
    while not pattern.search(logged := api.log.read_bytes()[offset:].decode(errors="replace")):
        assert time.monotonic() < deadline, logged[-2000:]
        time.sleep(0.2)


# --- aliases ------------------------------------------------------------------------------------------


def test_the_alias_timeline_is_every_term_as_seeded(api, seeded):
    response = api.get(f"/models/{MODEL}/aliases")

    assert response.status_code == 200, response.text
    body = response.json()
    terms = [(t["alias"], t["version"], t["start"], t["end"], t["actor"]) for t in body["terms"]]
    assert terms == [("champion", "1", T_CHAMPION_1, T_CHAMPION_2, "alice"),
                     ("challenger", "2", T_CHALLENGER_2, None, "scheduler"),
                     ("champion", "2", T_CHAMPION_2, None, "bob")]
    assert body["current"] == {"champion": "2", "challenger": "2"}
    assert body["terms"][0]["reason"] == "first champion" and body["terms"][0]["run_id"] == "promote-1"

    champion = api.get(f"/models/{MODEL}/aliases", params={"alias": "champion"}).json()
    assert [(t["version"], t["start"]) for t in champion["terms"]] == [("1", T_CHAMPION_1), ("2", T_CHAMPION_2)]
    assert champion["alias"] == "champion" and champion["current"] == {"champion": "2"}


@pytest.mark.parametrize(("when", "version"), [
    ("2026-11-03T00:00:00Z", "1"),  # between the two moves: the first version
    ("2026-11-03T00:00:00+01:00", "1"),  # an offset is honoured (sent as %2B)
    ("2026-11-05T10:00:00Z", "2"),  # a move at exactly that time counts as done
    ("2026-11-05T09:59:59.999999Z", "1"),
    ("2026-11-05T10:00:00", "2"),  # no offset: UTC
    ("2027-01-01", "2"),
])
def test_which_version_the_champion_was_at_a_time(api, seeded, when, version):
    response = api.get(f"/models/{MODEL}/aliases/champion/at", params={"time": when})

    assert response.status_code == 200, response.text
    assert response.json()["version"] == version
    assert response.json()["alias"] == "champion" and response.json()["model"] == MODEL


def test_before_the_first_move_no_version_is_404_naming_the_alias_and_time(api, seeded):
    response = api.get(f"/models/{MODEL}/aliases/champion/at", params={"time": "2026-10-31T12:00:00Z"})

    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert "'champion'" in detail and "2026-10-31T12:00:00.000000Z" in detail and T_CHAMPION_1 in detail

    never = api.get(f"/models/{MODEL}/aliases/shadow/at", params={"time": "2026-11-03T00:00:00Z"})
    assert never.status_code == 404 and "no move of it" in never.json()["detail"]


@pytest.mark.parametrize("when", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-03T00:00:00 01:00", ""])
def test_an_unreadable_time_is_422_naming_the_parameter(api, seeded, when):
    response = api.get(f"/models/{MODEL}/aliases/champion/at", params={"time": when})

    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "time"]
    assert "ISO 8601" in error["msg"]


def test_a_time_before_year_1_once_in_utc_is_422_not_a_server_error(api, seeded):
    response = api.get(f"/models/{MODEL}/aliases/champion/at", params={"time": "0001-01-01T00:00:08+01:00"})

    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "time"] and "out of range" in error["msg"]


# --- history ------------------------------------------------------------------------------------------


def test_the_history_is_the_model_s_records_without_alias_moves(api, seeded):
    response = api.get(f"/models/{MODEL}/history")

    assert response.status_code == 200, response.text
    expected = [e for e in _dicts(seeded.ledger.records(model=MODEL)) if e["action"] != "alias_set"]
    assert response.json()["records"] == expected
    assert [r["action"] for r in expected] == ["register", "approve", "deploy"]


def test_the_history_filters_by_action_and_time(api, seeded):
    records = _dicts(seeded.ledger.records(model=MODEL))

    chosen = api.get(f"/models/{MODEL}/history", params=[("action", "deploy"), ("action", "approve")]).json()
    assert chosen["records"] == [r for r in records if r["action"] in ("approve", "deploy")]
    assert chosen["actions"] == ["deploy", "approve"]

    since = api.get(f"/models/{MODEL}/history", params={"since": "2026-11-04T09:00:00Z"}).json()
    assert [r["action"] for r in since["records"]] == ["approve", "deploy"]  # since is inclusive
    assert since["since"] == T_APPROVE

    moves = api.get(f"/models/{MODEL}/history", params={"action": "alias_set"}).json()
    assert [(r["version"], r["details"]["alias"]) for r in moves["records"]] == [
        ("1", "champion"), ("2", "challenger"), ("2", "champion")]
    assert len(api.get(f"/models/{MODEL}/history", params={"alias_moves": "true"}).json()["records"]) == len(records)

    bad = api.get(f"/models/{MODEL}/history", params={"since": "last week"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "since"]


# --- lineage and evidence -----------------------------------------------------------------------------


def test_the_lineage_of_a_version(api, seeded):
    response = api.get(f"/models/{MODEL}/versions/2/lineage")

    assert response.status_code == 200, response.text
    lineage = response.json()
    assert (lineage["model"], lineage["version"]) == (MODEL, "2")
    assert lineage["data"]["data_fingerprint"] == seeded.fingerprint
    assert lineage["training_run"]["id"] == seeded.run_id and lineage["training_run"]["metrics"] == {"auc": 0.91}
    assert [r["reason"] for r in lineage["approvals"]] == ["reviewed the gates"]
    assert [r["action"] for r in lineage["deployments"]] == ["deploy"]
    assert [(t["alias"], t["start"]) for t in lineage["alias_terms"]] == [("challenger", T_CHALLENGER_2),
                                                                          ("champion", T_CHAMPION_2)]
    assert lineage["records"] == _dicts(seeded.ledger.records(model=MODEL, version="2"))


def test_the_lineage_of_an_unknown_version_is_404_naming_it(api, seeded):
    response = api.get(f"/models/{MODEL}/versions/99/lineage")

    assert response.status_code == 404, response.text
    assert response.json()["detail"] == f"model '{MODEL}' has no version '99' in the MLflow registry"

    unknown_model = api.get("/models/no_such_model/versions/1/lineage")
    assert unknown_model.status_code == 404 and "'no_such_model'" in unknown_model.json()["detail"]

    not_a_number = api.get(f"/models/{MODEL}/versions/latest/lineage")
    assert not_a_number.status_code == 422 and not_a_number.json()["detail"][0]["loc"] == ["path", "version"]


def test_the_evidence_pack_is_a_zip_with_the_lineage(api, seeded):
    response = api.get(f"/models/{MODEL}/versions/1/evidence")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="{MODEL}-v1-evidence.zip"'
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = set(archive.namelist())
        lineage = json.loads(archive.read("lineage.json"))
        records = [json.loads(line) for line in archive.read("records.jsonl").decode().splitlines()]
        validation = json.loads(archive.read("validation/gx_result.json"))
    assert {"lineage.json", "index.json", "records.jsonl", "alias_timeline.json"} <= names
    assert (lineage["model"], lineage["version"]) == (MODEL, "1")
    assert lineage["training_run"]["id"] == seeded.run_id
    assert records == _dicts(seeded.ledger.records(model=MODEL, version="1"))
    assert validation == {"success": True}  # the training run's artifact, fetched from MLflow by the server

    assert api.get(f"/models/{MODEL}/versions/7/evidence").status_code == 404


# --- export and verification --------------------------------------------------------------------------


def _lines(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


def test_the_export_is_json_lines_equal_to_the_records(api, seeded):
    response = api.get("/ledger/export.jsonl")

    everything = _dicts(seeded.ledger.records())
    assert _lines(response) == everything
    assert response.text == "".join(canonical(e).decode() + "\n" for e in everything)  # byte for byte, hashable
    assert {e["model"] for e in everything} == {MODEL, OTHER}

    assert _lines(api.get("/ledger/export.jsonl", params={"model": OTHER})) == _dicts(seeded.ledger.records(model=OTHER))
    since = _lines(api.get("/ledger/export.jsonl", params={"model": MODEL, "since": T_CHAMPION_2}))
    assert [e["action"] for e in since] == ["alias_set", "deploy"]
    assert api.get("/ledger/export.jsonl", params={"since": "soon"}).status_code == 422


def _anchor_runs(store: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store, store)
    experiment = client.get_experiment_by_name(integrity.ANCHOR_EXPERIMENT)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_verify_reports_the_chain_reads_only_and_finds_an_edit(api, seeded):
    head = seeded.ledger.head()
    response = api.get("/ledger/verify")

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] is True and report["problems"] == []
    assert (report["checked"], report["head_seq"], report["head_hash"]) == (head.seq, head.seq, head.hash)
    # read-only: no anchors run was created, nothing was appended
    assert report["anchors_found"] is False and _anchor_runs(seeded.tracking_uri) == []
    assert seeded.ledger.head() == head

    # An edited record is named; the edit is undone afterwards.
    target = seeded.ledger.records(model=MODEL, actions=["approve"])[0]
    table = records_table
    with seeded.ledger.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.seq == target.seq).values(reason="nobody reviewed anything"))
    try:
        tampered = api.get("/ledger/verify").json()
    finally:
        with seeded.ledger.engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.seq == target.seq).values(reason=target.reason))
    assert tampered["ok"] is False
    assert [(p["kind"], p["seq"]) for p in tampered["problems"]] == [("edited", target.seq)]
    assert "TAMPERED" in tampered["summary"]

    # Anchors written by the ledger's own job are read and checked, not written.
    client = tracking.configure(seeded.tracking_uri)
    integrity.anchor(integrity.MlflowAnchorStore(client, seeded.ledger), seeded.ledger)
    anchored = api.get("/ledger/verify").json()
    assert anchored["ok"] is True and anchored["anchors_found"] is True and anchored["anchors_checked"] == 1
    assert len(_anchor_runs(seeded.tracking_uri)) == 1


# --- the webhook is unchanged -------------------------------------------------------------------------


def test_the_drift_webhook_still_takes_its_signature_not_an_airflow_token(api, seeded):
    url = f"{api.url}/modelops/api/v1/drift-alerts"
    with_token = httpx.post(url, content=b"{}", timeout=30, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {api.tokens['admin']}"})
    assert with_token.status_code == 401, with_token.text
    assert with_token.headers["WWW-Authenticate"].startswith("HMAC-SHA256")

    signed = httpx.post(url, content=b"{}", timeout=30,
                        headers={"Content-Type": "application/json", **signed_headers(WEBHOOK_SECRET, b"{}")})
    assert signed.status_code == 422, signed.text  # past the signature check: not one of the payload formats


# --- the governance schema, fuzzed with a token -------------------------------------------------------

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def test_fuzzed_requests_with_a_token_get_documented_answers_and_no_server_error(api, seeded, state_dir):
    set_hypothesis_home_dir(state_dir / "hypothesis")
    schema = schemathesis.openapi.from_url(f"{api.url}/modelops/openapi.json").include(path_regex=r"^/governance/")
    cases = st.one_of(*(schema.as_strategy(generation_mode=mode) for mode in GenerationMode))
    seen: Counter[int] = Counter()

    @FUZZ
    @given(case=cases)
    def check(case):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {api.tokens['viewer']}"}
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        assert response.status_code in (200, 404, 422), response.text
        seen[response.status_code] += 1

    check()
    assert seen[200] > 0 and seen[422] > 0, seen
