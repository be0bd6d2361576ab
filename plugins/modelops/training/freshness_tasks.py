"""Task functions of the daily freshness DAG: check → route → [propose → trigger_retrain] → notify.

``check`` asks :func:`include.training.staleness.assess` whether the champion's training data is older
than ``training.max_age_days`` as of the run's date, and returns the decision as a dict; ``route``
picks what follows (nothing for a fresh champion or a dry run); ``propose`` records the proposal in
the audit ledger (once per model, champion and day) and hands the run's id and conf to the trigger;
``notify`` sends the warning (Slack, else the log), once per day, and records it. The proposed run is
an ordinary ``train_<model>`` run: its version becomes ``@challenger`` and the promotion DAG's gates
decide, as for any other.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import task

from include import dag_ids
from include.config import get_model_config
from modelops.context import actor, ids
from modelops.mlflow_hook import MlflowHook

log = logging.getLogger(__name__)

# include.training.staleness (mlflow, pandas) is imported inside the tasks: this module is imported while
# DAGs are parsed.
CHECK_TASK = "check"
PROPOSE_TASK = "propose"
RETRAIN_TASK = "trigger_retrain"
NOTIFY_TASK = "notify"
DRY_RUN_PARAM = "dry_run"
ACTIVE_STATES = ["queued", "running"]


def _as_of(context: Any) -> datetime:
    """The moment the run stands for: the end of its data interval, else its logical date, else (a manual
    run without one) when it was due."""
    dag_run = context["dag_run"]
    when = (context.get("data_interval_end") or context.get("logical_date")
            or getattr(dag_run, "run_after", None) or datetime.now(UTC))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _dry_run(context: Any) -> bool:
    """The ``dry_run`` param, from the run's conf first (in ``dag.test()``, a ``Param`` may keep an earlier run's value)."""
    conf = context["dag_run"].conf or {}
    return bool(conf[DRY_RUN_PARAM] if DRY_RUN_PARAM in conf else context["params"].get(DRY_RUN_PARAM))


@task
def check(model: str, **context: Any) -> dict:
    """The staleness decision for the run's date (:meth:`include.training.staleness.Decision.as_dict`) plus
    ``dry_run``. Whether an earlier proposed run is still queued or running is asked of Airflow."""
    from include.training import staleness

    config = get_model_config(model)
    train_dag = dag_ids.dag_id(dag_ids.Stage.TRAIN, model)
    ti = context["ti"]

    def run_active(run_id: str) -> bool:
        return ti.get_dr_count(dag_id=train_dag, run_ids=[run_id], states=ACTIVE_STATES) > 0

    decision = staleness.assess(MlflowHook().client, config, as_of=_as_of(context), run_active=run_active)
    dry_run = _dry_run(context)
    log.info("%s%s: %s", model, " (dry run: nothing is sent, recorded or started)" if dry_run else "", decision.reason)
    if decision.age is not None:
        log.info("Age from %s (%s): %s", decision.age.source, decision.age.since.isoformat(), decision.age.note)
    if decision.stale:
        if decision.propose:
            log.info("Proposing %s run %s on %s", decision.proposal["dag_id"], decision.proposal["run_id"],
                     decision.proposal["conf"]["dataset_uri"])
        else:
            log.info("No retraining proposed: %s", decision.why_not)
    return {**decision.as_dict(), DRY_RUN_PARAM: dry_run}


@task.branch
def route(checked: dict) -> list[str]:
    """stale with a proposal → propose, then notify; stale without → notify; fresh, no champion or dry run → done."""
    if checked[DRY_RUN_PARAM] or not checked["stale"]:
        return []
    return [PROPOSE_TASK, NOTIFY_TASK] if checked["propose"] else [NOTIFY_TASK]


@task
def propose(model: str, checked: dict, **context: Any) -> dict:
    """Record the proposal (audit ledger, on the champion; once per model, champion and day) and return the
    run to trigger: ``{"run_id", "conf"}`` as stored (a re-run of the same day gets the first one back)."""
    from include.training import staleness

    keys = ids(context)
    stored = staleness.record_proposal(MlflowHook().client, checked, actor=actor(context), **keys)
    details = stored["details"]
    return {"run_id": details["run_id"], "conf": details["conf"]}


@task(trigger_rule="none_failed_min_one_success")
def notify(model: str, checked: dict, **context: Any) -> str:
    """Warn the model's channel that its champion is stale (Slack, else the log) and what was done; once
    per model, champion and day (a re-run of the day sends nothing twice). Returns where it went, or
    ``"already"``."""
    from include.training import staleness
    from modelops.notify import airflow_url
    from modelops.notify import notify as send

    if staleness.warned_today(checked) is not None:
        log.info("%s v%s: already warned for %s; not sent again", model, checked["champion"], checked["as_of"][:10])
        return "already"
    config = get_model_config(model)
    keys = ids(context)
    proposal = checked.get("proposal")
    if checked["propose"] and proposal:
        actions = [f"retraining proposed: {proposal['dag_id']} run {proposal['run_id']} on "
                   f"{proposal['conf']['dataset_uri']}; its version becomes @challenger and goes through the "
                   "promotion gates"]
        links = {"Airflow run": airflow_url(keys["dag_id"], keys["run_id"]),
                 "Proposed training run": airflow_url(proposal["dag_id"], proposal["run_id"])}
    else:
        actions = [f"no retraining proposed: {checked['why_not']}"]
        links = {"Airflow run": airflow_url(keys["dag_id"], keys["run_id"])}
    alert = staleness.stale_alert(checked, actions=actions, links=links)
    channel = send(alert, conn_id=config.alerts.slack_conn_id, channel=config.alerts.channel)
    staleness.record_warning(MlflowHook().client, checked, actions, actor=actor(context), **keys)
    return channel
