"""Response bodies of the drift webhook (the request bodies are :mod:`include.inbound.payloads`' formats)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AlertRun(BaseModel):
    """The retraining run of a model's firing drift alerts in this request."""

    model: str
    alert: str = Field(description="The first alert's identity: fingerprint@startsAt, or the project format's alert_id.")
    alerts: list[str] = Field(description="The identities of the alerts of this request this run is for.")
    source: Literal["alertmanager", "grafana", "project"]
    dag_id: str
    run_id: str
    state: str
    created: bool = Field(description="True when this request started the run; false when an earlier delivery "
                                      "of the same alerts did.")
    dataset_uri: str | None = Field(
        None, description="The data the run trains on: the alerts' `dataset_uri`, else the training DAG's default "
                          "(the model's `dataset.uri`, as configured, e.g. with `${VAR}` references). Null only "
                          "when the DAG has no `dataset_uri` param.")
    dataset_uri_from: Literal["alert", "default"] = Field(
        "default", description='"alert" when the alerts named the data, "default" when the run trains on the '
                               "DAG's default.")
    note: str = Field(
        "", description="One sentence for people: which data the run trains on, and that it skips itself when a "
                        "version was already trained from that data, code and params (an alert on unchanged data "
                        "retrains nothing; point it at new data with `dataset_uri`).")


class IgnoredAlert(BaseModel):
    """An alert that starts nothing: resolved, or not a drift alert."""

    model: str
    alert: str
    source: Literal["alertmanager", "grafana", "project"]
    reason: str = Field(description='"resolved", or "not a drift alert: " and why (e.g. Grafana\'s DatasourceNoData).')


class DriftAlertsResponse(BaseModel):
    """What a delivery started (``created``) or found already started, and what it ignored."""

    format: Literal["alertmanager", "grafana", "project"]
    runs: list[AlertRun]
    ignored: list[IgnoredAlert]


class ErrorResponse(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Path of the offending field inside the body, e.g. alerts.0.labels.model.")
    msg: str
    type: str
    format: str | None = Field(None, description="The payload format the body was read as.")


class ValidationErrorResponse(BaseModel):
    detail: list[FieldError]
