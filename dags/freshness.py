"""
### Freshness — one DAG per model in `config/models/`, daily

Is the live model trained on data recent enough? Daily when the model sets `training.max_age_days`
(otherwise on demand only: a manual run still reports the age).

1. **check**: how old the `@champion`'s training data is as of the run's date: the newest
   `dataset.timestamp_column` value of the data it was trained on, when the version's `dataset_uri`
   still holds that data (same `data_fingerprint`); else the start of its training run (a lower bound
   of the age: the data cannot be newer than the training). Stale: older than `training.max_age_days`.
   For a stale champion it also reads the latest data (`dataset.uri`) and decides whether to propose
   a retraining on it. It does not when the latest data cannot be read, is the champion's own data,
   or already has a version trained on it (the training would skip itself), when a proposed run is
   still queued or running, or within 7 days of the last proposal.
2. **route**: fresh, no champion or `dry_run` → done; stale → **notify**, after proposing when there is
   something to propose.
3. **propose**: the `retrain_proposed` record in the audit ledger (once per model, champion and day),
   then **trigger_retrain** starts `train_<model>` (run `freshness__<day>__v<champion>`) on the latest
   data, with an `alert` saying why. It is an ordinary training run: its version becomes `@challenger`
   and the promotion DAG's gates (and approval, when configured) decide. Nothing here moves an alias.
4. **notify**: a warning to the model's Slack channel (`alerts:`), or the log: the age, how it was
   measured, the threshold, and the proposed run or why none was proposed. Once per champion and day;
   recorded as `stale_champion` in the audit ledger.

`dry_run` only reports, in the task log: nothing is sent, recorded or started.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag

from include.dag_ids import Stage, dag_id
from modelops.dags import dag_args, register_per_model
from modelops.training import freshness_tasks as t


def build(config):
    @dag(
        dag_id=dag_id(Stage.FRESHNESS, config.name),
        description=f"Daily: is {config.name}'s champion trained on data older than training.max_age_days? Warn and propose retraining",
        doc_md=__doc__,
        schedule="@daily" if config.training.max_age_days is not None else None,
        **dag_args(config, "training", "freshness"),
        params={t.DRY_RUN_PARAM: Param(False, type="boolean",
                                       description="Only report the age and what would be proposed; send, record and start nothing")},
    )
    def freshness():
        checked = t.check(config.name)
        proposal = t.propose(config.name, checked)
        retrain = TriggerDagRunOperator(
            task_id=t.RETRAIN_TASK, trigger_dag_id=dag_id(Stage.TRAIN, config.name),
            trigger_run_id=proposal["run_id"], conf=proposal["conf"], skip_when_already_exists=True,
        )
        notified = t.notify(config.name, checked)

        # main flow
        t.route(checked) >> [proposal, notified]
        proposal >> retrain >> notified

    return freshness()


register_per_model(globals(), build)
