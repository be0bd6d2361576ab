"""The governance API: read-only answers of the audit ledger, behind Airflow's own authentication.

Served by ``airflow api-server`` inside the plugin app (:func:`modelops.app.create_app`, prefix
``/governance``; so ``/modelops/governance/...``):

=========================================================  ===================================================
``GET /models/{model}/aliases[?alias=]``                   every term of the model's aliases (or one alias's)
``GET /models/{model}/aliases/{alias}/at?time=``           which version the alias pointed at, then (404: none)
``GET /models/{model}/history[?since=][&action=]…``        what happened to the model, oldest first
``GET /models/{model}/versions/{version}/lineage``         what the version was built from and what happened to it
``GET /models/{model}/versions/{version}/evidence``        the auditor's evidence pack, ``application/zip``
``GET /ledger/export.jsonl[?model=][&since=]``             the records as JSON Lines, streamed
``GET /ledger/verify``                                     the hash chain checked (read-only: it anchors nothing)
=========================================================  ===================================================

**Authentication** is Airflow's: a plugin app gets none from the API server, so every route of this
router depends on :func:`require_ledger_access` (set on the router, so no route can leave it out).
It authenticates the caller exactly as the core API does (``airflow.api_fastapi.core_api.security.get_user``:
the ``Authorization: Bearer <JWT>`` from ``POST /auth/token``, else the UI's session cookie), so the
token a user already has for ``/api/v2`` works here and the configured auth manager (simple, FAB,
Keycloak, AWS…) decides. No token: 401; a token that is not valid: 403 (as the core API answers).

**Authorization**: the caller must be allowed to read the **audit log** of the DAGs whose runs write the
records asked for: ``GET`` on ``DagAccessEntity.AUDIT_LOG`` (what the core API's ``/api/v2/eventLogs``
checks) for every lifecycle DAG of the model (``train_<model>``, ``promote_<model>``, …, see
:mod:`include.dag_ids`), or, for the whole ledger (``/ledger/verify``, ``/ledger/export.jsonl`` without
``?model=``), for the lifecycle DAGs of every model the ledger holds records of. The ledger *is* the
model's audit log, written by those DAGs; DAG-level read alone would give it to anyone who may see a
DAG's code, and asset read is not per model. Refused: 403. The scope comes from the route's own parameters (:func:`ledger_scope`): a ``model`` query
parameter narrows it only on a route that reads it, so ``/ledger/verify?model=x`` still needs the
whole ledger.

Airflow is imported inside the functions: the plugin (and so this module) is also imported by
schedulers and task processes, which must not pay for the API server's modules.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BeforeValidator

from include import dag_ids
from include.governance import history, integrity
from include.governance.ledger import Ledger, LedgerError, as_time, default_ledger
from modelops.auth import airflow_user, may_access_dags
from modelops.governance.models import (
    AliasAt,
    AliasTimeline,
    ErrorResponse,
    Lineage,
    ModelHistory,
    VerifyReport,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger("modelops.governance")

JSONL_MEDIA_TYPE = "application/x-ndjson"
TIME_EXAMPLE = "2026-11-20T10:00:00Z"

# --- access check -------------------------------------------------------------------------------------

# The caller: :func:`modelops.auth.airflow_user` (shared with the metrics route).


def ledger_scope(request: Request) -> str | None:
    """The model whose records the matched route reads, or None when it reads the whole ledger.

    The ``{model}`` path parameter; else a ``model`` query parameter, but only on a route that declares
    one (so a stray ``?model=`` cannot narrow what a whole-ledger route needs).
    """
    if model := request.path_params.get("model"):
        return model
    route = request.scope.get("route")
    declared = {param.alias for param in route.dependant.query_params} if isinstance(route, APIRoute) else set()
    if "model" in declared:
        return request.query_params.get("model") or None
    return None


class _LedgerUnavailable(HTTPException):
    def __init__(self, exc: Exception) -> None:
        super().__init__(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))


def require_ledger_access(request: Request, user: Annotated[Any, Depends(airflow_user)]) -> None:
    """The access check on every governance route: an Airflow user who may read the audit log of the DAGs
    whose records the route returns (see the module docstring); 401 / 403 otherwise (503: the ledger
    cannot be read to list its models).

    The auth manager decides (``batch_is_authorized_dag``, method ``GET``, ``DagAccessEntity.AUDIT_LOG``),
    with each DAG's team in multi-team deployments, as the core API's ``requires_access_dag`` does. For the
    whole ledger the DAGs are those of every model it holds records of, each named: an auth manager answers
    a request without a DAG id as "may list DAGs at all" (FAB: read on any one DAG), which is not enough.
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    model = ledger_scope(request)
    if model is None:
        try:
            models = default_ledger().models()
        except LedgerError as exc:
            raise _LedgerUnavailable(exc) from None
    else:
        models = [model]
    ids = [dag_ids.dag_id(stage, m) for m in models for stage in dag_ids.Stage]
    scope = f"the DAGs {', '.join(ids)}" if model else "the lifecycle DAGs of every model in the ledger"
    # for the whole ledger also the general check, which alone decides for an empty ledger
    if not may_access_dags(user, ids, DagAccessEntity.AUDIT_LOG, general=model is None):
        log.warning("governance: refused %s %s to user %r: no read access to the audit log of %s",
                    request.method, request.url.path, user.get_name(), scope)
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Forbidden: reading this needs read access to the audit log "
                                                       f"of {scope}")


# Every route of this router is behind the access check (a test walks the app's routes to hold this).
router = APIRouter(tags=["Governance"], dependencies=[Depends(require_ledger_access)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"model": ErrorResponse, "description": "No Airflow token (or session), or it expired"},
    status.HTTP_403_FORBIDDEN: {"model": ErrorResponse,
                                "description": "A token that is not valid, or no read access to the audit log"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ErrorResponse,
                                          "description": "The audit ledger's database (or MLflow) cannot be read"},
}
# A path segment with a line break or a "/" matches no route (the API server's mount of the plugin app
# stops at a line break): 404 on every route with path parameters.
_NO_ROUTE = "the path matches no route (a path parameter holding a line break or a \"/\")"
_PATH_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS, status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": _NO_ROUTE[0].upper() + _NO_ROUTE[1:]},
}
_MLFLOW_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": f"MLflow has no such model version, or {_NO_ROUTE}"},
    status.HTTP_502_BAD_GATEWAY: {"model": ErrorResponse, "description": "MLflow answered with an error"},
}

# --- parameters ---------------------------------------------------------------------------------------


def _iso_time(value: object) -> datetime:
    """``value`` (ISO 8601 text, or a datetime) as an aware datetime; naive means UTC. ValueError names the fix."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            hint = " (a '+' in a URL reads as a space: send it as %2B)" if " " in text else ""
            raise ValueError(f"not an ISO 8601 time: {text!r}, e.g. {TIME_EXAMPLE}{hint}") from None
    parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(f"time out of range once in UTC: {value!r}") from None


IsoTime = Annotated[datetime, BeforeValidator(_iso_time)]
ModelName = Annotated[str, Path(description="The registered model's name.", min_length=1)]
VersionName = Annotated[str, Path(description="The model version (a number, as MLflow numbers them).", min_length=1)]
Since = Annotated[IsoTime | None, Query(description=f"Only records from this time (inclusive), ISO 8601, e.g. "
                                                    f"{TIME_EXAMPLE}; without an offset it is UTC.")]


def _mlflow_client() -> MlflowClient:
    """The MLflow client of the ``mlflow_default`` connection (else ``MLFLOW_TRACKING_URI``): :class:`MlflowHook`."""
    from modelops.mlflow_hook import MlflowHook

    try:
        return MlflowHook().client
    except ValueError as exc:  # a connection that names no server, or conflicting credentials
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"MLflow: {exc}") from None


MlflowClientDep = Annotated[Any, Depends(_mlflow_client)]


def _version_error(exc: Exception, model: str, version: str) -> HTTPException:
    """404 naming the version when MLflow has none; 422 for a version MLflow cannot read; 502 otherwise."""
    code = getattr(exc, "error_code", None)
    if code == "RESOURCE_DOES_NOT_EXIST":
        return HTTPException(status.HTTP_404_NOT_FOUND,
                             f"model {model!r} has no version {version!r} in the MLflow registry")
    if code == "INVALID_PARAMETER_VALUE":
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                             [{"loc": ["path", "version"], "msg": f"not a model version MLflow can read: {version!r} "
                                                                  f"({exc})", "type": "value_error"}])
    log.error("governance: MLflow failed on %s version %s: %s", model, version, exc)
    return HTTPException(status.HTTP_502_BAD_GATEWAY, f"MLflow registry: {exc}")


def _safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


# --- routes -------------------------------------------------------------------------------------------


@router.get("/models/{model}/aliases", response_model=AliasTimeline, responses=_PATH_ERRORS,
            summary="Every term of the model's aliases: which version each pointed at, from when to when")
def get_alias_timeline(
    model: ModelName,
    alias: Annotated[str | None, Query(description="Only this alias (e.g. champion).", min_length=1)] = None,
) -> AliasTimeline:
    """The terms of the model's aliases (or of ``alias``) in the order they began, from the ledger's
    ``alias_set`` / ``alias_removed`` records (MLflow keeps only where an alias points now). An alias set
    again to the version it held starts no new term. A model the ledger has no record of has no terms."""
    try:
        terms = history.alias_timeline(model, alias)
    except LedgerError as exc:
        raise _LedgerUnavailable(exc) from None
    return AliasTimeline(model=model, alias=alias, terms=[asdict(t) for t in terms],
                         current={t.alias: t.version for t in terms if t.end is None})


@router.get("/models/{model}/aliases/{alias}/at", response_model=AliasAt,
            responses={**_ERRORS, status.HTTP_404_NOT_FOUND: {
                "model": ErrorResponse, "description": f"The alias pointed at no version at that time, or {_NO_ROUTE}"}},
            summary="Which version the alias pointed at, at a time")
def get_alias_at(
    model: ModelName,
    alias: Annotated[str, Path(description="The alias, e.g. champion.", min_length=1)],
    time: Annotated[IsoTime, Query(description=f"ISO 8601, e.g. {TIME_EXAMPLE}; without an offset it is UTC.")],
) -> AliasAt:
    """The version ``alias`` of ``model`` pointed at, at ``time`` (a move at exactly that time counts as
    done). 404 when it pointed at none then: before its first move, after its removal, or never moved."""
    when = as_time(time)
    try:
        version = history.version_at(model, alias, time)
        if version is None:
            terms = history.alias_timeline(model, alias)
    except LedgerError as exc:
        raise _LedgerUnavailable(exc) from None
    if version is None:
        known = f"its first move on record is at {terms[0].start}" if terms else "the ledger has no move of it"
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"alias {alias!r} of model {model!r} pointed at no version at {when} ({known})")
    return AliasAt(model=model, alias=alias, time=when, version=version)


@router.get("/models/{model}/history", response_model=ModelHistory, responses=_PATH_ERRORS,
            summary="What happened to the model: registrations, gates, approvals, deployments, rollbacks…")
def get_model_history(
    model: ModelName,
    since: Since = None,
    action: Annotated[list[str] | None, Query(description="Only these actions (repeat the parameter for several), "
                                                          "e.g. deploy, rollback, approve.")] = None,
    alias_moves: Annotated[bool, Query(description="Include the alias_set / alias_removed records (also included "
                                                   "when `action` names them).")] = False,
) -> ModelHistory:
    """The model's ledger records, oldest first, each with its actor and reason. Alias moves are left out
    unless asked (the aliases route shows them as terms)."""
    actions = list(dict.fromkeys(action)) if action else None
    include_moves = alias_moves or bool(actions and set(actions) & set(history.ALIAS_ACTIONS))
    try:
        entries = history.model_history(model, actions=actions, include_alias_moves=include_moves, since=since)
    except LedgerError as exc:
        raise _LedgerUnavailable(exc) from None
    return ModelHistory(model=model, since=as_time(since) if since else None, actions=actions,
                        records=[e.as_dict() for e in entries])


@router.get("/models/{model}/versions/{version}/lineage", response_model=Lineage, responses=_MLFLOW_ERRORS,
            summary="What the version was built from and what happened to it")
def get_version_lineage(model: ModelName, version: VersionName, client: MlflowClientDep) -> Lineage:
    """Data (URI, fingerprint, schema hash) and its validation, the training run, the gates, approvals,
    deployments, alias terms, hours as champion, retirement and every ledger record of the version.
    404 when MLflow has no such version."""
    from mlflow.exceptions import MlflowException

    try:
        return Lineage.model_validate(history.version_lineage(client, model, version))
    except MlflowException as exc:
        raise _version_error(exc, model, version) from None
    except LedgerError as exc:
        raise _LedgerUnavailable(exc) from None


@router.get("/models/{model}/versions/{version}/evidence", response_class=Response,
            responses={**_MLFLOW_ERRORS, status.HTTP_200_OK: {
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                "description": "The evidence pack: a zip archive (`index.json` lists its members)"}},
            summary="The evidence pack an auditor asks for, as a zip archive")
def get_evidence_pack(model: ModelName, version: VersionName, client: MlflowClientDep) -> Response:
    """A zip of ``lineage.json``, ``validation.json``, ``gates.json``, ``approvals.json``,
    ``alias_timeline.json``, ``data_fingerprint.txt``, ``records.jsonl`` (hash-chained), the training
    run's ``validation/`` artifacts and ``index.json`` (what each member answers, with the EU AI Act
    article it serves). The same evidence gives the same bytes. 404 when MLflow has no such version."""
    from mlflow.exceptions import MlflowException

    try:
        pack = history.evidence_pack(client, model, version)
    except MlflowException as exc:
        raise _version_error(exc, model, version) from None
    except LedgerError as exc:
        raise _LedgerUnavailable(exc) from None
    filename = f"{_safe_filename(model)}-v{_safe_filename(version)}-evidence.zip"
    return Response(pack, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/ledger/export.jsonl", response_class=StreamingResponse,
            responses={**_ERRORS, status.HTTP_200_OK: {
                "content": {JSONL_MEDIA_TYPE: {"schema": {"type": "string"}}},
                "description": "One ledger record per line (canonical JSON with `seq`, `prev_hash` and `hash`), "
                               "in chain order"}},
            summary="The ledger (or one model's records) as JSON Lines, for a log stack or an auditor")
def export_ledger(
    model: Annotated[str | None, Query(description="Only this model's records (needs read access to the audit "
                                                   "log of its DAGs only; without it: of every DAG).",
                                       min_length=1)] = None,
    since: Since = None,
) -> StreamingResponse:
    """Every record (or ``model``'s), from ``since``, one canonical JSON object per line, as stored: a
    consumer can recompute each ``hash`` (SHA-256 of ``prev_hash``, a newline and the canonical content)."""
    try:
        entries = default_ledger().records(model=model, since=since)
    except LedgerError as exc:
        raise _LedgerUnavailable(exc) from None
    name = f"modelops-ledger{'-' + _safe_filename(model) if model else ''}.jsonl"
    return StreamingResponse(history.jsonl_lines(entries), media_type=JSONL_MEDIA_TYPE,
                             headers={"Content-Disposition": f'inline; filename="{name}"'})


@router.get("/ledger/verify", response_model=VerifyReport, responses={**_ERRORS, status.HTTP_502_BAD_GATEWAY: {
                "model": ErrorResponse, "description": "MLflow (where the anchors are kept) answered with an error"}},
            summary="Is the ledger intact? Its hash chain recomputed and checked against its anchors")
def verify_ledger(client: MlflowClientDep) -> VerifyReport:
    """Recompute every record's hash and link and check the chain against the head anchors kept in MLflow;
    name every record that was edited, inserted, deleted or reordered, and a truncated tail.

    Read-only: it anchors nothing and creates nothing (when the ledger has no anchors run yet, only the
    chain itself is checked: ``anchors_found`` is false). ``ok`` false is still a 200: the report is the answer."""
    from mlflow.exceptions import MlflowException

    from include import tracking

    try:
        ledger = default_ledger()
        run_id = tracking.find_run(client, integrity.ANCHOR_EXPERIMENT,
                                   {"modelops.kind": integrity.ANCHOR_KIND, "modelops.ledger": ledger.display_url})
        anchors = _ExistingAnchors(client, ledger, run_id) if run_id else None
        report = integrity.verify(ledger, anchors=anchors)
    except LedgerError as exc:
        raise _LedgerUnavailable(exc) from None
    except MlflowException as exc:
        log.error("governance: MLflow failed reading the ledger's anchors: %s", exc)
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"MLflow (the ledger's anchors): {exc}") from None
    return VerifyReport.model_validate({**report.as_dict(), "anchors_found": run_id is not None})


class _ExistingAnchors(integrity.MlflowAnchorStore):
    """The ledger's anchors run as found (``run_id``): read, never created, never written."""

    def __init__(self, client: MlflowClient, ledger: Ledger, run_id: str) -> None:
        super().__init__(client, ledger)
        self._found = run_id

    @property
    def run_id(self) -> str:
        return self._found

    def add_anchor(self, anchor: integrity.Anchor) -> None:
        raise PermissionError("the governance API only reads the ledger's anchors")

    def set_genesis(self, genesis: integrity.Genesis) -> None:
        raise PermissionError("the governance API only reads the ledger's anchors")
