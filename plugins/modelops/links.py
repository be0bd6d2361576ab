"""Links from the lifecycle's task instances in the Airflow UI to what they produced.

The task instance page of the Airflow UI shows them under **Extra links** (buttons, hidden where a task
produced nothing to link):

========================  ===========================================================  ==============================
DAG, task                 link                                                         opens
========================  ===========================================================  ==============================
``train_<m>``, every      **MLflow run**: the training run (tags ``airflow.dag_id`` +  MLflow UI, through the route
task that ran             ``airflow.run_id``; also a quarantined batch's)              below
``train_<m>``, validate   **Data Docs**: the GX validation page of that run            MLflow UI's artifact view
``train_<m>``, register   **MLflow model version**: the version it registered          MLflow UI
``promote_<m>``, every    **MLflow model version**: the candidate                      MLflow UI
``deploy_<m>`` /          **MLflow model version**: the version the plan deploys;      MLflow UI; this plugin's route
``rollback_<m>``, every   **Triton model status**: Triton's state of that model
``monitor_<m>``, every    **MLflow run**: the monitoring run; **Evidently report**:    MLflow UI (artifact view)
                          the hour's report; **MLflow model version**: the version
                          that served the hour
========================  ===========================================================  ==============================

**Why global extra links.** Most lifecycle tasks are TaskFlow ``@task`` functions: an operator's own
``operator_extra_links`` are pushed to XCom by the worker at the end of the task, which a TaskFlow task
cannot declare. A plugin's ``global_operator_extra_links`` are asked by the API server for every task
(``GET /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/links``, behind Airflow's own access check
on the DAG's task instances), TaskFlow or classic; a link answering ``""`` is hidden. An
``external_views`` entry with destination ``task_instance`` was the other candidate; it is not used: it
adds a tab to every task instance of every DAG (no way to show it only where there is something to
open), and the UI renders it in a frame sandboxed without ``allow-popups`` or ``allow-top-navigation``,
which MLflow's UI refuses to be shown in (``MLFLOW_SERVER_X_FRAME_OPTIONS``, ``SAMEORIGIN`` by
default): a link could not get out of the frame, a redirect would show a refused page.

**Cheap to ask.** The API server asks every link of a task each time a task instance page is shown (and
again while the task runs), so :func:`task_links` reads only this Airflow's database (the run's XComs)
and the connection: never MLflow or Triton. A link that needs MLflow to be resolved (the experiment of a
run, where the Data Docs page is) points at a route of this plugin's app, which looks it up when the
link is followed and redirects (307) to the MLflow UI, or answers 404 saying why there is nothing:

``GET /modelops/links/{dag_id}/mlflow-run?run_id=``, ``/data-docs?run_id=``, ``/evidently-report?run_id=``;
``GET /modelops/links/{dag_id}/triton?run_id=`` answers Triton's state of the model the run deployed.

Every route needs Airflow's authentication (the UI's session cookie, or a token from ``POST /auth/token``;
:mod:`modelops.auth`) and read access to the DAG's task instances, what the core API asks for its links.

**The MLflow UI's address** comes from the MLflow connection (``mlflow_default``, :mod:`modelops.mlflow_hook`):
``extra.ui_url`` when browsers reach MLflow at another address than the workers (``http://mlflow:5000``
inside Docker Compose, a local SQLite store with ``mlflow server`` beside it), else the connection's
tracking URI when it is http(s) (never its credentials). Without either, no MLflow link is shown.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink
from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from include import links
from include.config import ModelConfig
from include.dag_ids import Stage
from modelops.auth import airflow_user, may_access_dags
from modelops.governance.models import ErrorResponse

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey

log = logging.getLogger("modelops.links")

APP_PREFIX = "/modelops"  # where plugins/modelops_plugin.py mounts the plugin's app
ROUTE_PREFIX = "/links"

# The lifecycle tasks whose XComs say what a run produced (their task ids in dags/).
VALIDATE_TASK = "validate"  # train: opens the MLflow run, validates (Data Docs)
REGISTER_TASK = "register"  # train: returns the registered version
CANDIDATE_TASK = "resolve_candidate"  # promote: returns the candidate version
ASSESS_TASK = "assess"  # monitor: returns monitoring_run_id, report_path, assessment.version
TRAINING_RUN_TAGS = ("airflow.dag_id", "airflow.run_id")  # what the training run is tagged with (training/tasks.py)

CACHE_SECONDS = 5.0  # the links of one task instance, shared by the link objects of one request


class Target(StrEnum):
    """What a route of :data:`router` opens for a DAG run."""

    MLFLOW_RUN = "mlflow-run"
    DATA_DOCS = "data-docs"
    EVIDENTLY_REPORT = "evidently-report"
    TRITON = "triton"


# --- what a task produced (the Airflow database only) --------------------------------------------------


def lifecycle_dag(dag_id: str) -> tuple[Stage, ModelConfig] | None:
    """The stage and model whose DAG ``dag_id`` is, among the configured models (ids built by
    :func:`include.dag_ids.dag_id`, never parsed); None for any other DAG."""
    from include.config import model_configs
    from include.dag_ids import dag_id as lifecycle_id

    for config in model_configs().values():
        for stage in Stage:
            if lifecycle_id(stage, config.name) == dag_id:
                return stage, config
    return None


def return_value(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
    """The return value (XCom ``return_value``) of a task of a DAG run; None when it has none (it failed, was
    skipped or has not run). Read as the core API reads it (``XComModel.deserialize_value``), which turns a
    returned text that looks like a number (``"1"``) into the number: callers take ``str()`` of versions."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, task_ids=task_id,
                                                 map_indexes=map_index, key="return_value")).first()
        return XComModel.deserialize_value(row) if row is not None else None


def _plan_task(stage: Stage) -> str:
    from modelops.serving.tasks import PLAN_TASK, ROLLBACK_PLAN_TASK

    return PLAN_TASK if stage is Stage.DEPLOY else ROLLBACK_PLAN_TASK


def mlflow_ui(conn_id: str | None = None) -> links.MlflowUi | None:
    """The MLflow web UI of the MLflow connection (:attr:`~modelops.mlflow_hook.MlflowHook.ui_url`), or None when
    it names none. ``ValueError``: a connection that names no server."""
    from modelops.mlflow_hook import MlflowHook

    base = MlflowHook(conn_id or MlflowHook.default_conn_name).ui_url
    return links.MlflowUi(base) if base else None


def route_url(dag_id: str, target: Target, run_id: str) -> str:
    """The path of this plugin's route that opens ``target`` for a DAG run, under the API server's base path
    (``[api] base_url``): ``/modelops/links/<dag_id>/<target>?run_id=<run_id>``."""
    from airflow.api_fastapi.app import get_cookie_path

    base = get_cookie_path().rstrip("/")
    return f"{base}{APP_PREFIX}{ROUTE_PREFIX}/{quote(dag_id, safe='')}/{target}?{urlencode({'run_id': run_id})}"


def task_links(key: TaskInstanceKey) -> dict[str, str]:
    """The links of a task instance, by name (:data:`include.links.NAMES`), from the run's XComs and the
    connection only (see the module docstring's table); empty for a task outside the lifecycle DAGs."""
    found = lifecycle_dag(key.dag_id)
    if found is None:
        return {}
    stage, config = found
    dag_id, run_id, task_id = key.dag_id, key.run_id, key.task_id
    out: dict[str, str] = {}
    try:
        ui = mlflow_ui()
    except ValueError as exc:  # a connection that names no server: the MLflow links are left out
        log.warning("links: no MLflow links: %s", exc)
        ui = None
    version: Any = None
    model = config.registered_model_name
    if stage is Stage.TRAIN:
        if key.try_number > 0:  # it ran (or runs): the run's MLflow run is opened by validate, its first task
            out[links.MLFLOW_RUN] = route_url(dag_id, Target.MLFLOW_RUN, run_id)
            if task_id == VALIDATE_TASK:
                out[links.DATA_DOCS] = route_url(dag_id, Target.DATA_DOCS, run_id)
        if task_id == REGISTER_TASK:
            version = return_value(dag_id, run_id, task_id, key.map_index)
    elif stage is Stage.PROMOTE:
        version = return_value(dag_id, run_id, CANDIDATE_TASK)
    elif stage in (Stage.DEPLOY, Stage.ROLLBACK):
        plan = return_value(dag_id, run_id, _plan_task(stage))
        if isinstance(plan, dict) and plan.get("version"):
            model, version = str(plan.get("model") or model), plan["version"]
            out[links.TRITON_STATUS] = route_url(dag_id, Target.TRITON, run_id)
    elif stage is Stage.MONITOR:
        assessed = return_value(dag_id, run_id, ASSESS_TASK)
        if isinstance(assessed, dict) and assessed.get("monitoring_run_id"):
            out[links.MLFLOW_RUN] = route_url(dag_id, Target.MLFLOW_RUN, run_id)
            if assessed.get("report_path"):
                out[links.EVIDENTLY_REPORT] = route_url(dag_id, Target.EVIDENTLY_REPORT, run_id)
            version = (assessed.get("assessment") or {}).get("version")
    if ui is None:  # no MLflow web UI known: only the links that do not open it
        return {name: url for name, url in out.items() if name == links.TRITON_STATUS}
    if version not in (None, ""):
        out[links.MODEL_VERSION] = ui.model_version(model, str(version))
    return out


class _Memo:
    """The links of recently asked task instances, for :data:`CACHE_SECONDS`: the API server asks each link
    object of a task in turn, in one request."""

    def __init__(self, seconds: float, size: int = 256) -> None:
        self.seconds, self.size = seconds, size
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[float, dict[str, str]]] = {}

    def get(self, key: TaskInstanceKey) -> dict[str, str]:
        ident = (key.dag_id, key.run_id, key.task_id, key.map_index, key.try_number)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(ident)
            if hit is not None and now - hit[0] < self.seconds:
                return hit[1]
        value = task_links(key)
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] < self.seconds}
            self._entries[ident] = (now, value)
        return value


_memo = _Memo(CACHE_SECONDS)


class LifecycleLink(BaseOperatorLink):
    """One of the lifecycle's links (:data:`name`), for any task of any DAG: ``""`` (hidden) where the task
    produced nothing to open. Never raises: the API server answers all links of a task in one response,
    which one failing link would turn into an error."""

    name = ""

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        try:
            return _memo.get(ti_key).get(self.name, "")
        except Exception:  # noqa: BLE001  (a bad config, the database: logged, the link hidden)
            log.warning("links: no %r link for %s", self.name, ti_key, exc_info=True)
            return ""


class MlflowRunLink(LifecycleLink):
    name = links.MLFLOW_RUN


class ModelVersionLink(LifecycleLink):
    name = links.MODEL_VERSION


class DataDocsLink(LifecycleLink):
    name = links.DATA_DOCS


class EvidentlyReportLink(LifecycleLink):
    name = links.EVIDENTLY_REPORT


class TritonStatusLink(LifecycleLink):
    name = links.TRITON_STATUS


GLOBAL_LINKS: list[BaseOperatorLink] = [MlflowRunLink(), ModelVersionLink(), DataDocsLink(), EvidentlyReportLink(),
                                        TritonStatusLink()]
"""The plugin's ``global_operator_extra_links``."""


# --- the routes: resolved when followed --------------------------------------------------------------------

DagId = Annotated[str, Path(description="A lifecycle DAG's id, e.g. train_credit_approval.", min_length=1)]
RunId = Annotated[str, Query(description="The DAG run's id.", min_length=1)]


def require_run_access(dag_id: DagId, user: Annotated[Any, Depends(airflow_user)]) -> None:
    """The access check on every route of :data:`router`: an Airflow user who may read the task instances of
    DAG ``dag_id`` (``GET`` on ``DagAccessEntity.TASK_INSTANCE``, what the core API asks before it lists a
    task's links). 401 without a session or token, 403 otherwise."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    if not may_access_dags(user, [dag_id], DagAccessEntity.TASK_INSTANCE):
        log.warning("links: refused %s to user %r: no read access to its task instances", dag_id, user.get_name())
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Forbidden: needs read access to the task instances of {dag_id}")


router = APIRouter(prefix=ROUTE_PREFIX, tags=["Links"], dependencies=[Depends(require_run_access)])


class TritonStatus(BaseModel):
    """Triton's state of the model a deployment or rollback run put live."""

    dag_id: str
    run_id: str
    model: str
    version: str = Field(description="The version the run's plan deploys.")
    ready: bool = Field(description="Whether Triton has that version READY now.")
    versions: dict[str, str] = Field(description="Every version of the model in Triton's repository index, with its "
                                                 "state (READY, UNAVAILABLE, LOADING, …).")
    reasons: dict[str, str] = Field(description="Triton's reason for a version's state, where it gives one.")
    detail: str
    triton_url: str = Field(description="The Triton server asked (connection triton_default).")


_ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"model": ErrorResponse, "description": "No Airflow token (or session), or it expired"},
    status.HTTP_403_FORBIDDEN: {"model": ErrorResponse, "description": "A token that is not valid, or no read access "
                                                                       "to the DAG's task instances"},
    status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": "Not a lifecycle DAG, or its run produced "
                                                                       "nothing of the kind (the message says why)"},
}
_MLFLOW_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    status.HTTP_307_TEMPORARY_REDIRECT: {"description": "To the page in the MLflow web UI"},
    status.HTTP_502_BAD_GATEWAY: {"model": ErrorResponse, "description": "MLflow answered with an error"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ErrorResponse,
                                          "description": "The MLflow connection names no server or no web UI"},
}


def _lifecycle(dag_id: str, *stages: Stage) -> tuple[Stage, ModelConfig]:
    found = lifecycle_dag(dag_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id} is not a lifecycle DAG of a configured model")
    if found[0] not in stages:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id} ({found[0]} of {found[1].name}) produces nothing "
                                                       f"of this kind; {', '.join(f'{s}_<model>' for s in stages)} do")
    return found


def _mlflow() -> tuple[Any, links.MlflowUi]:
    from modelops.mlflow_hook import MlflowHook

    try:
        ui = mlflow_ui()
        client = MlflowHook().client
    except ValueError as exc:  # a connection that names no server, or conflicting credentials
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"MLflow: {exc}") from None
    if ui is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "no MLflow web UI is known: set extra.ui_url on the connection mlflow_default (or "
                            "point the connection at the tracking server's http(s) URL)")
    return client, ui


def _redirect(resolve: Any, what: str) -> RedirectResponse:
    """307 to the URL ``resolve()`` returns; MLflow's errors as 404 (no such run) or 502."""
    from mlflow.exceptions import MlflowException

    try:
        url = resolve()
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"MLflow has no {what}: {exc.message}") from None
        log.error("links: MLflow failed on %s: %s", what, exc)
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"MLflow: {exc.message}") from None
    return RedirectResponse(url, status.HTTP_307_TEMPORARY_REDIRECT)


def _training_run(client: Any, config: ModelConfig, dag_id: str, run_id: str) -> str:
    from include import tracking

    tags = dict(zip(TRAINING_RUN_TAGS, (dag_id, run_id), strict=True))
    found = tracking.find_run(client, config.experiment_name, tags)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no MLflow run of {dag_id} run {run_id} in experiment {config.experiment_name!r} "
                            f"(none is tagged {tags}): its {VALIDATE_TASK} task did not open one")
    return found


def _assessed(dag_id: str, run_id: str) -> dict:
    assessed = return_value(dag_id, run_id, ASSESS_TASK)
    if not isinstance(assessed, dict) or not assessed.get("monitoring_run_id"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id} run {run_id} assessed no hour: its {ASSESS_TASK} "
                                                       "task has no result (failed, or has not run)")
    return assessed


@router.get("/{dag_id}/mlflow-run", response_class=RedirectResponse, status_code=status.HTTP_307_TEMPORARY_REDIRECT,
            responses=_MLFLOW_ERRORS, summary="Open the MLflow run a training or monitoring run wrote to")
def open_mlflow_run(dag_id: DagId, run_id: RunId) -> RedirectResponse:
    """A ``train_<model>`` run: its training run (found by its Airflow ids, also when the batch was
    quarantined). A ``monitor_<model>`` run: the model's monitoring run its ``assess`` task wrote to."""
    stage, config = _lifecycle(dag_id, Stage.TRAIN, Stage.MONITOR)
    assessed = _assessed(dag_id, run_id) if stage is Stage.MONITOR else None
    client, ui = _mlflow()

    def resolve() -> str:
        mlflow_run = assessed["monitoring_run_id"] if assessed else _training_run(client, config, dag_id, run_id)
        return links.run_url(ui, client, mlflow_run)

    return _redirect(resolve, f"MLflow run of {dag_id} run {run_id}")


@router.get("/{dag_id}/data-docs", response_class=RedirectResponse, status_code=status.HTTP_307_TEMPORARY_REDIRECT,
            responses=_MLFLOW_ERRORS, summary="Open the Great Expectations Data Docs of a training run's batch")
def open_data_docs(dag_id: DagId, run_id: RunId) -> RedirectResponse:
    """The GX validation page (Data Docs) the ``validate`` task logged to the training run, in the MLflow UI's
    artifact view; also for a batch that failed validation. 404 when validation made none (the batch could not
    be read, or validation has not run)."""
    _, config = _lifecycle(dag_id, Stage.TRAIN)
    client, ui = _mlflow()

    def resolve() -> str:
        mlflow_run = _training_run(client, config, dag_id, run_id)
        page = links.find_data_docs(client, mlflow_run)
        if page is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"MLflow run {mlflow_run} of {dag_id} run {run_id} has no Data Docs under "
                                f"{links.DATA_DOCS_ROOT}/: the batch was not validated (unreadable, or validation "
                                "has not run)")
        return links.artifact_url(ui, client, mlflow_run, page)

    return _redirect(resolve, f"Data Docs of {dag_id} run {run_id}")


@router.get("/{dag_id}/evidently-report", response_class=RedirectResponse,
            status_code=status.HTTP_307_TEMPORARY_REDIRECT, responses=_MLFLOW_ERRORS,
            summary="Open the Evidently report of the hour a monitoring run assessed")
def open_evidently_report(dag_id: DagId, run_id: RunId) -> RedirectResponse:
    """The hour's Evidently data drift report on the monitoring run, in the MLflow UI's artifact view. 404 when
    the run wrote none (too few rows, no reference profile, personal data in the hour, or Evidently failed: the
    run's assessment notes say which)."""
    _lifecycle(dag_id, Stage.MONITOR)
    assessed = _assessed(dag_id, run_id)
    if not assessed.get("report_path"):
        notes = "; ".join((assessed.get("assessment") or {}).get("notes") or []) or "no note"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id} run {run_id} wrote no Evidently report for "
                                                       f"{(assessed.get('window') or {}).get('start')} ({notes})")
    client, ui = _mlflow()
    return _redirect(lambda: links.artifact_url(ui, client, assessed["monitoring_run_id"], assessed["report_path"]),
                     f"monitoring run {assessed['monitoring_run_id']}")


@router.get("/{dag_id}/triton", response_model=TritonStatus,
            responses={**_ERRORS, status.HTTP_502_BAD_GATEWAY: {"model": ErrorResponse,
                                                                "description": "Triton did not answer"}},
            summary="Triton's state of the model a deployment or rollback run put live")
def get_triton_status(dag_id: DagId, run_id: RunId) -> TritonStatus:
    """The model and version of the run's plan, and what Triton's repository index says of that model now
    (asked live: ``POST /v2/repository/index``). 404 when the run planned nothing (refused before anything
    moved, or skipped)."""
    from include.serving.triton.client import TritonClient, TritonError
    from modelops.serving.hooks import TritonHook

    stage, _ = _lifecycle(dag_id, Stage.DEPLOY, Stage.ROLLBACK)
    plan = return_value(dag_id, run_id, _plan_task(stage))
    if not isinstance(plan, dict) or not plan.get("version"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id} run {run_id} deployed nothing: its "
                                                       f"{_plan_task(stage)} task has no plan (refused, skipped, or "
                                                       "not run)")
    url = TritonHook().url
    try:
        with TritonClient(url, timeout=10) as triton:
            index = triton.repository_index()
    except (TritonError, ValueError) as exc:  # ValueError: an answer that is not JSON
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"Triton at {url} did not answer: {exc}") from None
    found = links.triton_model_status(index, str(plan["model"]), str(plan["version"]))
    return TritonStatus(dag_id=dag_id, run_id=run_id, triton_url=url, **asdict(found))
