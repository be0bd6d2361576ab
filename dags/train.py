"""
### Train — one DAG per model in `config/models/`

Validated, fingerprinted data → a trained model in MLflow → a new version with alias `@challenger`.

1. **validate** the batch at `dataset_uri`: read with the declared column types, then the model's Great
   Expectations suite plus the checks derived from the config (finite, plausible numbers; timestamps not
   after the run's logical date; the target's classes, enough rows of each on both sides of the split).
   A refused batch is quarantined (its MLflow run is FAILED and tagged `quarantine=rejected` with the
   reason and its fingerprint), the task fails without retries and nothing downstream runs.
2. **fingerprint** every row (a full-content SHA-256, unlike MLflow's 10,000-row digest) and the schema.
3. **needs_training** skips the rest when a version was already trained from the same data, code and params.
4. **train** with the configured backend: a local process, or a Kubernetes pod.
5. **evaluate** on the held-out split; metrics and plots go to the MLflow run.
6. **register** the version with its lineage tags, alias `@challenger`; the asset event starts promotion.

The MLflow run always ends: FINISHED when a version is registered, KILLED when training is skipped,
FAILED (with the task and the error in `modelops.outcome`) when any step fails for good.

Trigger with a `dataset_uri` from the UI, the REST API or a drift webhook.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from include.dag_ids import Stage, dag_id
from modelops.assets import challenger_asset
from modelops.dags import dag_args, register_per_model
from modelops.training import tasks as t
from modelops.training.operators import training_operator


def build(config):
    @dag(
        dag_id=dag_id(Stage.TRAIN, config.name),
        description=f"Train {config.name}: validate, fingerprint, train, evaluate, register",
        doc_md=__doc__,
        schedule=config.training.schedule,
        **dag_args(config, "training", on_task_failure=t.CloseRunOnFailure(config.name)),
        params={
            "dataset_uri": Param(config.dataset.uri, type="string", minLength=1, description="Dataset to train on (file, parquet folder, or URI). The default is the model's dataset.uri: keep it on the feature pipeline's latest snapshot. A drift alert sets it with its dataset_uri. Data already trained on (same code and params) skips training"),
            "force": Param(False, type="boolean", description="Retrain even if a version exists for the same data, code and params"),
            "alert": Param(None, type=["null", "object"], description="The alert that started this run (set by the drift webhook and by monitoring; empty otherwise). When such a run skips because its data was already trained on, the model's Slack channel is told"),
        },
    )
    def training():
        batch = t.validate(config.name, "{{ params.dataset_uri }}")
        fingerprinted = t.fingerprint(config.name, batch)
        trained = training_operator(
            config,
            task_id="train",
            dataset_uri=fingerprinted["dataset_uri"],
            mlflow_run_id=fingerprinted["mlflow_run_id"],
            expected_fingerprint=fingerprinted["data_fingerprint"],
            execution_timeout=timedelta(minutes=config.training.timeout_minutes),
        )
        metrics = t.evaluate(config.name, fingerprinted)
        registered = t.register.override(outlets=[challenger_asset(config.name)])(config.name, fingerprinted, metrics)

        # main flow
        t.needs_training(config.name, fingerprinted) >> trained >> metrics >> registered

    return training()


register_per_model(globals(), build)
