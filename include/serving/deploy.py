"""Put a registry version live on Triton, verified: the steps the deployment and rollback DAGs run.

The DAGs run plan → export → load → (deferrable wait) → verify → go live, with a recovery step when
one fails. What may go live, and what a rollback moves, is decided in :mod:`include.promotion.rollout`;
this module does the serving side of each step over an :class:`~mlflow.tracking.MlflowClient`, a
:class:`~include.serving.triton.client.TritonClient` and the model repository folder that server reads.
``plugins/modelops/serving/tasks.py`` calls one function per Airflow task and only turns
:class:`~include.promotion.rollout.DeploymentError` into a task failure and a :class:`Recovery` into an alert.

After every change of what Triton serves, the ``serving.triton`` version tags are set from Triton's own
repository index (:func:`sync_serving`), so they say what Triton serves, never what was meant to.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.config import ModelConfig
from include.monitoring.log_schema import VERIFICATION
from include.promotion import rollout
from include.promotion.registry import CHAMPION, alias_version
from include.promotion.rollout import DeploymentError, DeploymentPlan
from include.serving import onnx
from include.serving.triton.repository import export_version

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from include.serving.triton.client import TritonClient

log = logging.getLogger(__name__)

PARITY_ROWS = 200  # held-out rows the served version is compared on
PARITY_MISSING_ROWS = 5  # of them, repeated with each missing / unseen value
READY_TIMEOUT_S = 120  # seconds a version may take to load when it is served alone


@dataclass(frozen=True)
class Recovery:
    """What a recovery step did: ``ok`` False means the run must fail with ``error`` after alerting.

    ``title`` and ``actions`` are the critical alert's (what happened; what was done, one line each);
    ``result``: what the task returns when ``ok``.
    """

    ok: bool
    title: str
    actions: tuple[str, ...]
    error: str = ""
    result: dict[str, Any] = field(default_factory=dict)


# --- serving ---------------------------------------------------------------------------------


def sync_serving(client: MlflowClient, triton: TritonClient, model: str, *, expected: str | None = None) -> str | None:
    """Set the ``serving.triton`` tags from Triton's repository index; returns the live version (None: none).

    With ``expected``, a different live version raises :class:`DeploymentError` after the tags are set
    (:func:`include.promotion.rollout.record_serving`). Triton's errors (:class:`TritonError`) pass through.
    """
    states = rollout.triton_states(triton.repository_index(), model)
    return rollout.record_serving(client, model, states, expected=expected)


def export(client: MlflowClient, config: ModelConfig, plan: DeploymentPlan, repository: Path | str) -> Path:
    """Export the plan's version into ``repository`` and keep its standby versions listed; the version folder.

    A no-op when the version is already exported by this exporter (:func:`include.serving.triton.repository.export_version`).
    Raises :class:`include.serving.onnx.ExportError` when the version cannot be exported faithfully.
    """
    return export_version(client, config.name, plan.version, config, repository, keep_versions=plan.standby)


def serve_alone(client: MlflowClient, triton: TritonClient, repository: Path | str, config: ModelConfig,
                version: str, *, timeout: float = READY_TIMEOUT_S) -> str | None:
    """Triton serves ``version`` alone: export it (no other version listed), reload, wait until ready, set the tags.

    Returns the live version Triton reports. Raises :class:`DeploymentError` when it is not ``version``,
    ExportError when it cannot be exported, TritonError when Triton refuses
    the load or the version is not ready within ``timeout`` seconds.
    """
    export_version(client, config.name, version, config, repository, keep_versions=[])
    triton.load(config.name)
    triton.wait_ready(config.name, version, timeout=timeout)
    return sync_serving(client, triton, config.name, expected=version)


# --- verification ----------------------------------------------------------------------------


def verification_frame(client: MlflowClient, config: ModelConfig, version: str, rows: int = PARITY_ROWS) -> pd.DataFrame:
    """Rows to compare the served version with the registry's on; each row's index label names its case.

    :func:`include.serving.onnx.parity_frame` with ``nulls="sendable"`` over

    * ``"holdout"``: up to ``rows`` held-out rows of the version's own training data (the version's
      ``dataset_uri`` tag, split as training split it), or its logged input example (``"example"``) when
      that data is not readable;
    * their first :data:`PARITY_MISSING_ROWS` again with each ``float`` feature missing (NaN) and each
      categorical one missing (None) and unseen.

    ``int`` and ``bool`` features are not made missing here: Triton's client cannot send a null in an
    INT64 / BOOL input, and the MLflow signature of an integer column refuses one. The export's own parity
    check (:func:`include.serving.onnx.check_export`) covers them on the ONNX model Triton runs.
    """
    import pandas as pd

    from include.data.dataset import read_dataset
    from include.training.train import holdout_split

    names = config.dataset.feature_names
    uri = client.get_model_version(config.name, version).tags.get("dataset_uri")
    try:
        _, holdout = holdout_split(read_dataset(uri, config.dataset.column_types), config)
        base, label = holdout[names].head(rows), "holdout"
    except (FileNotFoundError, ValueError, TypeError):
        log.warning("Training data %s of version %s is not readable; using the logged input example", uri, version)
        import mlflow.artifacts
        from mlflow.models import Model

        local = mlflow.artifacts.download_artifacts(client.get_model_version_download_uri(config.name, version))
        example = Model.load(local).load_input_example(local)
        base, label = pd.DataFrame(example)[names], "example"
    return onnx.parity_frame(base, config, label=label, missing_rows=PARITY_MISSING_ROWS, nulls="sendable")


def verify(client: MlflowClient, triton: TritonClient, config: ModelConfig, version: str, *,
           rows: int = PARITY_ROWS, tolerance: float = onnx.PARITY_TOLERANCE) -> dict[str, float]:
    """A smoke inference, then parity: Triton's answers for ``version`` against the MLflow model's.

    Both score :func:`verification_frame` (the MLflow model from ``client``'s registry, as a pyfunc);
    :func:`include.serving.onnx.check_parity` compares the
    positive-class probabilities. Returns its ``{"rows", "max_abs_diff", "tolerance"}``. Raises
    :class:`DeploymentError` ("failed verification", naming the cases that differ) when Triton refuses
    a request, answers otherwise than the registry's model, or the rows cannot be sent.
    """
    import mlflow.pyfunc
    import numpy as np

    model = config.name
    frame = verification_frame(client, config, version, rows)
    try:
        smoke = triton.infer(model, frame.head(1), version=version, role=VERIFICATION)
        log.info("Smoke inference on %s version %s: %s", model, version, smoke)
        served = triton.infer(model, frame, version=version, role=VERIFICATION)  # logged, never monitored as live
        registered = mlflow.pyfunc.load_model(client.get_model_version_download_uri(model, version))
        expected = np.asarray(registered.predict(frame))[:, 1]
        result = onnx.check_parity(expected, served, labels=frame.index, tolerance=tolerance,
                                   names=("the MLflow model", "Triton"), subject=f"{model} version {version}")
    except (RuntimeError, ValueError) as exc:  # ParityError, TritonError, a frame the client refuses to send
        raise DeploymentError(f"{model} version {version} failed verification: {exc}") from exc
    log.info("Parity of %s version %s on %d rows: max |diff| %.3g (tolerance %g)", model, version, result["rows"],
             result["max_abs_diff"], tolerance)
    return result


def mark_live(client: MlflowClient, triton: TritonClient, plan: DeploymentPlan, parity: Mapping, *, actor: str,
              reason: str = "deployed to Triton and verified", dag_id: str | None = None,
              run_id: str | None = None) -> None:
    """Triton answers with the plan's version: set the tags, then write the ``deploy`` audit record.

    Raises :class:`DeploymentError` (tags set, no record written) when Triton's live version is another.
    """
    sync_serving(client, triton, plan.model, expected=plan.version)
    rollout.record_deployment(client, plan, parity, actor=actor, reason=reason, dag_id=dag_id, run_id=run_id)


# --- rollback --------------------------------------------------------------------------------


def plan_requested_rollback(client: MlflowClient, model: str, *, target: str | None, reason: str, force: bool,
                            from_version: str | None, run_id: str | None,
                            default_reason: str = "") -> DeploymentPlan | None:
    """:func:`include.promotion.rollout.plan_rollback` for a rollback someone asked for (the rollback DAG's params).

    ``target`` None: the champion before the current one. ``force`` needs a ``reason`` of its own:
    neither empty nor ``default_reason`` (what the request form fills in). Returns None when
    ``@champion`` is no longer ``from_version`` (nothing to do). Raises :class:`DeploymentError` for a
    refused rollback; nothing has moved then.
    """
    reason = (reason or "").strip()
    if force and reason in ("", default_reason):
        raise DeploymentError(f"{model}: force=true needs a reason of its own (the `reason` param, not "
                              f"{default_reason!r}): it goes into the audit record")
    return rollout.plan_rollback(client, model, target=None if target is None else str(target), force=force,
                                 reason=reason, expected_champion=None if from_version is None else str(from_version),
                                 run_id=run_id)


def switch(client: MlflowClient, triton: TritonClient, repository: Path | str, config: ModelConfig,
           plan: DeploymentPlan, parity: Mapping, *, reason: str, actor: str, dag_id: str | None = None,
           run_id: str | None = None) -> dict:
    """The rollback target passed its checks: move ``@champion`` to it, serve it alone, set the tags, audit.

    ``reason`` goes into the rollback's and the deployment's audit records. Returns
    :meth:`include.promotion.rollout.RollbackResult.as_dict`, or ``{"model", "target", "changed": False}``
    when the plan moves nothing (a redeploy of the champion). Raises :class:`DeploymentError` when the
    rollback is refused now or Triton then serves another version.
    """
    result = None
    if plan.replaced:
        result = rollout.rollback(client, plan.model, target=plan.version, force=plan.force, reason=reason,
                                  expected_champion=plan.replaced, actor=actor, dag_id=dag_id, run_id=run_id)
    serve_alone(client, triton, repository, config, plan.version)
    rollout.record_deployment(client, plan, parity, actor=actor, reason=f"rollback: {reason}", dag_id=dag_id,
                              run_id=run_id)
    return result.as_dict() if result else {"model": plan.model, "target": plan.version, "changed": False}


# --- recovery --------------------------------------------------------------------------------


def recover_failed_deployment(client: MlflowClient, triton: TritonClient, repository: Path | str,
                              config: ModelConfig, plan: DeploymentPlan, *, actor: str, dag_id: str | None = None,
                              run_id: str | None = None) -> Recovery:
    """A deployment step failed: ``@champion`` goes back to the fallback, which Triton then serves alone.

    The failed version gets a ``deploy_failed`` audit record first (it may not be a rollback target until
    it is promoted again). Without a fallback, or when the rollback to it is refused now, nothing moves:
    the tags say what Triton serves and the :class:`Recovery` is not ``ok``. Triton's and the export's
    errors while serving the fallback pass through (the task retries).
    """
    model, version, fallback = plan.model, plan.version, plan.fallback
    rollout.record_deploy_failure(
        client, model, version, actor=actor, dag_id=dag_id, run_id=run_id, details={"fallback": fallback},
        reason=f"failed deployment checks in run {run_id} (export, load, readiness or verification)")
    if not fallback:
        live = sync_serving(client, triton, model)
        return Recovery(False, f"version {version} failed to deploy and there is no version to fall back to",
                        (f"none: @champion stays version {version}", f"Triton serves version {live or 'nothing'}"),
                        error=f"{model} version {version} failed to deploy; no fallback version")
    try:
        result = rollout.rollback(client, model, target=fallback, expected_champion=version, actor=actor,
                                  reason=f"automatic: version {version} failed deployment checks", dag_id=dag_id,
                                  run_id=run_id)
    except DeploymentError as exc:
        live = sync_serving(client, triton, model)
        return Recovery(False, f"version {version} failed to deploy and the rollback to version {fallback} was "
                        f"refused: {exc}", (f"Triton serves version {live or 'nothing'}",), error=str(exc))
    serve_alone(client, triton, repository, config, fallback)
    return Recovery(True, f"version {version} failed deployment; rolled back to version {fallback}",
                    (f"@champion moved back to version {fallback}", f"Triton serves version {fallback} alone"),
                    result=result.as_dict())


def restore_after_failed_rollback(client: MlflowClient, triton: TritonClient, repository: Path | str,
                                  config: ModelConfig, plan: DeploymentPlan, *, actor: str,
                                  dag_id: str | None = None, run_id: str | None = None) -> Recovery:
    """A rollback step failed: Triton serves ``@champion`` (whichever version it is now) alone, tags follow.

    A target that failed before the switch (``@champion`` is not it) gets a ``deploy_failed`` audit
    record; the version it was to replace keeps serving. Raises :class:`DeploymentError` when the model
    has no ``@champion`` to restore.
    """
    model = plan.model
    champion = alias_version(client, model, CHAMPION)
    current = str(champion.version) if champion else None
    if plan.replaced and current != plan.version:
        rollout.record_deploy_failure(client, model, plan.version, actor=actor, dag_id=dag_id, run_id=run_id,
                                      reason=f"rollback target failed its checks in run {run_id}",
                                      details={"champion": current})
    if current is None:
        raise DeploymentError(f"{model} has no @{CHAMPION} to restore")
    serve_alone(client, triton, repository, config, current)
    return Recovery(True, f"the rollback to version {plan.version} failed; @champion is version {current}",
                    (f"Triton serves version {current} alone",), result={"model": model, "champion": current})
