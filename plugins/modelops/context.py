"""Who and what is acting, read from the Airflow task context (for audit records)."""

from __future__ import annotations

from typing import Any


def actor(context: Any) -> str:
    """The triggering user, else what started the run (``scheduler``, ``asset_triggered``…)."""
    dag_run = context["dag_run"]
    user = getattr(dag_run, "triggering_user_name", None)
    return user or str(getattr(dag_run, "run_type", "unknown")).split(".")[-1].lower()


def ids(context: Any) -> dict[str, str]:
    return {"dag_id": context["dag"].dag_id, "run_id": context["run_id"]}
