"""``POST /api/v1/drift-alerts``: authenticated drift alerts (the project's or Grafana's HMAC signature,
Alertmanager's bearer token) start a retraining run of their model."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, status

from include.inbound import drift_alerts, payloads
from modelops.inbound import settings
from modelops.inbound.models import AlertRun, DriftAlertsResponse, ErrorResponse, IgnoredAlert, ValidationErrorResponse
from modelops.inbound.runs import TriggerError, start_runs
from modelops.inbound.security import SignedBody, client_of, misconfigured, record_delivery, reject, signed_body

log = logging.getLogger("modelops.inbound")

PAYLOAD_REF = "#/components/schemas/DriftAlertPayload"

# The access check guards every route of this router; the handler also takes the verified body.
router = APIRouter(prefix="/api/v1/drift-alerts", tags=["Drift alerts"], dependencies=[Depends(signed_body)])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"model": ErrorResponse,
                                   "description": "No credentials (the detail lists the accepted schemes), or a "
                                                  "credential that is wrong, malformed, stale or of a scheme not "
                                                  "configured (the detail names the scheme: modelops_hmac, "
                                                  "grafana_hmac, bearer)"},
    status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": "Unknown model, or its training DAG is not parsed"},
    status.HTTP_409_CONFLICT: {"model": ErrorResponse, "description": "The training DAG cannot be triggered"},
    status.HTTP_413_CONTENT_TOO_LARGE: {"model": ErrorResponse, "description": "Body over the size limit"},
    status.HTTP_422_UNPROCESSABLE_CONTENT: {"model": ValidationErrorResponse,
                                            "description": "Not one of the payload formats (`loc` names the field), "
                                                           "more firing drift alerts than the limit, or alerts of "
                                                           "one model that name different `dataset_uri`s"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ErrorResponse,
                                          "description": "Neither an HMAC secret nor a bearer token configured, "
                                                         "or a setting is not valid"},
}


@router.post(
    "",
    response_model=DriftAlertsResponse,
    responses=_RESPONSES,
    summary="Start retraining for drift alerts (Alertmanager v4, Grafana v1 or the project format)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": PAYLOAD_REF}}}}},
)
def post_drift_alerts(request: Request, body: SignedBody) -> DriftAlertsResponse:
    """The firing drift alerts of a configured model start one run of ``train_<model>`` with the alerts
    in its conf (param ``alert``). Resolved alerts and alerts that do not mean drift (Grafana's
    DatasourceNoData / DatasourceError, alerts Grafana fired on NoData or Error, the ignored
    alertnames) start nothing and are listed under ``ignored`` with the reason. An alert an earlier
    delivery already started a run for starts nothing again (``created: false``). More firing drift
    alerts than the limit is 422. Nothing starts unless every alert in the body can start (all or
    nothing).

    A run trains on the ``dataset_uri`` its alerts name (project format: the field; Alertmanager and
    Grafana: the annotation or label), else on the DAG's default (the model's ``dataset.uri``); alerts
    of one model naming different ones are 422. Each run in the answer says which data it trains on
    (``dataset_uri``, ``dataset_uri_from``) and, in ``note``, that it skips itself when a version was
    already trained from that data, code and params."""
    from airflow.utils.session import create_session
    from sqlalchemy.exc import IntegrityError

    try:
        payload = payloads.parse_payload(body)
    except payloads.PayloadError as exc:
        detail = [{**e, "loc": ["body", *e["loc"]]} for e in exc.errors]
        raise reject(request, status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc), detail) from None
    try:
        limit, ignored_names, names = settings.max_alerts(), settings.ignored_alertnames(), settings.alertnames()
    except settings.SettingsError as exc:
        raise misconfigured(request, exc) from None
    alerts = drift_alerts.normalize(payload)
    source = alerts[0].source
    drift, ignored = drift_alerts.triage(alerts, ignored_alertnames=ignored_names, alertnames=names)
    if len(drift) > limit:
        message = (f"the request carries {len(drift)} firing drift alerts; at most {limit} are accepted per "
                   f"request ({settings.env_name('drift_webhook_max_alerts')}); nothing was started")
        loc = ["body"] if source == "project" else ["body", "alerts"]
        raise reject(request, status.HTTP_422_UNPROCESSABLE_CONTENT, message,
                     [{"loc": loc, "msg": message, "type": "too_many_alerts", "format": source}])
    groups = drift_alerts.group_by_model(drift)

    for attempt in (1, 2):  # a concurrent delivery of the same alerts may insert their run first: look again
        try:
            with create_session(scoped=False) as session:
                outcomes = start_runs(groups, session)
            break
        except TriggerError as exc:
            raise reject(request, exc.status_code, str(exc), exc.detail) from None
        except IntegrityError:
            if attempt == 2:
                raise
            log.info("drift webhook: a concurrent delivery created a run first; reading it")

    response = DriftAlertsResponse(
        format=source,
        runs=[AlertRun(model=o.group.model, alert=o.group.identities[0], alerts=list(o.group.identities),
                       source=o.group.source, dag_id=o.dag_id, run_id=o.run_id, state=o.state, created=o.created,
                       dataset_uri=o.dataset_uri, dataset_uri_from=o.dataset_uri_from, note=o.note)
              for o in outcomes],
        ignored=[IgnoredAlert(model=i.alert.model, alert=i.alert.identity, source=i.alert.source, reason=i.reason)
                 for i in ignored],
    )
    for run in response.runs:
        record_delivery(request, "webhook_accepted", run.model,
                        f"{len(run.alerts)} {source} drift alert(s) → {run.dag_id}/{run.run_id}"
                        + ("" if run.created else " (already started by an earlier delivery)"),
                        {"format": source, "alerts": list(run.alerts), "created": run.created,
                         "dataset_uri": run.dataset_uri, "ignored": len(ignored)},
                        dag_id=run.dag_id, run_id=run.run_id)
    resolved = sum(i.reason == "resolved" for i in ignored)
    log.info(
        "drift webhook: accepted %s alert(s) (%s) from %s: started %s, already started %s, "
        "ignored %s resolved and %s not drift; auth: %s",
        len(alerts), source, client_of(request),
        [f"{r.dag_id}/{r.run_id} ({len(r.alerts)} alert(s), data {r.dataset_uri or 'default'})"
         for r in response.runs if r.created] or "none",
        [f"{r.dag_id}/{r.run_id}" for r in response.runs if not r.created] or "none",
        resolved, len(ignored) - resolved, getattr(request.state, "auth", None),
    )
    return response
