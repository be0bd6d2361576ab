"""The plugin's FastAPI app: one router per resource, the payload formats in its OpenAPI schema.

``/api/v1/drift-alerts``: the drift webhook, behind HMAC request signatures (:mod:`modelops.inbound.security`).
``/governance/...``: the audit ledger's read-only API, behind Airflow's own authentication
(:mod:`modelops.governance.routes`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from include.inbound.payloads import payload_json_schema
from modelops.governance import routes as governance
from modelops.inbound.routes import drift_alerts

TITLE = "Model Ops drift webhook"
GOVERNANCE_PREFIX = "/governance"


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
        description="Signed drift alerts (Alertmanager, Grafana, the project format) start retraining runs; "
                    "the governance routes answer from the audit ledger (alias history, model history, lineage, "
                    "evidence packs, JSON Lines export, chain verification). Airflow adds no authentication to "
                    "plugin apps, so each router brings its own: the drift-alerts route checks the request's HMAC "
                    "signature; every governance route needs an Airflow API token (`POST /auth/token`, sent as "
                    "`Authorization: Bearer <token>`) whose user may read the audit log of the DAGs concerned.",
    )
    app.include_router(drift_alerts.router)
    app.include_router(governance.router, prefix=GOVERNANCE_PREFIX)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
