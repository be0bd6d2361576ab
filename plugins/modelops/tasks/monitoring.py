"""Task functions of the hourly monitoring DAG: assess the hour, then warn or roll back and retrain.

``assess`` does the measuring and deciding (:mod:`include.monitoring`) and returns a plain dict;
``route`` picks the tier's path; ``notify`` sends what is due to Slack (or the log), then records
it (cooldown state and audit record), so a failed delivery is retried and never marked as sent.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import task

from include.config import get_model_config
from modelops.hooks.mlflow import MlflowHook
from modelops.tasks._context import actor, ids

log = logging.getLogger(__name__)

ROLLBACK_TASK = "trigger_rollback"
RETRAIN_TASK = "trigger_retrain"
NOTIFY_TASK = "notify"


def triggered_run_id(monitor_run_id: str) -> str:
    """The run id of the rollback / retraining runs a monitoring run starts (one per monitoring run)."""
    return f"monitor__{monitor_run_id}"


def _window(context: dict[str, Any]):
    """The hour(s) to assess: the run's data interval (the previous hour for a zero-length one)."""
    import pandas as pd

    start = pd.Timestamp(context["data_interval_start"] or context["logical_date"]).tz_convert("UTC")
    end = pd.Timestamp(context["data_interval_end"] or start).tz_convert("UTC")
    if end <= start:
        start, end = end.floor("h") - pd.Timedelta(hours=1), end.floor("h")
    return start, end


@task
def assess(model: str, **context: Any) -> dict:
    """Drift, KPIs, tier and what is due after the cooldown, for the run's hour; metrics and report to MLflow."""
    import tempfile
    from dataclasses import asdict
    from pathlib import Path

    from include import drift, inference_log, monitoring
    from include.registry import CHAMPION, PREVIOUS_CHAMPION, alias_version

    config = get_model_config(model)
    mon, features = config.monitoring, config.dataset.feature_names
    client = MlflowHook().client
    start, end = _window(context)
    types = {c.name: c.type for c in config.dataset.features}
    frame = inference_log.read_range(model, start, end, features=types)
    champion = alias_version(client, model, CHAMPION)
    served = frame["model_version"].mode()
    version = str(served.iloc[0]) if len(served) else (str(champion.version) if champion else None)
    run_id = monitoring.monitoring_run(client, config)
    result = {"monitoring_run_id": run_id, "action": "none", "fired": [], "report_path": None, "report_uri": None}

    if len(frame) < mon.min_rows or version is None:
        assessment = monitoring.HourAssessment(
            model, version, start.isoformat(), len(frame), "skipped",
            f"{len(frame)} predictions between {start} and {end}, fewer than monitoring.min_rows={mon.min_rows}",
        )
        monitoring.log_hour(client, run_id, assessment, frame["latency_ms"])
        log.info("%s", assessment.reason)
        return {**result, "assessment": assessment.as_dict()}

    frame = _join_outcomes(config, frame, start, end)
    version_run = client.get_model_version(model, version).run_id
    profile = drift.load_profile(client, version_run)
    report = drift.detect_drift(profile, frame[features], drift_share=mon.drift.drift_share)
    deployed = monitoring.deployed_at(client, model, version)
    baseline, source = monitoring.kpi_baseline(client, config, version, deployed, start, run_id)
    assessment = monitoring.assess(config, hour=start, frame=frame, version=version, drift_report=report,
                                   deployed_at=deployed, baseline=baseline, baseline_source=source)
    monitoring.log_hour(client, run_id, assessment, frame["latency_ms"])
    with tempfile.TemporaryDirectory() as tmp:
        html = drift.evidently_report(profile, frame[features], Path(tmp) / "data_drift.html",
                                      sample_rows=mon.report_sample_rows, drift_share=mon.drift.drift_share)
        folder = f"reports/{start:%Y-%m-%d}/{start:%H}00"
        client.log_artifact(run_id, str(html), folder)
    result["report_path"] = f"{folder}/{html.name}"
    result["report_uri"] = f"{client.get_run(run_id).info.artifact_uri}/{result['report_path']}"

    fired = monitoring.due(assessment, monitoring.alert_state(client, run_id), mon.cooldown_hours)
    log.info("%s v%s %s: %s (%d rows; %d finding(s) due)", model, version, start, assessment.level.upper(),
             assessment.rows, len(fired))
    previous = alias_version(client, model, PREVIOUS_CHAMPION)
    can_roll_back = (champion is not None and str(champion.version) == version
                     and previous is not None and str(previous.version) != version)
    critical = any(f.name == monitoring.CRITICAL for f in fired)
    reason = f"monitoring {start:%Y-%m-%d %H}:00 UTC: {assessment.reason}"
    return {
        **result,
        "assessment": assessment.as_dict(),
        "fired": [asdict(f) for f in fired],
        "action": "critical" if critical else "warning" if fired else "none",
        "can_roll_back": can_roll_back,
        "rollback_conf": {"target_version": None, "reason": reason[:1000]},
        "retrain_conf": {"alert": {"source": "monitoring", "model": model, "version": version,
                                   "hour": start.isoformat(), "reason": reason[:1000],
                                   "monitor_run_id": context["run_id"]}},
    }


def _join_outcomes(config, frame, start, end):
    """The hour's predictions with the target and outcome columns of the outcomes that have arrived."""
    import pandas as pd

    from include import outcomes

    mon = config.monitoring
    columns = [config.dataset.target.name, *([config.dataset.outcome.name] if config.dataset.outcome else [])]
    if mon.outcomes_uri is None:
        return frame.assign(**{c: float("nan") for c in columns})
    from include.config import resolve_uri

    until = min(pd.Timestamp.now(tz="UTC"), end + pd.Timedelta(days=mon.outcome_delay_days))
    arrived = outcomes.read_outcomes(resolve_uri(mon.outcomes_uri), start, max(until, start), columns=columns)
    joined = frame.merge(arrived[[outcomes.REQUEST_ID, *columns]], on="request_id", how="left")
    log.info("%d of %d predictions have their outcome", int(joined[columns[0]].notna().sum()), len(joined))
    return joined


@task.branch
def route(assessed: dict) -> list[str]:
    """critical → roll back (when there is a version to go back to) and retrain, then notify;
    warning → notify; nothing due → done."""
    if assessed["action"] == "critical":
        return [*([ROLLBACK_TASK] if assessed["can_roll_back"] else []), RETRAIN_TASK, NOTIFY_TASK]
    return [NOTIFY_TASK] if assessed["action"] == "warning" else []


@task(trigger_rule="none_failed_min_one_success")
def notify(model: str, assessed: dict, **context: Any) -> str:
    """Send the due findings (Slack, or the log without a connection), then record them as fired."""
    from include import alerts, monitoring
    from modelops.notify import notify as send

    config = get_model_config(model)
    client = MlflowHook().client
    assessment = monitoring.HourAssessment(**{
        **assessed["assessment"], "findings": [monitoring.Finding(**f) for f in assessed["assessment"]["findings"]]
    })
    fired = [monitoring.Finding(**f) for f in assessed["fired"]]
    keys = ids(context)
    actions = []
    if assessed["action"] == "critical":
        run = triggered_run_id(keys["run_id"])
        actions.append(f"rollback started: rollback_{model} run {run}" if assessed["can_roll_back"]
                       else "no rollback: no previous champion to roll back to")
        actions.append(f"retraining started: train_{model} run {run}")
    alert = alerts.Alert(
        level=assessment.level, model=model, version=assessment.version,
        title=f"{model} v{assessment.version}: {assessment.level} for {assessment.hour[:13]}:00 UTC",
        conditions=tuple(alerts.Condition(f.name, f.value, f.threshold, f.detail) for f in fired),
        actions=tuple(actions), links=_links(client, model, assessment.version, assessed, context),
    )
    channel = send(alert, conn_id=config.alerts.slack_conn_id, channel=config.alerts.channel)
    monitoring.record_fired(client, assessed["monitoring_run_id"], assessment, fired)
    monitoring.audit_alert(client, assessment, fired, actions, actor(context), keys["dag_id"], keys["run_id"])
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
