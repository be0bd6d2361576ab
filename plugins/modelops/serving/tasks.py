"""Task functions of the deployment and rollback DAGs: put a registry version live on Triton, verified.

Both DAGs run: plan (refuse before anything moves) → export → load → (deferrable wait) → verify →
go live, with a recovery task when a step fails. A plan is :meth:`include.promotion.rollout.DeploymentPlan.as_dict`
(``{"model", "version", "fallback", "standby", "replaced", "force", "overridden"}``) passed between them.
After every change of what Triton serves, the ``serving.triton`` version tags are set from Triton's
own repository index (:func:`include.promotion.rollout.record_serving`).
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

# mlflow, pandas and the Triton client are imported inside the tasks: this module is imported while DAGs are parsed.
PARITY_ROWS = 200
PARITY_TOLERANCE = 1e-5  # probabilities; measured ~1e-7 between the ONNX export and the sklearn model
READY_TIMEOUT_S = 120
DEFAULT_ROLLBACK_REASON = "manual rollback"  # the rollback DAG's default ``reason``: not enough to force one
PLAN_TASK = "plan"
ROLLBACK_PLAN_TASK = "roll_back"


def _fail(exc: Exception) -> AirflowFailException:
    return AirflowFailException(str(exc))


def _serve_alone(client, model: str, version: str, *, expected_live: bool = True) -> str | None:
    """Triton serves ``version`` alone (its export, then a reload unloads the others); tags follow Triton."""
    from include.promotion.rollout import record_serving, triton_states
    from include.serving.triton.repository import export_version

    hook = TritonHook()
    export_version(client, model, version, get_model_config(model), hook.model_repository, keep_versions=[])
    hook.client.load(model)
    hook.client.wait_ready(model, version, timeout=READY_TIMEOUT_S)
    return record_serving(client, model, triton_states(hook.client.repository_index(), model),
                          expected=version if expected_live else None)


def _sync_tags(client, model: str) -> str | None:
    """The ``serving.triton`` tags set from what Triton reports now (no expectation)."""
    from include.promotion.rollout import record_serving, triton_states

    return record_serving(client, model, triton_states(TritonHook().client.repository_index(), model))


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
    from include.serving.triton.repository import export_version

    hook = TritonHook()
    path = export_version(MlflowHook().client, model, plan["version"], get_model_config(model),
                          hook.model_repository, keep_versions=plan.get("standby") or [])
    return str(path)


@task(retries=1, retry_delay=timedelta(seconds=10))
def load(model: str, plan: dict) -> None:
    """Ask Triton to (re)load the model from the repository: the listed versions load, others unload."""
    TritonHook().client.load(model)


@task(retries=1, retry_delay=timedelta(seconds=10))
def verify(model: str, plan: dict) -> dict:
    """Smoke inference, then parity: Triton's outputs vs the MLflow model's on held-out rows."""
    import mlflow.pyfunc
    import numpy as np

    from include.promotion.rollout import DeploymentError, check_parity, parity_frame

    config = get_model_config(model)
    client = MlflowHook().client
    triton = TritonHook().client
    frame = parity_frame(client, config, plan["version"], PARITY_ROWS)
    try:
        smoke = triton.infer(model, frame.head(1), version=plan["version"])
        log.info("Smoke inference on version %s: %s", plan["version"], smoke)
        served = triton.infer(model, frame, version=plan["version"])
        expected = np.asarray(mlflow.pyfunc.load_model(f"models:/{model}/{plan['version']}").predict(frame))[:, 1]
        result = check_parity(expected, served, tolerance=PARITY_TOLERANCE, labels=frame.index)
    except (DeploymentError, RuntimeError, ValueError) as exc:
        raise AirflowFailException(f"{model} version {plan['version']} failed verification: {exc}") from None
    log.info("Parity on %d rows: max |diff| %.3g (tolerance %g)", result["rows"], result["max_abs_diff"], PARITY_TOLERANCE)
    return result


def _audit_deploy(client, model: str, plan: dict, parity: dict, reason: str, context: dict) -> None:
    from include.governance import audit
    from include.promotion.rollout import DEPLOY_ACTION

    keys = ids(context)
    audit.write(
        client,
        audit.AuditRecord(action=DEPLOY_ACTION, model=model, version=plan["version"], actor=actor(context),
                          reason=reason, dag_id=keys["dag_id"], run_id=keys["run_id"],
                          details={"fallback": plan.get("fallback"), "standby": plan.get("standby") or [],
                                   "parity": parity, "target": "triton"}),
    )


@task
def mark_live(model: str, plan: dict, parity: dict, **context: Any) -> dict:
    """Check that Triton answers with the version, then set the ``serving.triton`` tags and write the audit record."""
    from include.promotion.rollout import DeploymentError, record_serving, triton_states

    client = MlflowHook().client
    try:
        record_serving(client, model, triton_states(TritonHook().client.repository_index(), model),
                       expected=plan["version"])
    except DeploymentError as exc:
        raise _fail(exc) from None
    _audit_deploy(client, model, plan, parity, "deployed to Triton and verified", context)
    return plan


def _planned(context: dict, task_id: str) -> dict:
    """The run's plan, or skip: a plan that failed or was skipped has nothing to recover."""
    planned = context["ti"].xcom_pull(task_ids=task_id)
    if not planned:
        raise AirflowSkipException(f"{task_id} did not produce a plan: nothing was changed, nothing to recover")
    return planned


@task(trigger_rule="one_failed", retries=1)
def roll_back_failed_deployment(model: str, **context: Any) -> dict:
    """A deployment step failed: ``@champion`` goes back to the fallback, which Triton then serves alone.

    The failed version gets a ``deploy_failed`` audit record (it may not be a rollback target until it
    is promoted again). Without a fallback the champion stays, Triton keeps what it serves, and the
    tags say what that is.
    """
    from include.promotion import rollout

    plan = _planned(context, PLAN_TASK)
    client = MlflowHook().client
    keys = ids(context)
    version, fallback = plan["version"], plan.get("fallback")
    rollout.record_deploy_failure(
        client, model, version, actor=actor(context), dag_id=keys["dag_id"], run_id=keys["run_id"],
        reason=f"failed deployment checks in run {keys['run_id']} (export, load, readiness or verification)", details={"fallback": fallback})
    if not fallback:
        live = _sync_tags(client, model)
        _alert(model, version, f"version {version} failed to deploy and there is no version to fall back to",
               [f"none: @champion stays version {version}", f"Triton serves version {live or 'nothing'}"], keys)
        raise AirflowFailException(f"{model} version {version} failed to deploy; no fallback version")
    try:
        result = rollout.rollback(
            client, model, target=fallback, expected_champion=version, actor=actor(context),
            reason=f"automatic: version {version} failed deployment checks", **keys,
        )
    except rollout.DeploymentError as exc:
        live = _sync_tags(client, model)
        _alert(model, version, f"version {version} failed to deploy and the rollback to version {fallback} was "
               f"refused: {exc}", [f"Triton serves version {live or 'nothing'}"], keys)
        raise _fail(exc) from None
    _serve_alone(client, model, fallback)
    _alert(model, version, f"version {version} failed deployment; rolled back to version {fallback}",
           [f"@champion moved back to version {fallback}", f"Triton serves version {fallback} alone"], keys)
    return result.as_dict()


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
    from include.promotion import rollout

    params = context["params"]
    target, reason = params.get("target_version") or None, str(params.get("reason") or "").strip()
    force, expected = bool(params.get("force")), params.get("from_version") or None
    if force and reason in ("", DEFAULT_ROLLBACK_REASON):
        raise AirflowFailException(f"{model}: force=true needs a reason of its own (the `reason` param, not "
                                   f"{DEFAULT_ROLLBACK_REASON!r}): it goes into the audit record")
    try:
        planned = rollout.plan_rollback(
            MlflowHook().client, model, target=None if target is None else str(target), force=force, reason=reason,
            expected_champion=None if expected is None else str(expected), run_id=ids(context)["run_id"],
        )
    except rollout.DeploymentError as exc:
        raise _fail(exc) from None
    if planned is None:
        raise AirflowSkipException(f"{model} @champion is no longer version {expected}: nothing to roll back")
    if planned.replaced is None:
        log.info("@champion already is version %s: redeploying it to make sure it serves", planned.version)
    return planned.as_dict()


@task
def switch(model: str, plan: dict, parity: dict, **context: Any) -> dict:
    """The target passed its checks: move ``@champion`` to it, serve it alone on Triton, set the tags, audit."""
    from include.promotion import rollout

    client = MlflowHook().client
    params = context["params"]
    reason = str(params.get("reason") or "").strip() or DEFAULT_ROLLBACK_REASON
    result = None
    if plan.get("replaced"):
        try:
            result = rollout.rollback(
                client, model, target=plan["version"], force=bool(plan.get("force")), reason=reason,
                expected_champion=plan["replaced"], actor=actor(context), **ids(context),
            )
        except rollout.DeploymentError as exc:
            raise _fail(exc) from None
    try:
        _serve_alone(client, model, plan["version"])
    except rollout.DeploymentError as exc:
        raise _fail(exc) from None
    _audit_deploy(client, model, plan, parity, f"rollback: {reason}", context)
    return result.as_dict() if result else {"model": model, "target": plan["version"], "changed": False}


@task(trigger_rule="one_failed", retries=1)
def restore_after_failed_rollback(model: str, **context: Any) -> dict:
    """A rollback step failed: Triton serves ``@champion`` (whichever version it is now) alone, tags follow.

    A target that failed before the switch gets a ``deploy_failed`` audit record; ``@champion`` did
    not move then, and the version it replaced keeps serving.
    """
    from include.promotion import rollout
    from include.promotion.registry import CHAMPION, alias_version

    plan = _planned(context, ROLLBACK_PLAN_TASK)
    client = MlflowHook().client
    keys = ids(context)
    champion = alias_version(client, model, CHAMPION)
    current = str(champion.version) if champion else None
    if plan.get("replaced") and current != plan["version"]:
        rollout.record_deploy_failure(
            client, model, plan["version"], actor=actor(context), dag_id=keys["dag_id"], run_id=keys["run_id"],
            reason=f"rollback target failed its checks in run {keys['run_id']}", details={"champion": current})
    if current is None:
        raise AirflowFailException(f"{model} has no @{CHAMPION} to restore")
    _serve_alone(client, model, current)
    _alert(model, plan["version"], f"the rollback to version {plan['version']} failed; @champion is version {current}",
           [f"Triton serves version {current} alone"], keys)
    return {"model": model, "champion": current}
