"""``POST /api/v1/drift-alerts``: a signed drift alert starts a retraining run of its model."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, status

from include import webhook
from modelops.webhook.models import AlertRun, DriftAlertsResponse, ErrorResponse, IgnoredAlert, ValidationErrorResponse
from modelops.webhook.runs import TriggerError, start_runs
from modelops.webhook.security import SignedBody, client_of, reject, signed_body

log = logging.getLogger("modelops.webhook")

PAYLOAD_REF = "#/components/schemas/DriftAlertPayload"

# The access check guards every route of this router; the handler also takes the verified body.
router = APIRouter(prefix="/api/v1/drift-alerts", tags=["Drift alerts"], dependencies=[Depends(signed_body)])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"model": ErrorResponse, "description": "Missing, invalid or stale signature"},
    status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": "Unknown model, or its training DAG is not parsed"},
    status.HTTP_409_CONFLICT: {"model": ErrorResponse, "description": "The training DAG cannot be triggered"},
    status.HTTP_413_CONTENT_TOO_LARGE: {"model": ErrorResponse, "description": "Body over the size limit"},
    status.HTTP_422_UNPROCESSABLE_CONTENT: {"model": ValidationErrorResponse,
                                            "description": "Not one of the payload formats; `loc` names the field"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ErrorResponse, "description": "No shared secret configured"},
}


@router.post(
    "",
    response_model=DriftAlertsResponse,
    responses=_RESPONSES,
    summary="Start retraining for drift alerts (Alertmanager v4, Grafana v1 or the project format)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": PAYLOAD_REF}}}}},
)
def post_drift_alerts(request: Request, body: SignedBody) -> DriftAlertsResponse:
    """Each firing alert of a configured model starts one run of ``train_<model>`` with the alert in its
    conf (param ``alert``). The run id is derived from the alert's identity, so a redelivered alert
    answers 200 with the run it started before. Resolved alerts start nothing. Nothing starts unless
    every alert in the body can start (all or nothing)."""
    from airflow.utils.session import create_session
    from sqlalchemy.exc import IntegrityError

    try:
        payload = webhook.parse_payload(body)
    except webhook.PayloadError as exc:
        detail = [{**e, "loc": ["body", *e["loc"]]} for e in exc.errors]
        raise reject(request, status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc), detail) from None
    alerts = webhook.normalize(payload)
    source = alerts[0].source

    for attempt in (1, 2):  # a concurrent delivery of the same alert may insert its run first: look again
        try:
            with create_session(scoped=False) as session:
                outcomes = start_runs(alerts, session)
            break
        except TriggerError as exc:
            raise reject(request, exc.status_code, str(exc)) from None
        except IntegrityError:
            if attempt == 2:
                raise
            log.info("drift webhook: a concurrent delivery created a run first; reading it")

    response = DriftAlertsResponse(
        format=source,
        runs=[AlertRun(model=o.alert.model, alert=o.alert.identity, source=o.alert.source, dag_id=o.dag_id,
                       run_id=o.run_id, state=o.state, created=o.created) for o in outcomes],
        ignored=[IgnoredAlert(model=a.model, alert=a.identity, source=a.source, reason=a.status)
                 for a in alerts if a.status != "firing"],
    )
    log.info(
        "drift webhook: accepted %s alert(s) (%s) from %s: started %s, already started %s, ignored %s",
        len(alerts), source, client_of(request),
        [f"{r.dag_id}/{r.run_id}" for r in response.runs if r.created] or "none",
        [f"{r.dag_id}/{r.run_id}" for r in response.runs if not r.created] or "none",
        len(response.ignored),
    )
    return response

