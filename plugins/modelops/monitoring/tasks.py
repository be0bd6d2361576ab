"""Task functions of the hourly monitoring DAG: assess the hour, then warn or roll back and retrain.

``assess`` picks the run's hour (:func:`include.monitoring.windows.run_window`: a scheduled run its data
interval, a manual run its ``hour`` param, else the last complete hour), has it measured and decided
(:func:`include.monitoring.hourly.assess_window`; what is wrong with the hour's data, and the hours
before it that no run assessed, are findings there, not a failed task), keeps what is due after the
cooldown and what to do about it (:mod:`include.monitoring.response`), and returns a plain dict;
``route`` picks the tier's path; ``notify`` sends what is due to Slack (or the log), then records
it (cooldown state and audit record), so a failed delivery is retried and never marked as sent.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Param, task
from airflow.sdk.exceptions import AirflowFailException

from include import dag_ids
from include.config import get_model_config
from modelops.context import actor, ids
from modelops.mlflow_hook import MlflowHook

log = logging.getLogger(__name__)

def _stop_canary(client, config, compared, context: dict) -> None:
    """A canary's hour was critical: take it off live traffic now (the promotion's shadow gate then fails)."""
    from include.serving import shadow
    from modelops.serving.hooks import TritonHook

    hook, keys = TritonHook(), ids(context)
    stopped = shadow.stop(client, hook.client, hook.model_repository, config, actor=actor(context),
                          only_version=compared.version, reason="critical canary hour: " + "; ".join(compared.critical),
                          dag_id=keys["dag_id"], run_id=keys["run_id"])
    log.warning("%s: canary version %s stopped: %s", config.name, stopped, "; ".join(compared.critical))


ROLLBACK_TASK = "trigger_rollback"
RETRAIN_TASK = "trigger_retrain"
NOTIFY_TASK = "notify"


def triggered_run_id(monitor_run_id: str) -> str:
    """The run id of the rollback / retraining runs a monitoring run starts (one per monitoring run)."""
    return f"monitor__{monitor_run_id}"


HOUR_PARAM = "hour"
# An ISO 8601 date-time with a time of day (seconds, fraction and offset optional): refused at trigger time otherwise.
HOUR_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"


def hour_param() -> Param:
    """The ``hour`` param of ``monitor_<model>``: the hour a manual run assesses (the trigger form's field)."""
    return Param(
        None, type=["null", "string"], format="date-time", pattern=HOUR_PATTERN, title="Hour to assess (UTC)",
        description="Manual runs: the hour to assess, e.g. 2026-11-05T10:00:00Z (any time within it names it; "
                    "without an offset it is UTC). Empty: the last hour that ended before the run was triggered. "
                    "It may be an hour already assessed (re-assessment: an alert already sent is not repeated "
                    "within the cooldown). Trigger with no logical date. Scheduled runs assess their own hour.",
    )


def _window(context: dict[str, Any]):
    """The run's window (:func:`include.monitoring.windows.run_window`) from its type, dates and ``hour`` param.

    A run without a data interval (a manual one without a logical date) has no ``data_interval_*`` in
    its context: the dates are read from the ``dag_run``. The hour is read from the run's conf (what
    the trigger form or the REST body set; Airflow checked it against :func:`hour_param` when the run
    was created), not from ``params``: in one process running several runs (``dag.test``) a ``Param``
    keeps the value an earlier run's conf gave it. Raises ``AirflowFailException`` (no retry) when the
    hour is not a date-time or names an hour that has not ended.
    """
    from include.monitoring.windows import run_window

    dag_run = context["dag_run"]
    run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
    try:
        return run_window(
            run_type=str(run_type), run_after=dag_run.run_after, hour=(dag_run.conf or {}).get(HOUR_PARAM),
            data_interval=(dag_run.data_interval_start, dag_run.data_interval_end), logical_date=dag_run.logical_date,
        )
    except ValueError as exc:
        raise AirflowFailException(f"{context['dag'].dag_id} run {context['run_id']}: {exc}") from None


def _version(model_version) -> str | None:
    """A registry ``ModelVersion``'s version as text (None for none)."""
    return str(model_version.version) if model_version is not None else None


@task
def assess(model: str, **context: Any) -> dict:
    """Drift, KPIs, data quality, tier and what is due after the cooldown, for the run's hour; metrics and report to MLflow.

    The hour: :func:`_window`. Whatever is wrong with the hour's data, and the hours before it no run
    assessed (not for a back-fill), are findings of the assessment (:func:`include.monitoring.hourly.assess_window`),
    not a failed task. Returns the XCom the other tasks read: ``window`` (start, end, source), the
    assessment, the findings due, the action and the confs of the rollback and retraining runs.
    """
    from dataclasses import asdict

    from include.monitoring import cooldown, response
    from include.monitoring.hourly import assess_window
    from include.promotion.registry import CHAMPION, PREVIOUS_CHAMPION, alias_version

    config = get_model_config(model)
    window = _window(context)
    for warning in window.warnings:
        log.warning("%s", warning)
    start, end = window.start, window.end
    log.info("%s: assessing %s to %s (%s)", model, start, end, window.source)
    client = MlflowHook().client
    champion = _version(alias_version(client, model, CHAMPION))
    hour = assess_window(client, config, start, end, champion=champion, check_gaps=window.check_gaps)
    assessed, version = hour.assessment, hour.assessment.version
    if hour.challenger is not None and hour.challenger.critical:
        _stop_canary(client, config, hour.challenger, context)

    fired = cooldown.due(assessed, cooldown.alert_state(client, hour.monitoring_run_id),
                         config.monitoring.cooldown_hours)
    log.info("%s v%s %s: %s (%d rows; %d finding(s) due): %s", model, version, start, assessed.level.upper(),
             assessed.rows, len(fired), assessed.reason)
    previous = _version(alias_version(client, model, PREVIOUS_CHAMPION))
    reason = f"monitoring {start:%Y-%m-%d %H}:00 UTC: {assessed.reason}"
    return {
        "window": {"start": start.isoformat(), "end": end.isoformat(), "source": window.source},
        "monitoring_run_id": hour.monitoring_run_id,
        "report_path": hour.report_path,
        "report_uri": hour.report_uri,
        "assessment": assessed.as_dict(),
        "fired": [asdict(f) for f in fired],
        "action": response.action(fired),
        "can_roll_back": response.can_roll_back(version, champion, previous),
        "rollback_conf": {"target_version": None, "from_version": version, "reason": reason[:1000]},
        "retrain_conf": {"alert": {"source": "monitoring", "model": model, "version": version,
                                   "hour": start.isoformat(), "reason": reason[:1000],
                                   "monitor_run_id": context["run_id"]}},
    }


@task.branch
def route(assessed: dict) -> list[str]:
    """critical → roll back (when there is a version to go back to) and retrain, then notify;
    warning → notify; nothing due → done."""
    from include.monitoring.response import ROLL_BACK_AND_RETRAIN, WARN

    if assessed["action"] == ROLL_BACK_AND_RETRAIN:
        return [*([ROLLBACK_TASK] if assessed["can_roll_back"] else []), RETRAIN_TASK, NOTIFY_TASK]
    return [NOTIFY_TASK] if assessed["action"] == WARN else []


@task(trigger_rule="none_failed_min_one_success")
def notify(model: str, assessed: dict, **context: Any) -> str:
    """Send the due findings (Slack, or the log without a connection), then record them as fired."""
    from include.monitoring import cooldown
    from include.monitoring.alerts import Alert
    from include.monitoring.assessment import HourAssessment
    from include.monitoring.findings import Finding
    from include.monitoring.response import ROLL_BACK_AND_RETRAIN
    from modelops.notify import notify as send

    config = get_model_config(model)
    client = MlflowHook().client
    assessment = HourAssessment.from_dict(assessed["assessment"])
    fired = [Finding(**f) for f in assessed["fired"]]
    keys = ids(context)
    actions = []
    if assessed["action"] == ROLL_BACK_AND_RETRAIN:
        run = triggered_run_id(keys["run_id"])
        actions.append(f"rollback started: {dag_ids.dag_id(dag_ids.Stage.ROLLBACK, model)} run {run}" if assessed["can_roll_back"]
                       else "no rollback: no previous champion to roll back to")
        actions.append(f"retraining started: {dag_ids.dag_id(dag_ids.Stage.TRAIN, model)} run {run}")
    alert = Alert(
        level=assessment.level, model=model, version=assessment.version,
        title=(f"{model}{f' v{assessment.version}' if assessment.version else ''}: {assessment.level} "
               f"for {assessment.hour[:13]}:00 UTC"),
        findings=tuple(fired),
        summary=" ".join(assessment.notes),
        actions=tuple(actions), links=_links(client, model, assessment.version, assessed, context),
    )
    channel = send(alert, conn_id=config.alerts.slack_conn_id, channel=config.alerts.channel)
    cooldown.record_fired(client, assessed["monitoring_run_id"], assessment, fired)
    cooldown.audit_alert(client, assessment, fired, actions, actor(context), keys["dag_id"], keys["run_id"])
    return channel


def _links(client, model: str, version: str | None, assessed: dict, context: dict[str, Any]) -> dict[str, str]:
    from urllib.parse import urlencode

    from include import tracking
    from modelops.notify import airflow_url

    keys = ids(context)
    links = {"Airflow run": airflow_url(keys["dag_id"], keys["run_id"])}
    uri = tracking.tracking_uri()
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        if version:
            links["MLflow version"] = f"{base}/#/models/{model}/versions/{version}"
        run = client.get_run(assessed["monitoring_run_id"]).info
        links["Monitoring run"] = f"{base}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
        if assessed.get("report_path"):  # the tracking server serves the HTML itself
            query = urlencode({"path": assessed["report_path"], "run_uuid": run.run_id})
            links["Evidently report"] = f"{base}/get-artifact?{query}"
    elif assessed.get("report_uri"):
        links["Evidently report"] = assessed["report_uri"]  # a file URI: logged, left out of Slack
    return links
