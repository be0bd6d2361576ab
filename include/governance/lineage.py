"""What a model version was built from, as tags: code commit, dependency lock, data, parameters, idempotency key.

Two tag sets, decided here and nowhere else:

* :func:`training_run_tags`: what the training process records on its MLflow run, where it runs
  (``code_commit``, ``dependency_hash``, ``training_backend``);
* :func:`version_tags`: what a registered version carries: the data it was trained on (``dataset_uri``,
  ``data_fingerprint``, ``schema_hash``), the code and environment (from the run's tags), the model
  (``estimator``, ``params``), the primary metric, the compliance labels, the Airflow run, and the
  idempotency key.

The idempotency key (:func:`model_idempotency_key`) names a training's inputs: the same data, code,
estimator and parameters give the same key, so a retrain whose key a version already carries is skipped
(:func:`find_version_with_key`). Versions registered before the key was called so carry it as
``training_key``: it is still read, and the value is computed as it was.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from include import settings
from include.governance.gates import COMPLIANCE_PREFIX
from include.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from include.config import ModelConfig

IDEMPOTENCY_KEY_TAG = "idempotency_key"
# The same key under the name versions registered before the rename carry: read, never written.
LEGACY_IDEMPOTENCY_KEY_TAGS = ("training_key",)
UNKNOWN = "unknown"
RUN_TAGS = ("code_commit", "dependency_hash", "training_backend")  # what training_run_tags() records


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=1)
def code_commit() -> str:
    """``MODELOPS_CODE_COMMIT`` (set in the image at build time), else ``git rev-parse HEAD``.

    A working tree with uncommitted changes gets a ``-dirty`` suffix, so a skipped retrain never
    hides an unreviewed code change behind a clean commit id.
    """
    if commit := settings.CODE_COMMIT.get():
        return commit
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "include", "dags", "plugins", "config"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN
    return f"{head}-dirty" if dirty else head


@lru_cache(maxsize=1)
def dependency_hash(lock_file: Path = PROJECT_ROOT / "requirements.txt") -> str:
    """Hash of the pinned dependency lock the code runs with."""
    return _sha256(lock_file.read_bytes()) if lock_file.is_file() else UNKNOWN


def params_hash(params: Mapping[str, object]) -> str:
    return _sha256(json.dumps(params, sort_keys=True, default=str).encode())


def idempotency_key(*, data_fingerprint: str, commit: str, estimator: str, params: Mapping[str, object]) -> str:
    """``sha256:<64 hex>`` naming a training's inputs: same key, same model; used to skip redundant retrains.

    The payload is structured (JSON with sorted keys), so the order of ``params`` does not matter and the
    same text in two fields does not collide. The value is unchanged since the key was named
    ``training_key``, so versions tagged then still match.
    """
    payload = {"data": data_fingerprint, "code": commit, "estimator": estimator, "params": dict(params)}
    return _sha256(json.dumps(payload, sort_keys=True, default=str).encode())


def model_idempotency_key(config: ModelConfig, *, data_fingerprint: str, commit: str) -> str:
    """The idempotency key of training ``config``'s model on data with ``data_fingerprint`` at code ``commit``.

    Its parameters are everything in the configuration that changes the fitted model, not just the
    estimator's parameters: the whole ``model`` section, the declared column types and the target.
    The description, gates, batch, monitoring and the like do not change the model and are left out.
    Calibration (``evidence.calibration``) does when it can apply: then it is part of the parameters (a
    config without it keeps the keys it had).
    """
    params = {"model": config.model.model_dump(), "columns": config.dataset.column_types,
              "target": config.dataset.target.name}
    calibration = config.evidence.calibration if config.evidence is not None else None
    if calibration is not None and calibration.method != "none":
        params["calibration"] = calibration.model_dump()
    return idempotency_key(data_fingerprint=data_fingerprint, commit=commit, estimator=config.model.estimator,
                           params=params)


def training_run_tags() -> dict[str, str]:
    """The tags a training process sets on its MLflow run: this code's commit, its dependency lock's
    hash, and where it runs (``MODELOPS_TRAINING_BACKEND``, which the Kubernetes pod sets, else ``local``)."""
    return {
        "code_commit": code_commit(),
        "dependency_hash": dependency_hash(),
        "training_backend": settings.TRAINING_BACKEND.get() or "local",
    }


def version_tags(
    config: ModelConfig,
    *,
    dataset_uri: str,
    data_fingerprint: str,
    schema_hash: str,
    key: str,
    run_tags: Mapping[str, str],
    metrics: Mapping[str, float],
    airflow_ids: Mapping[str, str],
) -> dict[str, str]:
    """The tags a newly registered version of ``config``'s model carries (all strings).

    ``dataset_uri``, ``data_fingerprint`` and ``schema_hash``: the validated training data; ``key``: its
    idempotency key (:func:`model_idempotency_key`), as ``idempotency_key``; ``run_tags``: the training
    run's tags, whose :data:`RUN_TAGS` are copied (``unknown`` when missing; the backend defaults to
    ``config.training.backend``); ``metrics``: the holdout metrics, of which the gates' primary metric
    becomes ``metric.<name>`` (six decimals; KeyError when it is missing); ``airflow_ids``: the Airflow
    run's ids, as ``airflow.<name>``. Also ``estimator``, ``params`` (the estimator's parameters as
    sorted JSON) and each compliance label as ``compliance.<label>``.
    """
    primary = config.gates.primary_metric
    return {
        "data_fingerprint": data_fingerprint,
        "schema_hash": schema_hash,
        "dataset_uri": dataset_uri,
        IDEMPOTENCY_KEY_TAG: key,
        "code_commit": run_tags.get("code_commit", UNKNOWN),
        "dependency_hash": run_tags.get("dependency_hash", UNKNOWN),
        "training_backend": run_tags.get("training_backend", config.training.backend),
        "estimator": config.model.estimator,
        "params": json.dumps(config.model.params, sort_keys=True),
        f"metric.{primary}": f"{metrics[primary]:.6f}",
        **{f"{COMPLIANCE_PREFIX}{k}": v for k, v in config.compliance.labels.items()},
        **{f"airflow.{k}": v for k, v in airflow_ids.items()},
    }


def find_version_with_key(client: MlflowClient, name: str, key: str) -> ModelVersion | None:
    """The newest version of registered model ``name`` trained with idempotency key ``key``, or None.

    Reads the ``idempotency_key`` tag and the legacy ``training_key`` one, so versions registered
    before the rename still match.
    """
    from include.promotion.registry import find_version_by_tag

    found = [find_version_by_tag(client, name, tag, key) for tag in (IDEMPOTENCY_KEY_TAG, *LEGACY_IDEMPOTENCY_KEY_TAGS)]
    return max((v for v in found if v is not None), key=lambda v: int(v.version), default=None)
