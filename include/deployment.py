"""Deployment decisions over the registry: which version goes live, checks that it serves correctly, rollback.

Aliases stay the only record of what is live: a deployment serves ``@champion``; a failed deployment
or a rollback moves ``@champion`` back and Triton follows. Every move writes an audit record.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from include import audit
from include.config import ModelConfig
from include.registry import CHAMPION, PREVIOUS_CHAMPION, alias_version

log = logging.getLogger(__name__)

ROLLED_BACK = "rolled_back"  # alias on the version a rollback took out of service
RETIRED_TAG = "retired"


class DeploymentError(RuntimeError):
    """A version cannot be deployed or rolled back to; nothing was changed."""


@dataclass(frozen=True)
class DeploymentPlan:
    model: str
    version: str  # what goes live
    fallback: str | None  # what serves if it fails (the champion it replaces)

    def as_dict(self) -> dict:
        return asdict(self)


def _existing_version(client: MlflowClient, model: str, version: str):
    try:
        found = client.get_model_version(model, version)
    except MlflowException:
        raise DeploymentError(f"{model} has no version {version}") from None
    if found.tags.get(RETIRED_TAG) == "true":
        raise DeploymentError(f"{model} version {version} is retired and cannot serve again")
    return found


def plan_deployment(client: MlflowClient, model: str, version: str | None = None) -> DeploymentPlan:
    """Deploy ``version`` (default: ``@champion``); the fallback is ``@previous_champion``."""
    champion = alias_version(client, model, CHAMPION)
    if version is None:
        if champion is None:
            raise DeploymentError(f"{model} has no @{CHAMPION} to deploy")
        version = str(champion.version)
    _existing_version(client, model, version)
    previous = alias_version(client, model, PREVIOUS_CHAMPION)
    fallback = str(previous.version) if previous and str(previous.version) != version else None
    return DeploymentPlan(model=model, version=version, fallback=fallback)


@dataclass(frozen=True)
class RollbackResult:
    model: str
    target: str
    replaced: str | None
    changed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def rollback(
    client: MlflowClient, model: str, *, target: str | None, actor: str, reason: str,
    dag_id: str | None = None, run_id: str | None = None,
) -> RollbackResult:
    """Point ``@champion`` at ``target`` (default ``@previous_champion``).

    Idempotent: once ``@champion`` is the target, the same rollback changes nothing, so triggering
    it twice never steps back two versions. A target that does not exist or is retired raises
    :class:`DeploymentError` before anything moves.
    """
    if target is None:
        previous = alias_version(client, model, PREVIOUS_CHAMPION)
        if previous is None:
            raise DeploymentError(f"{model} has no @{PREVIOUS_CHAMPION} to roll back to; give a target version")
        target = str(previous.version)
    _existing_version(client, model, target)
    champion = alias_version(client, model, CHAMPION)
    replaced = str(champion.version) if champion else None
    if replaced == target:
        log.info("%s @%s already is version %s: nothing to roll back", model, CHAMPION, target)
        return RollbackResult(model, target, None, changed=False)
    client.set_registered_model_alias(model, CHAMPION, target)
    if replaced is not None:
        client.set_registered_model_alias(model, ROLLED_BACK, replaced)
    # After a rollback the fallback is the version now serving: a repeated rollback is a no-op.
    client.set_registered_model_alias(model, PREVIOUS_CHAMPION, target)
    details = {"from_version": replaced, "to_version": target}
    for version in filter(None, {target, replaced}):
        audit.write(
            client,
            audit.AuditRecord(action="rollback", model=model, version=version, actor=actor, reason=reason,
                              dag_id=dag_id, run_id=run_id, details=details),
        )
    return RollbackResult(model, target, replaced, changed=True)


def parity_frame(client: MlflowClient, config: ModelConfig, version: str, rows: int):
    """Held-out rows of the version's own training data (its input example when the data is gone)."""
    import pandas as pd

    from include.dataset import read_dataset
    from include.train import holdout_split

    found = client.get_model_version(config.name, version)
    uri = found.tags.get("dataset_uri")
    try:
        _, holdout = holdout_split(read_dataset(uri), config)
        return holdout[config.dataset.feature_names].head(rows).reset_index(drop=True)
    except (FileNotFoundError, ValueError, TypeError):
        log.warning("Training data %s of version %s is not readable; using the logged input example", uri, version)
    from mlflow.models import Model

    example = Model.load(f"models:/{config.name}/{version}").load_input_example()
    return pd.DataFrame(example)[config.dataset.feature_names]


def check_parity(expected, served, *, tolerance: float) -> dict:
    """Compare the registry model's probabilities with the server's; raises DeploymentError beyond ``tolerance``."""
    import numpy as np

    expected = np.asarray(expected, dtype=float).ravel()
    served = np.asarray(served, dtype=float).ravel()
    if expected.shape != served.shape:
        raise DeploymentError(f"parity: {served.size} outputs for {expected.size} rows")
    if not np.all(np.isfinite(served)):
        raise DeploymentError("parity: the server returned non-finite outputs")
    diff = float(np.max(np.abs(expected - served))) if expected.size else 0.0
    result = {"rows": int(expected.size), "max_abs_diff": diff, "tolerance": tolerance}
    if diff > tolerance:
        raise DeploymentError(f"parity: max |MLflow - server| = {diff:.3g} > tolerance {tolerance:g} over {expected.size} rows")
    return result
