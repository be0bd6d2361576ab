"""Task functions of the training DAG: validate → fingerprint → (skip?) → [train] → evaluate → register."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from include.config import get_model_config, resolve_uri
from include.governance import lineage
from modelops.assets import challenger_asset
from modelops.context import actor, ids
from modelops.mlflow_hook import MlflowHook

log = logging.getLogger(__name__)

# mlflow, pandas and GX are imported inside the tasks: this module is imported while DAGs are parsed.


@task
def validate(model: str, dataset_uri: str, **context: Any) -> dict[str, str]:
    """Open (or reuse, on retry) this Airflow run's MLflow run and validate the batch with its GX suite."""
    from include import tracking
    from include.data import checks
    from include.data.dataset import DatasetError
    from include.data.validation import DataValidationError

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
        checks.validate(client, config, uri, run_id, as_of=_as_of(context))
    except (DataValidationError, DatasetError) as exc:
        # Bad data does not get better with a retry: fail for good, the batch is quarantined.
        from include.governance.history import record_validation

        tags = client.get_run(run_id).data.tags
        record_validation(model, passed=False, dataset_uri=uri, mlflow_run_id=run_id, actor=actor(context),
                          reason=str(exc)[:2000], data_fingerprint=tags.get("data_fingerprint"),
                          files_sha256=tags.get("files_sha256"), **keys)
        raise AirflowFailException(f"{uri} rejected and quarantined (MLflow run {run_id}).\n{exc}") from None
    except (FileNotFoundError, ValueError) as exc:
        tracking.close_run(client, run_id, "FAILED", f"failed: cannot read dataset {uri}: {exc}")
        raise AirflowFailException(f"cannot read dataset {uri}: {exc}") from None
    return {"mlflow_run_id": run_id, "dataset_uri": uri}


def _as_of(context: Any) -> datetime:
    """The moment the run stands for: the end of its data interval (its logical date under Airflow 3's
    default cron timetable), else, for a manual or asset-triggered run without one, when it was due."""
    dag_run = context["dag_run"]
    when = (context.get("data_interval_end") or context.get("logical_date")
            or getattr(dag_run, "run_after", None) or datetime.now(UTC))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class CloseRunOnFailure:
    """Task ``on_failure_callback`` of the training DAG: the run's MLflow run ends FAILED, with why.

    The MLflow run is found by its Airflow ids (it may not have been handed on yet). A run already
    closed as FAILED or KILLED (a quarantined batch, a skip) is left as it is.
    """

    def __init__(self, model: str) -> None:
        self.model = model

    def __call__(self, context: Any) -> None:
        from include import tracking

        config = get_model_config(self.model)
        client = MlflowHook().client
        keys = ids(context)
        run_id = tracking.find_run(client, config.experiment_name,
                                   {"airflow.dag_id": keys["dag_id"], "airflow.run_id": keys["run_id"]})
        if run_id is None:
            return
        task_id = context["ti"].task_id
        error = context.get("exception")
        reason = f"failed in task {task_id}: {type(error).__name__}: {error}" if error else f"failed in task {task_id}"
        tracking.close_run(client, run_id, "FAILED", reason, only_if=("RUNNING", "FINISHED", "SCHEDULED"))


@task
def fingerprint(model: str, batch: dict[str, str], **context: Any) -> dict[str, str]:
    """Full-content hash and schema hash of the validated batch, plus this training's idempotency key.

    The passed validation goes into the audit ledger under the fingerprint (promotion checks it there).
    """
    from include.data import checks
    from include.governance.history import record_validation

    config = get_model_config(model)
    result = checks.fingerprint(MlflowHook().client, config, batch["dataset_uri"], batch["mlflow_run_id"])
    record_validation(model, passed=True, dataset_uri=batch["dataset_uri"], mlflow_run_id=batch["mlflow_run_id"],
                      actor=actor(context), data_fingerprint=result["data_fingerprint"],
                      schema_hash=result.get("schema_hash"), **ids(context))
    key = lineage.model_idempotency_key(config, data_fingerprint=result["data_fingerprint"],
                                        commit=lineage.code_commit())
    return {**batch, **result, "idempotency_key": key}


@task.short_circuit
def needs_training(model: str, batch: dict[str, str], **context: Any) -> bool:
    """False (skip the rest) when a version was already trained from the same data, code and params.

    The run's ``force`` param retrains anyway. A skipped run that an alert started (its ``alert`` param
    is set: the drift webhook, monitoring) also warns the model's Slack channel, or the log without a
    connection (:func:`modelops.notify.retraining_skipped`): which alert, which data, which version, and
    how to point the alert at new data. A manual or scheduled run that skips posts nothing.
    """
    force = bool(context["params"].get("force"))
    hook = MlflowHook()
    client = hook.client
    existing = lineage.find_version_with_key(client, model, batch["idempotency_key"])
    if existing is None or force:
        if existing is not None:
            log.info("Version %s has the same idempotency key, retraining anyway (force=true)", existing.version)
        return True
    log.info(
        "Skipping retraining: %s version %s was already trained from the same data (%s), code commit %s and params",
        model, existing.version, batch["data_fingerprint"], lineage.code_commit(),
    )
    from include import tracking

    tracking.close_run(client, batch["mlflow_run_id"], "KILLED",
                       f"skipped: version {existing.version} was trained from the same data, code and params")
    trigger = context["params"].get("alert")
    if trigger:
        from modelops.notify import retraining_skipped

        retraining_skipped(
            model, trigger=trigger, version=str(existing.version), dataset_uri=batch["dataset_uri"],
            data_fingerprint=batch["data_fingerprint"], trained_from=(existing.tags or {}).get("dataset_uri"),
            tracking_uri=hook.tracking_uri, **ids(context),
        )
    return False


@task
def evaluate(model: str, batch: dict[str, str]) -> dict[str, float]:
    """Holdout metrics and plots, logged to the training run."""
    from include.training.evaluate import evaluate_run

    config = get_model_config(model)
    try:
        return evaluate_run(MlflowHook().client, config, batch["dataset_uri"], batch["mlflow_run_id"])
    except ValueError as exc:  # the data or the model cannot be evaluated: a retry gives the same answer
        raise AirflowFailException(f"cannot evaluate run {batch['mlflow_run_id']}: {exc}") from None


@task
def register(model: str, batch: dict[str, str], metrics: dict[str, float], **context: Any) -> str:
    """Register the trained model as a version with its lineage tags and point ``challenger`` at it."""
    from include.promotion import registry
    from include.training.train import MODEL_URI_TAG

    config = get_model_config(model)
    client = MlflowHook().client
    keys = ids(context)
    run = client.get_run(batch["mlflow_run_id"])
    tags = lineage.version_tags(
        config, dataset_uri=batch["dataset_uri"], data_fingerprint=batch["data_fingerprint"],
        schema_hash=batch["schema_hash"], key=batch["idempotency_key"], run_tags=run.data.tags, metrics=metrics,
        airflow_ids=keys,
    )
    from include.evaluation.evidence import version_tags

    tags.update(version_tags(run.data.tags))  # shap.top_features, calibration.method: on the version from the start
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
    from include import tracking

    tracking.close_run(client, run.info.run_id, "FINISHED", f"registered as version {number}")
    context["outlet_events"][challenger_asset(model)].extra = {
        "model": model, "version": number, "run_id": run.info.run_id, "dag_run_id": keys["run_id"]}
    return number
