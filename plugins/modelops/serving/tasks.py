"""Task functions of the deployment and rollback DAGs: put a registry version live on Triton, verified.

Both DAGs run: plan (refuse before anything moves) → export → load → (deferrable wait) → verify →
go live, with a recovery task when a step fails. Each task calls one function of
:mod:`include.serving.deploy` (the decisions: :mod:`include.promotion.rollout`) and turns its
:class:`~include.promotion.rollout.DeploymentError` into a task failure, its
:class:`~include.serving.deploy.Recovery` into a critical alert. A plan is
:meth:`include.promotion.rollout.DeploymentPlan.as_dict` (``{"model", "version", "fallback", "standby",
"replaced", "force", "overridden"}``) passed between them as an XCom.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.config import get_model_config
from modelops.context import actor, ids
from modelops.mlflow_hook import MlflowHook
from modelops.serving.hooks import TritonHook

log = logging.getLogger(__name__)

# include.serving.deploy (mlflow, pandas, the Triton client) is imported inside the tasks: this module is
# imported while DAGs are parsed.
DEFAULT_ROLLBACK_REASON = "manual rollback"  # the rollback DAG's default ``reason``: not enough to force one
PLAN_TASK = "plan"
ROLLBACK_PLAN_TASK = "roll_back"


def _fail(exc: Exception) -> AirflowFailException:
    return AirflowFailException(str(exc))


def _plan(planned: dict):
    from include.promotion.rollout import DeploymentPlan

    return DeploymentPlan.from_dict(planned)


@task(task_id=PLAN_TASK)
def plan(model: str, version: str | None = None) -> dict:
    """Deploy ``@champion`` (``version``, when given, must be it); its fallback is the previous champion on record."""
    from include.promotion.rollout import DeploymentError, plan_deployment

    try:
        return plan_deployment(MlflowHook().client, model, version or None).as_dict()
    except DeploymentError as exc:
        raise _fail(exc) from None


@task
def export(model: str, plan: dict) -> str:
    """Write the version (and keep the standby versions loaded) in the Triton model repository; a no-op when there."""
    from include.serving import deploy

    return str(deploy.export(MlflowHook().client, get_model_config(model), _plan(plan), TritonHook().model_repository))


@task(retries=1, retry_delay=timedelta(seconds=10))
def load(model: str, plan: dict) -> None:
    """Ask Triton to (re)load the model from the repository: the listed versions load, others unload."""
    TritonHook().client.load(model)


@task(retries=1, retry_delay=timedelta(seconds=10))
def verify(model: str, plan: dict) -> dict:
    """Smoke inference, then parity: Triton's outputs vs the MLflow model's on held-out rows."""
    from include.promotion.rollout import DeploymentError
    from include.serving import deploy

    try:
        return deploy.verify(MlflowHook().client, TritonHook().client, get_model_config(model), plan["version"])
    except DeploymentError as exc:
        raise _fail(exc) from None


@task
def mark_live(model: str, plan: dict, parity: dict, **context: Any) -> dict:
    """Check that Triton answers with the version, then set the ``serving.triton`` tags and write the audit record."""
    from include.promotion.rollout import DeploymentError
    from include.serving import deploy

    try:
        deploy.mark_live(MlflowHook().client, TritonHook().client, _plan(plan), parity, actor=actor(context),
                         **ids(context))
    except DeploymentError as exc:
        raise _fail(exc) from None
    return plan


def _planned(context: dict, task_id: str) -> dict:
    """The run's plan, or skip: a plan that failed or was skipped has nothing to recover."""
    planned = context["ti"].xcom_pull(task_ids=task_id)
    if not planned:
        raise AirflowSkipException(f"{task_id} did not produce a plan: nothing was changed, nothing to recover")
    return planned


def _alerted(model: str, version: str, recovery, keys: dict[str, str]) -> dict:
    """Send the recovery's critical alert; fail the task when it did not recover, else return its result."""
    _alert(model, version, recovery.title, list(recovery.actions), keys)
    if not recovery.ok:
        raise AirflowFailException(recovery.error)
    return recovery.result


@task(trigger_rule="one_failed", retries=1)
def roll_back_failed_deployment(model: str, **context: Any) -> dict:
    """A deployment step failed: ``@champion`` goes back to the fallback, which Triton then serves alone.

    See :func:`include.serving.deploy.recover_failed_deployment`; without a fallback the task fails after alerting.
    """
    from include.serving import deploy

    planned = _plan(_planned(context, PLAN_TASK))
    hook, keys = TritonHook(), ids(context)
    recovery = deploy.recover_failed_deployment(MlflowHook().client, hook.client, hook.model_repository,
                                                get_model_config(model), planned, actor=actor(context), **keys)
    return _alerted(model, planned.version, recovery, keys)


def _alert(model: str, version: str, title: str, actions: list[str], keys: dict[str, str]) -> None:
    """A critical alert about a deployment, to the model's Slack channel (or the log)."""
    from include.monitoring.alerts import Alert
    from modelops.notify import airflow_url, notify

    settings = get_model_config(model).alerts
    alert = Alert("critical", model, version, title, actions=tuple(actions),
                  links={"Airflow run": airflow_url(keys["dag_id"], keys["run_id"])})
    notify(alert, conn_id=settings.slack_conn_id, channel=settings.channel)


# --- rollback DAG ----------------------------------------------------------------------------


@task(task_id=ROLLBACK_PLAN_TASK)
def roll_back(model: str, **context: Any) -> dict:
    """Check the rollback asked for in the run's params and plan it; a refusal fails here, before anything moves.

    Params: ``target_version`` (empty: the champion before the current one on record), ``reason``,
    ``force`` (override the target checks; needs a reason of its own) and ``from_version`` (roll
    back only while ``@champion`` is that version; otherwise the run has nothing to do and skips).
    """
    from include.promotion.rollout import DeploymentError
    from include.serving import deploy

    params = context["params"]
    try:
        planned = deploy.plan_requested_rollback(
            MlflowHook().client, model, target=params.get("target_version") or None,
            reason=str(params.get("reason") or ""), force=bool(params.get("force")),
            from_version=params.get("from_version") or None, run_id=ids(context)["run_id"],
            default_reason=DEFAULT_ROLLBACK_REASON)
    except DeploymentError as exc:
        raise _fail(exc) from None
    if planned is None:
        raise AirflowSkipException(f"{model} @champion is no longer version {params.get('from_version')}: "
                                   "nothing to roll back")
    if planned.replaced is None:
        log.info("@champion already is version %s: redeploying it to make sure it serves", planned.version)
    return planned.as_dict()


@task
def switch(model: str, plan: dict, parity: dict, **context: Any) -> dict:
    """The target passed its checks: move ``@champion`` to it, serve it alone on Triton, set the tags, audit."""
    from include.promotion.rollout import DeploymentError
    from include.serving import deploy

    hook = TritonHook()
    try:
        return deploy.switch(MlflowHook().client, hook.client, hook.model_repository, get_model_config(model),
                             _plan(plan), parity,
                             reason=str(context["params"].get("reason") or "").strip() or DEFAULT_ROLLBACK_REASON,
                             actor=actor(context), **ids(context))
    except DeploymentError as exc:
        raise _fail(exc) from None


@task(trigger_rule="one_failed", retries=1)
def restore_after_failed_rollback(model: str, **context: Any) -> dict:
    """A rollback step failed: Triton serves ``@champion`` (whichever version it is now) alone, tags follow.

    See :func:`include.serving.deploy.restore_after_failed_rollback`.
    """
    from include.promotion.rollout import DeploymentError
    from include.serving import deploy

    planned = _plan(_planned(context, ROLLBACK_PLAN_TASK))
    hook, keys = TritonHook(), ids(context)
    try:
        recovery = deploy.restore_after_failed_rollback(MlflowHook().client, hook.client, hook.model_repository,
                                                        get_model_config(model), planned, actor=actor(context), **keys)
    except DeploymentError as exc:
        raise _fail(exc) from None
    return _alerted(model, planned.version, recovery, keys)


@task
def stop_challenger(model: str, plan: dict, **context: Any) -> str | None:
    """The new champion was the challenger on live traffic: take its challenger copy off Triton."""
    from include.serving import shadow

    hook = TritonHook()
    keys = ids(context)
    return shadow.stop(MlflowHook().client, hook.client, hook.model_repository, get_model_config(model),
                       actor=actor(context), only_version=plan["version"], reason=f"version {plan['version']} is live "
                       "as the champion", dag_id=keys["dag_id"], run_id=keys["run_id"])
