"""Task functions of the deployment and rollback DAGs: put a registry version live on Triton, verified.

The same steps serve both DAGs: export → load → (deferrable wait) → verify → mark live. A plan is a
dict ``{"model", "version", "fallback"}`` passed between them.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from include.config import get_model_config
from modelops.hooks.mlflow import MlflowHook
from modelops.hooks.triton import TritonHook
from modelops.tasks._context import actor, ids

log = logging.getLogger(__name__)

# mlflow, pandas and the Triton client are imported inside the tasks: this module is imported while DAGs are parsed.
PARITY_ROWS = 200
PARITY_TOLERANCE = 1e-5  # probabilities; measured ~1e-7 between the ONNX export and the sklearn model


def _fail(exc: Exception) -> AirflowFailException:
    return AirflowFailException(str(exc))


@task
def plan(model: str, version: str | None = None) -> dict:
    """Which version goes live (``version`` or ``@champion``) and which one serves if it fails."""
    from include.deployment import DeploymentError, plan_deployment

    try:
        return plan_deployment(MlflowHook().client, model, version or None).as_dict()
    except DeploymentError as exc:
        raise _fail(exc) from None


@task
def export(model: str, plan: dict) -> str:
    """Write the version (and keep the fallback) in the Triton model repository; a no-op when already there."""
    from include.triton.repository import export_version

    hook = TritonHook()
    keep = [plan["fallback"]] if plan.get("fallback") else []
    path = export_version(
        MlflowHook().client, model, plan["version"], get_model_config(model), hook.model_repository, keep_versions=keep
    )
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

    from include.deployment import DeploymentError, check_parity, parity_frame

    config = get_model_config(model)
    client = MlflowHook().client
    triton = TritonHook().client
    frame = parity_frame(client, config, plan["version"], PARITY_ROWS)
    try:
        smoke = triton.infer(model, frame.head(1), version=plan["version"])
        log.info("Smoke inference on version %s: %s", plan["version"], smoke)
        served = triton.infer(model, frame, version=plan["version"])
        expected = np.asarray(mlflow.pyfunc.load_model(f"models:/{model}/{plan['version']}").predict(frame))[:, 1]
        result = check_parity(expected, served, tolerance=PARITY_TOLERANCE)
    except (DeploymentError, RuntimeError, ValueError) as exc:
        raise AirflowFailException(f"{model} version {plan['version']} failed verification: {exc}") from None
    log.info("Parity on %d rows: max |diff| %.3g (tolerance %g)", result["rows"], result["max_abs_diff"], PARITY_TOLERANCE)
    return result


@task
def mark_live(model: str, plan: dict, parity: dict, **context: Any) -> dict:
    """Record that the version serves on Triton (version tag and audit record)."""
    from include import audit

    client = MlflowHook().client
    keys = ids(context)
    client.set_model_version_tag(model, plan["version"], "serving.triton", "live")
    audit.write(
        client,
        audit.AuditRecord(action="deploy", model=model, version=plan["version"], actor=actor(context),
                          reason="deployed to Triton and verified", dag_id=keys["dag_id"], run_id=keys["run_id"],
                          details={"fallback": plan.get("fallback"), "parity": parity, "target": "triton"}),
    )
    return plan


@task(trigger_rule="one_failed", retries=1)
def roll_back_failed_deployment(model: str, plan: dict, **context: Any) -> dict:
    """A deployment step failed: ``@champion`` goes back to the fallback, which Triton keeps serving."""
    from include import deployment
    from include.triton.repository import export_version

    client = MlflowHook().client
    keys = ids(context)
    if not plan.get("fallback"):
        _alert(model, plan["version"], f"version {plan['version']} failed to deploy and there is no previous "
               "version to fall back to", ["none: no fallback version"], keys)
        raise AirflowFailException(f"{model} version {plan['version']} failed to deploy; no fallback version")
    result = deployment.rollback(
        client, model, target=plan["fallback"], actor=actor(context),
        reason=f"automatic: version {plan['version']} failed deployment checks", **keys,
    )
    hook = TritonHook()
    export_version(client, model, plan["fallback"], get_model_config(model), hook.model_repository, keep_versions=[])
    hook.client.load(model)
    hook.client.wait_ready(model, plan["fallback"], timeout=120)
    _alert(model, plan["version"], f"version {plan['version']} failed deployment; rolled back to version "
           f"{plan['fallback']}", [f"@champion moved back to version {plan['fallback']}",
                                   f"Triton serves version {plan['fallback']} alone"], keys)
    return result.as_dict()


def _alert(model: str, version: str, title: str, actions: list[str], keys: dict[str, str]) -> None:
    """A critical alert about a deployment, to the model's Slack channel (or the log)."""
    from include.alerts import Alert
    from modelops.notify import airflow_url, notify

    settings = get_model_config(model).alerts
    alert = Alert("critical", model, version, title, actions=tuple(actions),
                  links={"Airflow run": airflow_url(keys["dag_id"], keys["run_id"])})
    notify(alert, conn_id=settings.slack_conn_id, channel=settings.channel)


@task
def roll_back(model: str, target: str | None, reason: str, **context: Any) -> dict:
    """Move ``@champion`` to ``target`` (default ``@previous_champion``); the plan then redeploys it."""
    from include import deployment

    try:
        result = deployment.rollback(
            MlflowHook().client, model, target=target or None, actor=actor(context), reason=reason, **ids(context)
        )
    except deployment.DeploymentError as exc:
        raise _fail(exc) from None
    if not result.changed:
        log.info("@champion already is version %s: redeploying it to make sure it serves", result.target)
    return {"model": model, "version": result.target, "fallback": None}
