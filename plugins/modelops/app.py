"""The plugin's FastAPI app, served by ``airflow api-server`` under ``/modelops``: one router per resource.

==========================  ============================================================  =========================
path (under ``/modelops``)  what                                                          authentication
==========================  ============================================================  =========================
``/api/v1/drift-alerts``    the drift webhook (:mod:`modelops.inbound`)                   HMAC signature (project,
                                                                                          Grafana) or bearer token
``/governance/...``         the audit ledger, read-only (:mod:`modelops.governance.routes`)  Airflow's (JWT / session)
``/metrics``                Prometheus metrics (:mod:`modelops.monitoring.metrics_route`)  Airflow's
``/links/...``              what a task produced: MLflow, Data Docs, Evidently, Triton    Airflow's
                            (:mod:`modelops.links`)
``/ui/``                    the Model Ops view in Airflow's nav (:mod:`modelops.ui`)      Airflow's
==========================  ============================================================  =========================

Airflow adds no authentication to plugin apps: each router brings its own (``modelops.auth`` for
Airflow's). The OpenAPI schema also carries the webhook's payload formats.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from include.inbound.payloads import payload_json_schema
from modelops import links
from modelops.governance import routes as governance
from modelops.inbound.routes import drift_alerts
from modelops.monitoring import metrics_route
from modelops.ui import routes as ui

TITLE = "Model Ops"
GOVERNANCE_PREFIX = "/governance"
UI_PREFIX = "/ui"


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request payload formats (the handler reads the raw body to verify it)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        payload = payload_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(payload.pop("$defs"))
        components["DriftAlertPayload"] = {"title": "DriftAlertPayload", **payload}
        app.openapi_schema = schema
    return app.openapi_schema


def create_app() -> FastAPI:
    """The app ``plugins/modelops_plugin.py`` registers under ``/modelops``.

    ``/docs`` (Swagger UI) and ``/redoc`` load their scripts from the ``fastapi-offline`` package, served
    by this app, not from a CDN: they work where the browser cannot reach the internet.
    """
    app = FastAPIOffline(
        title=TITLE,
        version="1",
        description="Drift alerts (Alertmanager, Grafana, the project format) start retraining runs; the "
                    "governance routes answer from the audit ledger (alias history, model history, lineage, "
                    "evidence packs, JSON Lines export, chain verification); `/metrics` serves Prometheus metrics; "
                    "`/links` opens what a task produced; `/ui/` is the Model Ops view. Airflow adds no "
                    "authentication to plugin apps, so each router brings its own: the drift-alerts route takes the "
                    "project's or Grafana's HMAC signature or Alertmanager's bearer token; every other route needs "
                    "an Airflow API token (`POST /auth/token`, sent as `Authorization: Bearer <token>`) or the "
                    "Airflow UI's session, whose user may read what the route returns.",
    )
    app.include_router(drift_alerts.router)
    app.include_router(governance.router, prefix=GOVERNANCE_PREFIX)
    app.include_router(metrics_route.router)  # GET /metrics: Prometheus, behind Airflow's authentication
    app.include_router(links.router)  # /links/...: what a task produced (MLflow, Triton), Airflow's authentication
    app.include_router(ui.router, prefix=UI_PREFIX)  # the Model Ops view (page + data), Airflow's authentication
    app.mount(f"{UI_PREFIX}/static", ui.static_files(), name=ui.STATIC_NAME)  # its script, style, Chart.js
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
