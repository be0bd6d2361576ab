"""What every lifecycle DAG shares: defaults for ``@dag`` and the one-DAG-per-model registration."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from datetime import datetime, timedelta
from typing import Any

from include.config import ModelConfig, model_configs
from modelops.notify import DagFailureNotifier

START_DATE = datetime(2026, 1, 1)


def dag_args(
    config: ModelConfig, *tags: str, retry_delay: timedelta = timedelta(minutes=1),
    on_task_failure: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """``@dag`` keyword arguments common to the lifecycle DAGs of ``config``'s model.

    One run at a time per DAG (alias moves are last-writer-wins), no catch-up, retries by default,
    the model's owner, tags: ``modelops``, ``tags`` (the stage, the system) and the model name, and a
    failure notifier built for the model (:class:`modelops.notify.DagFailureNotifier`) that alerts its
    Slack channel (``alerts:`` of its config), or the log. ``on_task_failure`` becomes every
    task's ``on_failure_callback`` (called once a task has failed for good, not on retries).
    """
    default_args: dict[str, Any] = {"owner": config.owner, "retries": 2, "retry_delay": retry_delay}
    if on_task_failure is not None:
        default_args["on_failure_callback"] = on_task_failure
    return {
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["modelops", *tags, config.name],
        "default_args": default_args,
        "on_failure_callback": DagFailureNotifier(
            model=config.name, slack_conn_id=config.alerts.slack_conn_id, channel=config.alerts.channel),
    }


def register_per_model(
    namespace: MutableMapping[str, Any], build: Callable[[ModelConfig], Any],
    when: Callable[[ModelConfig], bool] = lambda _config: True,
) -> None:
    """Build one DAG per configured model and bind it, under its DAG id, in the DAG file's globals (where
    Airflow looks)."""
    for config in model_configs().values():
        if when(config):
            dag = build(config)
            namespace[dag.dag_id] = dag
