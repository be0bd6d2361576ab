"""
### Monitor — one DAG per model in `config/models/`, every hour

Is the live model still healthy? Each run assesses its data interval (an hour) of the inference log.

1. **assess**: data drift of the hour's inputs against the serving version's training profile
   (Evidently's tests and thresholds; the HTML report goes to the model's monitoring run in MLflow),
   business KPIs of its predictions joined to the outcomes that have arrived, against the version's
   baseline; metrics per hour on the monitoring run. No drift alerts during the cold start after a
   deployment; a condition that already fired is not repeated within the cooldown unless it worsened.
2. **route** by tier:
   - *warning* (drift above its warning threshold, or a KPI drop) → **notify** (Slack, else the log);
   - *critical* (drift above the critical threshold **and** a KPI drop) → **trigger_rollback**
     (the rollback DAG) and **trigger_retrain** (the training DAG), then **notify** says what was done.

Thresholds, KPIs, cold start and cooldown live in the model's `monitoring:` config. Every alert is an
audit record on the model version.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import CronDataIntervalTimetable, dag

from modelops.dags import dag_args, register_per_model
from modelops.tasks import monitoring as t


def build(config):
    schedule = config.monitoring.schedule

    @dag(
        dag_id=f"monitor_{config.name}",
        description=f"Hourly drift and KPI checks of {config.name}; warn, or roll back and retrain",
        doc_md=__doc__,
        # Data intervals, so each run covers the hour before it and a re-run or back-fill is exact.
        schedule=CronDataIntervalTimetable(schedule, timezone="UTC") if schedule else None,
        **dag_args(config, "monitoring"),
    )
    def monitor():
        assessed = t.assess(config.name)
        rollback = TriggerDagRunOperator(
            task_id=t.ROLLBACK_TASK, trigger_dag_id=f"rollback_{config.name}",
            trigger_run_id=t.triggered_run_id("{{ run_id }}"), conf=assessed["rollback_conf"],
            skip_when_already_exists=True,
        )
        retrain = TriggerDagRunOperator(
            task_id=t.RETRAIN_TASK, trigger_dag_id=f"train_{config.name}",
            trigger_run_id=t.triggered_run_id("{{ run_id }}"), conf=assessed["retrain_conf"],
            skip_when_already_exists=True,
        )
        notified = t.notify(config.name, assessed)

        # main flow
        t.route(assessed) >> [rollback, retrain, notified]
        [rollback, retrain] >> notified

    return monitor()


register_per_model(globals(), build)
