"""Airflow's own authentication and DAG access checks for the plugin app's routes.

``airflow api-server`` serves plugin apps without its authentication (``fastapi_apps``), so each router
that is not signed (the drift webhook's HMAC, :mod:`modelops.inbound.security`) depends on
:func:`airflow_user` and asks the configured auth manager with :func:`may_access_dags`: the governance
routes (:mod:`modelops.governance.routes`) and the metrics route (:mod:`modelops.monitoring.metrics_route`).

The caller is authenticated exactly as the core API does (``airflow.api_fastapi.core_api.security.get_user``):
the ``Authorization: Bearer <JWT>`` from ``POST /auth/token``, else the UI's session cookie, so the token
a user already has for ``/api/v2`` works here and the configured auth manager (simple, FAB, Keycloak,
AWS…) decides. No token: 401; an expired one: 401; a token that is not valid: 403.

Airflow is imported inside the functions: the plugin (and so this module) is also imported by
schedulers and task processes, which must not pay for the API server's modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(
    auto_error=False, scheme_name="AirflowToken",
    description="An Airflow API token (JWT): `POST /auth/token` on the API server, the same token as for "
                "`/api/v2`. The Airflow UI's session cookie works too.")


async def airflow_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Any:
    """The Airflow user of the request, authenticated as the core API does (``core_api.security.get_user``).

    Raises 401 without a token or session cookie, 401 for an expired token, 403 for a token that is not valid.
    """
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, credentials)


def may_access_dags(user: Any, dag_ids: Sequence[str], access_entity: Any = None, *, method: str = "GET",
                    general: bool = False) -> bool:
    """Whether the auth manager lets ``user`` do ``method`` on ``access_entity`` (a ``DagAccessEntity``; None:
    the DAG itself) of every DAG in ``dag_ids``, each with its team in multi-team deployments, as the core
    API's ``requires_access_dag`` asks (``batch_is_authorized_dag``).

    ``general``: also ask without a DAG id (what an auth manager answers as "may do this on DAGs at all");
    with no ``dag_ids`` that question alone decides. Without ``general`` and without ``dag_ids``: False.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.models.dag import DagModel

    ids = list(dict.fromkeys(dag_ids))
    teams = DagModel.get_dag_id_to_team_name_mapping(ids) if ids else {}
    details = [DagDetails(id=i, team_name=teams.get(i)) for i in ids]
    if general:
        details.insert(0, DagDetails(id=None))
    if not details:
        return False
    requests = [{"method": method, "access_entity": access_entity, "details": d} for d in details]
    return get_auth_manager().batch_is_authorized_dag(requests, user=user)
