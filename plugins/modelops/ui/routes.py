"""The Model Ops view: one page inside the Airflow UI and the JSON routes it reads.

Served by ``airflow api-server`` inside the plugin app (:func:`modelops.app.create_app`, prefix
``/ui``; so ``/modelops/ui/...``); the plugin registers the page as an Airflow ``external_views`` nav entry,
which the Airflow UI shows in a frame of its own page (``/plugin/model-ops``):

=================================================  ==================================================
``GET /``                                          the page (HTML): every configured model
``GET /api/models/{model}``                        :class:`~modelops.ui.models.ModelStatus`: aliases, what
                                                   Triton serves (asked live), 48 monitored hours, open
                                                   conditions, the latest ledger records, the versions
``GET /api/models/{model}/versions/{version}``     :class:`~modelops.ui.models.VersionLineage`: lineage
                                                   with links to the MLflow UI
``GET /static/...``                                the page's script, style, icon and the vendored Chart.js
=================================================  ==================================================

**Authentication** is Airflow's, as on the governance routes (:func:`modelops.auth.airflow_user`:
the ``_token`` session cookie the Airflow UI logs in with, or an ``Authorization: Bearer`` API token). The data
routes carry :func:`~modelops.governance.routes.require_ledger_access` (read access to the audit log of the
model's lifecycle DAGs: what they show is the model's audit trail and monitoring), so 401 without a session,
403 without that access. The page answers an anonymous request with a redirect to the auth manager's login
page (``?next=`` back here). The static files hold no data and are served to anyone.

**No second way to change state**: the page's buttons start the lifecycle DAGs through Airflow's own REST API
(``POST /api/v2/dags/{dag_id}/dagRuns``) with the user's session, so Airflow's authorization and the DAGs'
``Param`` validation decide, and the runs carry the user's name. These routes only read.
"""

from __future__ import annotations

import logging
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from include.config import ConfigError, ModelConfig, model_configs
from include.governance.ledger import LedgerError, default_ledger
from modelops.auth import airflow_user, bearer
from modelops.governance.models import ErrorResponse
from modelops.governance.routes import require_ledger_access
from modelops.ui import HOURS
from modelops.ui.models import ModelStatus, VersionLineage

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from include.links import MlflowUi

# modelops.ui.status (MLflow, pandas) is imported inside the routes: the plugin, and so this module, is also
# imported by schedulers and task processes, which must not pay for it.

log = logging.getLogger("modelops.ui")

HERE = FsPath(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
STATIC_NAME = "modelops-ui-static"

_ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"model": ErrorResponse, "description": "No Airflow session or token, or it expired"},
    status.HTTP_403_FORBIDDEN: {"model": ErrorResponse, "description": "A token that is not valid, or no read access "
                                                                       "to the audit log of the model's DAGs"},
    status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": "No such configured model (or version)"},
    status.HTTP_502_BAD_GATEWAY: {"model": ErrorResponse, "description": "MLflow answered with an error"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ErrorResponse,
                                          "description": "The model configs, MLflow or the audit ledger cannot be read"},
}

ModelName = Annotated[str, Path(description="A configured model (config/models/<name>.yaml).", min_length=1)]
VersionName = Annotated[str, Path(description="The model version (a number, as MLflow numbers them).", min_length=1)]


def static_files() -> StaticFiles:
    """The page's static files (``plugins/modelops/ui/static``), to mount at ``<prefix>/static``."""
    return StaticFiles(directory=STATIC_DIR)


# --- dependencies -------------------------------------------------------------------------------------


def _configs() -> dict[str, ModelConfig]:
    try:
        return model_configs()
    except ConfigError as exc:
        log.error("ui: the model configs cannot be read: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"model configs: {exc}") from None


def _config(model: ModelName) -> ModelConfig:
    configs = _configs()
    if model not in configs:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no configured model {model!r} "
                                                       f"(configured: {', '.join(sorted(configs)) or 'none'})")
    return configs[model]


def _mlflow() -> tuple[MlflowClient, MlflowUi | None]:
    """The MLflow client of the ``mlflow_default`` connection (else ``MLFLOW_TRACKING_URI``) and that server's
    web UI for links (:attr:`~modelops.mlflow_hook.MlflowHook.ui_url`; none for a local store)."""
    from include.links import MlflowUi
    from modelops.mlflow_hook import MlflowHook

    hook = MlflowHook()
    try:
        base = hook.ui_url
        return hook.client, MlflowUi(base) if base else None
    except ValueError as exc:  # a connection that names no server, or conflicting credentials
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"MLflow: {exc}") from None


def _triton_url() -> str:
    from modelops.serving.hooks import TritonHook

    return TritonHook().url


def _base_path() -> str:
    """The API server's base path (``[api] base_url``'s path, no trailing slash): where ``/api/v2`` lives."""
    from airflow.api_fastapi.app import get_cookie_path

    return get_cookie_path().rstrip("/")


def _failed(exc: Exception, what: str) -> HTTPException:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, LedgerError):
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"audit ledger: {exc}")
    if isinstance(exc, MlflowException):
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return HTTPException(status.HTTP_404_NOT_FOUND, f"MLflow has no {what}")
        log.error("ui: MLflow failed on %s: %s", what, exc)
        return HTTPException(status.HTTP_502_BAD_GATEWAY, f"MLflow: {exc}")
    raise exc


# --- routes -------------------------------------------------------------------------------------------

router = APIRouter(tags=["Model Ops view"])
# Every data route is behind the access check (set on the router, so no route can leave it out).
api = APIRouter(prefix="/api", dependencies=[Depends(require_ledger_access)], responses=_ERRORS)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Response:
    """The page: the configured models (their data is fetched by the page from the routes below).

    Anonymous (or an expired or invalid session): a redirect to the auth manager's login page, back here after.
    """
    from airflow.api_fastapi.app import get_auth_manager

    try:
        user = await airflow_user(request, credentials)
    except HTTPException as exc:
        if exc.status_code not in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            raise
        login = get_auth_manager().get_url_login()
        return RedirectResponse(f"{login}?{urlencode({'next': str(request.url)})}", status.HTTP_303_SEE_OTHER)
    configs = _configs()
    base = _base_path()
    settings = {
        "models": [{"name": c.name, "description": c.description, "owner": c.owner} for c in configs.values()],
        "api": request.url_for("model_status", model="__model__").path.removesuffix("/__model__"),
        "airflow_api": f"{base}/api/v2",
        "airflow_ui": base or "",
        "hours": HOURS,
        "user": user.get_name(),
    }
    return TEMPLATES.TemplateResponse(request, "index.html", {
        "settings": settings, "static": lambda path: request.url_for(STATIC_NAME, path=path).path})


@api.get("/models/{model}", response_model=ModelStatus, name="model_status",
         summary="What the view shows for one model: aliases, serving, monitoring, alerts, ledger, versions")
def get_model_status(config: Annotated[ModelConfig, Depends(_config)],
                     mlflow: Annotated[tuple[Any, Any], Depends(_mlflow)],
                     triton_url: Annotated[str, Depends(_triton_url)]) -> ModelStatus:
    """The versions behind ``@champion``, ``@previous_champion`` and ``@challenger``; what Triton serves now
    (asked live; ``unreachable`` when it does not answer); the last 48 monitored hours; the latest hour's tier
    and open conditions; the latest ledger records; the registry's versions; the DAGs the buttons start."""
    from modelops.ui.status import model_status

    client, ui = mlflow
    try:
        return model_status(client, config, ledger=default_ledger(), ui=ui, triton_url=triton_url)
    except Exception as exc:  # noqa: BLE001  (_failed re-raises what it does not map)
        raise _failed(exc, f"registered model {config.name!r}") from None


@api.get("/models/{model}/versions/{version}", response_model=VersionLineage,
         summary="One version's lineage, with links to the MLflow UI")
def get_version(config: Annotated[ModelConfig, Depends(_config)], version: VersionName,
                mlflow: Annotated[tuple[Any, Any], Depends(_mlflow)]) -> VersionLineage:
    """:func:`include.governance.history.version_lineage` (data, validation, training run, gates, approvals,
    deployments, alias terms, retirement, every ledger record) and the MLflow UI pages of the version, its
    training run and experiment (null without an MLflow web UI). 404: MLflow has no such version."""
    from include.governance import history
    from modelops.ui.status import lineage_links

    client, ui = mlflow
    try:
        lineage = history.version_lineage(client, config.name, version, ledger=default_ledger())
    except Exception as exc:  # noqa: BLE001
        raise _failed(exc, f"version {version!r} of {config.name!r}") from None
    return VersionLineage(lineage=lineage, links=lineage_links(ui, lineage))


router.include_router(api)
