"""Alert delivery: the log always, Slack when a Slack incoming-webhook connection is configured.

The connection (conn type ``slackwebhook``, default id ``slack_default``; per model:
``alerts.slack_conn_id`` in its config) holds the webhook, either as the whole URL in the password or
as host (base URL) + password (the ``T…/B…/…`` token):

    AIRFLOW_CONN_SLACK_DEFAULT='{"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/T…/B…/…"}'

:class:`DagFailureNotifier` is every lifecycle DAG's ``on_failure_callback``, built per model (see
``modelops.dags``); ``retraining_skipped`` tells the model's channel that a run an alert started
retrained nothing. Imported while DAGs are parsed: only ``airflow.sdk`` (which a DAG file imports
anyway) at the top; the Slack provider is imported when something is sent.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from include.monitoring.alerts import Alert, send, slack_message

log = logging.getLogger(__name__)

DELIVERED_TO_SLACK = "slack"
DELIVERED_TO_LOG = "log"
DAG_FAILURE_LEVEL = "warning"
DEFAULT_SLACK_CONN_ID = "slack_default"


def _connection_exists(conn_id: str) -> bool:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def notify(alert: Alert, *, conn_id: str = DEFAULT_SLACK_CONN_ID, channel: str | None = None) -> str:
    """Log ``alert``, then post it to Slack through connection ``conn_id`` if that connection exists.

    Returns ``"slack"`` when Slack accepted it, ``"log"`` when there is no such connection (nothing
    fails). With a connection, a Slack error is logged and raised, so the task retries. ``channel``
    overrides the webhook's channel where Slack allows it (legacy webhooks; app webhooks ignore it).
    """
    send(alert)
    if not _connection_exists(conn_id):
        log.info("No Slack connection %r: the %s alert about %s went to the log only", conn_id, alert.level,
                 alert.model)
        return DELIVERED_TO_LOG

    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    try:
        SlackWebhookHook(slack_webhook_conn_id=conn_id).send_dict(slack_message(alert, channel=channel))
    except Exception as exc:
        log.error("Slack (connection %r) did not take the %s alert about %s: %s", conn_id, alert.level, alert.model,
                  exc)
        raise
    log.info("Sent the %s alert about %s to Slack (connection %r)", alert.level, alert.model, conn_id)
    return DELIVERED_TO_SLACK


def airflow_url(dag_id: str, run_id: str | None = None, task_id: str | None = None) -> str:
    """The Airflow UI page of a DAG, a DAG run or a task of a run (``[api] base_url``)."""
    from airflow.sdk import conf

    url = f"{conf.get('api', 'base_url', fallback='http://localhost:8080/').rstrip('/')}/dags/{quote(dag_id)}"
    if run_id:
        url += f"/runs/{quote(run_id)}"
        if task_id:
            url += f"/tasks/{quote(task_id)}"
    return url


class DagFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of a lifecycle DAG: a warning about the failed run, to its model's channel.

    Built per model in the DAG file (:func:`modelops.dags.dag_args`), from the model's config: ``model``
    names the model (never parsed out of the DAG id), ``slack_conn_id`` and ``channel`` come from its
    ``alerts:`` section. Level ``warning``: the run needs a person, but nothing about the live model
    changed on its own (``critical`` is kept for when the system acted: rollback and retraining).

    Works with the full context (``dag.test()``, a failed task known: its id and try number, the run's
    ``version`` / ``target_version`` param) and the minimal one the DAG processor may pass (``dag``,
    ``run_id``, ``reason``). Delivery is :func:`notify`: the log always, Slack when the connection
    exists; a Slack error propagates (Airflow logs it and counts ``dag.callback_exceptions``).
    """

    def __init__(self, *, model: str, slack_conn_id: str = DEFAULT_SLACK_CONN_ID, channel: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.slack_conn_id = slack_conn_id
        self.channel = channel

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing is templated. (The base class asks ``context["dag"]`` for a Jinja environment first,
        which ``dag.test()``'s scheduler-side DAG, passed when no task failed, does not have.)"""

    def alert(self, context: Any) -> Alert:
        """The warning about the failed run that ``context`` describes."""
        dag_id, run_id = context["dag"].dag_id, context.get("run_id")
        ti = context.get("ti") or context.get("task_instance")
        task_id = getattr(ti, "task_id", None)
        reason = context.get("reason") or "failed"
        params = context.get("params") or {}
        version = (params.get("version") or params.get("target_version")) if hasattr(params, "get") else None

        summary = f"Run `{run_id}` of `{dag_id}` failed ({reason})"
        if task_id:
            tries = getattr(ti, "try_number", None)
            summary += f": task `{task_id}` failed" + (f" on try {tries}" if tries else "")
        summary += ". No automatic action was taken."
        links = {"Airflow run": airflow_url(dag_id, run_id)} if run_id else {"Airflow DAG": airflow_url(dag_id)}
        if task_id and run_id:
            links["Failed task"] = airflow_url(dag_id, run_id, task_id)
        return Alert(
            level=DAG_FAILURE_LEVEL, model=self.model, version=str(version) if version else None,
            title=f"{dag_id} failed", summary=summary, links=links,
        )

    def notify(self, context: Any) -> None:
        """Send :meth:`alert` with the module's :func:`notify` (the log, and Slack when connected)."""
        notify(self.alert(context), conn_id=self.slack_conn_id, channel=self.channel)


def retraining_skipped(
    model: str,
    *,
    trigger: Any,
    version: str,
    dataset_uri: str,
    data_fingerprint: str,
    dag_id: str,
    run_id: str,
    trained_from: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Warn the model's channel (``alerts`` of its config) that run ``run_id`` of ``dag_id``, started by
    an alert (``trigger``: the run's ``alert`` param), skipped itself: ``version`` was already trained
    from the same data (``dataset_uri``, ``data_fingerprint``), code and params.

    The message (:func:`include.monitoring.alerts.retraining_skipped`) links the Airflow run and, when
    ``tracking_uri`` is an http(s) MLflow server, the version. Returns ``"slack"`` or ``"log"``
    (no Slack connection); a Slack error is raised, as :func:`notify` does.
    """
    from include.config import get_model_config
    from include.monitoring import alerts

    settings = get_model_config(model).alerts
    links = {"Airflow run": airflow_url(dag_id, run_id)}
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        links["MLflow version"] = f"{tracking_uri.rstrip('/')}/#/models/{quote(model)}/versions/{quote(version)}"
    alert = alerts.retraining_skipped(
        model=model, version=version, trigger=trigger if isinstance(trigger, dict) else {},
        dataset_uri=dataset_uri, data_fingerprint=data_fingerprint, dag_id=dag_id, run_id=run_id,
        trained_from=trained_from, links=links,
    )
    return notify(alert, conn_id=settings.slack_conn_id, channel=settings.channel)
