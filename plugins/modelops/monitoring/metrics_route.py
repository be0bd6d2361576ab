"""``GET /metrics``: the monitored models' metrics in the Prometheus text format, behind Airflow's authentication.

Served by ``airflow api-server`` inside the plugin app (:func:`modelops.app.create_app`), so
``/modelops/metrics``. The values are what the monitoring DAG recorded in MLflow for each model's latest
assessed hour, with the registry's aliases and the versions Triton serves (:mod:`include.monitoring.metrics`
lists the metrics); nothing is computed per scrape. ``?model=`` (repeatable) narrows it to those models;
without it, every configured model (``config/models/*.yaml``).

**Authentication** is Airflow's (:func:`modelops.auth.airflow_user`): ``Authorization: Bearer <JWT>`` (what
Prometheus's ``authorization`` scrape setting sends) or the UI's session cookie. No token or an expired
one: 401; a token that is not valid: 403.

**Authorization**: read access to the runs of each exposed model's monitoring DAG (``monitor_<model>``:
``GET`` on ``DagAccessEntity.RUN``, what the core API's ``/api/v2/dags/{dag_id}/dagRuns`` checks): the
metrics are what those runs recorded. Refused: 403 naming the DAGs.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST

from include import dag_ids
from include.config import ConfigError, ModelConfig, model_configs
from modelops.auth import airflow_user, may_access_dags
from modelops.governance.routes import MlflowClientDep  # the mlflow_default connection's client (503 if broken)

log = logging.getLogger("modelops.monitoring")

ModelsQuery = Annotated[list[str] | None, Query(
    alias="model", description="Only these models (repeat the parameter for several); default: every configured "
                               "model.")]


def _configs() -> dict[str, ModelConfig]:
    """The configured models (503 when the config folder does not load)."""
    try:
        return model_configs()
    except ConfigError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"model configuration: {exc}") from None


def metrics_scope(requested: ModelsQuery = None) -> dict[str, ModelConfig]:
    """The models a request exposes: those of ``?model=``, else every configured one. 404 for one not configured."""
    configs = _configs()
    if not requested:
        return configs
    unknown = sorted(set(requested) - set(configs))
    if unknown:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"not a configured model: {', '.join(unknown)} "
                                                       f"(configured: {', '.join(sorted(configs)) or 'none'})")
    return {name: configs[name] for name in requested}


Scope = Annotated[dict[str, ModelConfig], Depends(metrics_scope)]


def require_metrics_access(request: Request, user: Annotated[Any, Depends(airflow_user)], scope: Scope) -> None:
    """The access check of ``/metrics``: an Airflow user who may read the runs of ``monitor_<model>`` for every
    model exposed (the module docstring); 401 / 403 otherwise. With no model configured: any authenticated user."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    ids = [dag_ids.dag_id(dag_ids.Stage.MONITOR, name) for name in scope]
    if ids and not may_access_dags(user, ids, DagAccessEntity.RUN):
        log.warning("metrics: refused %s %s to user %r: no read access to the runs of %s",
                    request.method, request.url.path, user.get_name(), ", ".join(ids))
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"Forbidden: the metrics need read access to the runs of the DAGs {', '.join(ids)}")


# Every route of this router is behind the access check (set on the router, so no route can leave it out).
router = APIRouter(tags=["Monitoring"], dependencies=[Depends(require_metrics_access)])


@router.get(
    "/metrics", response_class=Response,
    responses={
        status.HTTP_200_OK: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "The Prometheus text format: one gauge family per metric, HELP included"},
        status.HTTP_401_UNAUTHORIZED: {"description": "No Airflow token (or session), or it expired"},
        status.HTTP_403_FORBIDDEN: {"description": "A token that is not valid, or no read access to the runs of "
                                                   "the models' monitoring DAGs"},
        status.HTTP_404_NOT_FOUND: {"description": "`model` names a model that is not configured"},
        status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "The model configuration or MLflow connection is broken"},
    },
    summary="The monitored models' latest assessed hour, aliases and served versions, for Prometheus")
def get_metrics(scope: Scope, client: MlflowClientDep) -> Response:
    """Drift share and per-feature drift scores, KPIs and their drops, the alert tier, rows, online latency
    quantiles, data-quality counts and the hour's time, per model and serving version, as the monitoring DAG
    recorded them in MLflow; the registry's aliases and the versions Triton serves. A model MLflow failed to
    answer for has ``modelops_metrics_read_success 0`` (the scrape still succeeds)."""
    from include.monitoring import metrics

    return Response(metrics.exposition(client, scope), media_type=CONTENT_TYPE_LATEST)
