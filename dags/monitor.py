"""
### Monitor — one DAG per model in `config/models/`, every hour

Is the live model still healthy? Each run assesses one hour of the inference log.

**Which hour.** A scheduled run assesses its data interval (the hour before it), so a re-run or a
back-fill assesses exactly the same rows. A manual run assesses the hour its **`hour`** param names
(e.g. `2026-11-05T10:00:00Z`; UTC without an offset), or, left empty, the last hour that ended before
it was triggered. Trigger manual runs with no logical date (REST: `"logical_date": null`,
`"conf": {"hour": "..."}`): a manual run given a logical date on the hour takes the logical date of
that hour's scheduled run, which then cannot be created (the log says so, and the next run reports the
hour as unassessed). Re-assessing an hour is allowed: an alert already sent is not repeated within the
cooldown.

1. **assess**: data drift of the hour's inputs against the serving version's training profile
   (Evidently's tests and thresholds; the HTML report goes to the model's monitoring run in MLflow),
   business KPIs of its predictions joined to the outcomes that have arrived, against the version's
   baseline; metrics per hour on the monitoring run. No drift alerts during the cold start after a
   deployment; a condition that already fired is not repeated within the cooldown unless it worsened.
   - **Data quality**: nothing in the hour's data fails the run or loses the hour. An empty hour
     (when traffic was expected), unreadable log or outcome files, missing, wrongly typed, all-null,
     infinite or suspiciously constant features, invalid predictions (missing, NaN, infinite or
     outside [0, 1]) and a version without a reference profile are warnings named
     `data_quality.<kind>[.<column>]`, and the rest of the hour is still assessed.
   - **Unassessed hours**: each run (not a back-fill) reports the hours between the last hour assessed
     before its own and its own that no run assessed (`data_quality.unassessed_hours`, a warning and a
     metric, at most a week of them), naming them and the manual run that assesses one.
   - **Personal data**: the hour's inputs are screened for card numbers, IBANs, national
     identifiers, e-mail addresses and phone numbers (`compliance.screening`); an hour holding any is a
     `personal_data` finding at `inference_tier` (warning by default) with the column and the count,
     never the values, and no Evidently report is written for it. Critical here alerts but neither
     rolls back nor retrains: the inputs come from upstream, any version would receive them.
2. **route** by tier:
   - *warning* (drift above its warning threshold, a KPI drop, or a data-quality finding) → **notify**
     (Slack, else the log);
   - *critical* (drift above the critical threshold **and** a KPI drop, or invalid predictions in at
     least `invalid_predictions_critical` of the hour's rows: the served version is broken, cold start
     or not) → **trigger_rollback** (the rollback DAG) and **trigger_retrain** (the training DAG),
     then **notify** says what was done.

Thresholds, KPIs, cold start, cooldown and data-quality shares live in the model's `monitoring:`
config. Every alert, with the actions it caused, is a record in the audit ledger.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import CronDataIntervalTimetable, dag

from include.dag_ids import Stage, dag_id
from modelops.dags import dag_args, register_per_model
from modelops.monitoring import tasks as t


def build(config):
    schedule = config.monitoring.schedule

    @dag(
        dag_id=dag_id(Stage.MONITOR, config.name),
        description=f"Hourly drift and KPI checks of {config.name}; warn, or roll back and retrain",
        doc_md=__doc__,
        # Data intervals, so each run covers the hour before it and a re-run or back-fill is exact.
        schedule=CronDataIntervalTimetable(schedule, timezone="UTC") if schedule else None,
        params={t.HOUR_PARAM: t.hour_param()},  # the hour a manual run assesses
        **dag_args(config, "monitoring"),
    )
    def monitor():
        assessed = t.assess(config.name)
        rollback = TriggerDagRunOperator(
            task_id=t.ROLLBACK_TASK, trigger_dag_id=dag_id(Stage.ROLLBACK, config.name),
            trigger_run_id=t.triggered_run_id("{{ run_id }}"), conf=assessed["rollback_conf"],
            skip_when_already_exists=True,
        )
        retrain = TriggerDagRunOperator(
            task_id=t.RETRAIN_TASK, trigger_dag_id=dag_id(Stage.TRAIN, config.name),
            trigger_run_id=t.triggered_run_id("{{ run_id }}"), conf=assessed["retrain_conf"],
            skip_when_already_exists=True,
        )
        notified = t.notify(config.name, assessed)

        # main flow
        t.route(assessed) >> [rollback, retrain, notified]
        [rollback, retrain] >> notified

    return monitor()


register_per_model(globals(), build)
