"""A real ``airflow api-server`` serving the drift webhook on loopback, and helpers to read what it started.

Shared by the webhook's test modules (``conftest.py`` builds the default ``api_server`` fixture from it;
a module that needs other settings starts its own with :func:`running_api_server`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import airflow_api_server

SECRET = "drift-webhook-test-secret-7f3a9c"
PATH = "/modelops/api/v1/drift-alerts"
MODEL = "credit_approval"
DAG_ID = f"train_{MODEL}"


@dataclass
class Server:
    url: str
    log: Path


def connection(password: str) -> str:
    """An ``AIRFLOW_CONN_*`` value: a generic connection with ``password``."""
    return json.dumps({"conn_type": "generic", "password": password})


@contextmanager
def running_api_server(tmp_path_factory: pytest.TempPathFactory, env: Mapping[str, str] | None = None,
                       name: str = "api-server") -> Iterator[Server]:
    """``airflow api-server`` with the project's plugin, the HMAC secret in ``AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK``
    and ``env`` on top (more connections, ``AIRFLOW__MODELOPS__*`` settings); stopped on exit.

    Needs the ``airflow_db`` fixture (a migrated metadata database). The server creates runs from the
    serialized DAGs in that database, as in production, so the DAGs are reserialized first.
    """
    log_dir = tmp_path_factory.mktemp(name)
    with airflow_api_server(log_dir, {"AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK": connection(SECRET), **(env or {})}) as url:
        yield Server(url, log_dir / "api-server.log")


def runs(dag_id: str = DAG_ID) -> dict[str, dict]:
    """Every run of ``dag_id`` in the metadata database, by run id."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return {r.run_id: {"conf": r.conf, "run_type": str(r.run_type), "triggered_by": r.triggered_by.value,
                           "state": str(r.state), "user": r.triggering_user_name, "note": r.note}
                for r in session.scalars(select(DagRun).where(DagRun.dag_id == dag_id))}


def created_runs(before: dict[str, dict]) -> dict[str, dict]:
    """The runs of the training DAG that did not exist in ``before`` (a :func:`runs` snapshot)."""
    return {run_id: run for run_id, run in runs().items() if run_id not in before}


def fingerprint() -> str:
    """A fresh alert fingerprint, 16 hex digits as Alertmanager and Grafana make them: no other request used it."""
    return uuid.uuid4().hex[:16]


def log_lines_since(server: Server, offset: int, contains: str, expected: int = 1, wait_s: float = 10) -> list[str]:
    """The server log's lines after byte ``offset`` that contain ``contains``, waiting (up to ``wait_s``) until
    ``expected`` of them are there: the server writes its log in its own process."""
    deadline = time.monotonic() + wait_s
    while True:
        with server.log.open("rb") as f:
            f.seek(offset)
            lines = [line for line in f.read().decode(errors="replace").splitlines() if contains in line]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)
