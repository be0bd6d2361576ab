"""Task functions of the training DAG: validate → fingerprint → (skip?) → [train] → evaluate → register."""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from include import lineage
from include.config import get_model_config, resolve_uri
from include.gates import COMPLIANCE_PREFIX
from modelops.assets import challenger_asset
from modelops.hooks.mlflow import MlflowHook
from modelops.tasks._context import actor, ids

log = logging.getLogger(__name__)

# mlflow, pandas and GX are imported inside the tasks: this module is imported while DAGs are parsed.


@task
def validate(model: str, dataset_uri: str, **context: Any) -> dict[str, str]:
    """Open (or reuse, on retry) this Airflow run's MLflow run and validate the batch with its GX suite."""
    from include import data_checks, tracking
    from include.validation import DataValidationError

    config = get_model_config(model)
    client = MlflowHook().client
    keys = ids(context)
    run_id = tracking.upsert_run(
        client,
        config.experiment_name,
        {"airflow.dag_id": keys["dag_id"], "airflow.run_id": keys["run_id"]},
        run_name=keys["run_id"],
    )
    uri = resolve_uri(dataset_uri)
    try:
        data_checks.validate(client, config, uri, run_id)
    except DataValidationError as exc:
        raise AirflowFailException(f"{uri} rejected and quarantined (MLflow run {run_id}).\n{exc}") from None
    except (FileNotFoundError, ValueError) as exc:
        raise AirflowFailException(f"cannot read dataset {uri}: {exc}") from None
    return {"mlflow_run_id": run_id, "dataset_uri": uri}


@task
def fingerprint(model: str, batch: dict[str, str]) -> dict[str, str]:
    """Full-content hash and schema hash of the validated batch, plus the key that identifies this training."""
    from include import data_checks

    config = get_model_config(model)
    result = data_checks.fingerprint(MlflowHook().client, config, batch["dataset_uri"], batch["mlflow_run_id"])
    key = lineage.training_key(
        data_fingerprint=result["data_fingerprint"],
        commit=lineage.code_commit(),
        estimator=config.model.estimator,
        # everything in the config that changes the fitted model, not just the estimator's params
        params={"model": config.model.model_dump(), "columns": config.dataset.column_types,
                "target": config.dataset.target.name},
    )
    return {**batch, **result, "training_key": key}


@task.short_circuit
def needs_training(model: str, batch: dict[str, str], **context: Any) -> bool:
    """False (skip the rest) when a version was already trained from the same data, code and params.

    The run's ``force`` param retrains anyway.
    """
    from include import registry

    force = bool(context["params"].get("force"))
    client = MlflowHook().client
    existing = registry.find_version_by_tag(client, model, "training_key", batch["training_key"])
    if existing is None or force:
        if existing is not None:
            log.info("Version %s has the same training key, retraining anyway (force=true)", existing.version)
        return True
    log.info(
        "Skipping retraining: %s version %s was already trained from the same data (%s), code commit %s and params",
        model, existing.version, batch["data_fingerprint"], lineage.code_commit(),
    )
    client.set_tag(batch["mlflow_run_id"], "modelops.outcome", f"skipped: same as version {existing.version}")
    return False


@task
def evaluate(model: str, batch: dict[str, str]) -> dict[str, float]:
    """Holdout metrics and plots, logged to the training run."""
    from include.evaluate import evaluate_run

    config = get_model_config(model)
    return evaluate_run(MlflowHook().client, config, batch["dataset_uri"], batch["mlflow_run_id"])


@task
def register(model: str, batch: dict[str, str], metrics: dict[str, float], **context: Any) -> str:
    """Register the trained model as a version with its lineage tags and point ``challenger`` at it."""
    from include import registry
    from include.train import MODEL_URI_TAG

    config = get_model_config(model)
    client = MlflowHook().client
    keys = ids(context)
    run = client.get_run(batch["mlflow_run_id"])
    tags = {
        "data_fingerprint": batch["data_fingerprint"],
        "schema_hash": batch["schema_hash"],
        "dataset_uri": batch["dataset_uri"],
        "training_key": batch["training_key"],
        "code_commit": run.data.tags.get("code_commit", "unknown"),
        "dependency_hash": run.data.tags.get("dependency_hash", "unknown"),
        "training_backend": run.data.tags.get("training_backend", config.training.backend),
        "estimator": config.model.estimator,
        "params": json.dumps(config.model.params, sort_keys=True),
        f"metric.{config.gates.primary_metric}": f"{metrics[config.gates.primary_metric]:.6f}",
        **{f"{COMPLIANCE_PREFIX}{k}": v for k, v in config.compliance.labels.items()},
        **{f"airflow.{k}": v for k, v in keys.items()},
    }
    version = registry.register_challenger(
        client,
        name=config.registered_model_name,
        description=config.description,
        model_uri=run.data.tags[MODEL_URI_TAG],
        run_id=run.info.run_id,
        tags=tags,
        actor=actor(context),
        dag_id=keys["dag_id"],
        airflow_run_id=keys["run_id"],
    )
    number = str(version.version)
    client.set_tag(run.info.run_id, "modelops.outcome", f"registered as version {number}")
    context["outlet_events"][challenger_asset(model)].extra = {"version": number, "run_id": run.info.run_id}
    return number
