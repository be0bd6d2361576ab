"""MLflow tracking setup shared by tasks, the training entrypoint and tests.

The embedded default keeps everything under the project-local ``.modelops/`` folder: an SQLite
tracking/registry store and a local artifact root. ``MLFLOW_TRACKING_URI`` (and
``MODELOPS_ARTIFACT_ROOT`` for new experiments) point it at a real MLflow server instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from include.config import PROJECT_ROOT

log = logging.getLogger(__name__)

STATE_DIR = Path(os.environ.get("MODELOPS_HOME", PROJECT_ROOT / ".modelops"))


def default_tracking_uri() -> str:
    return f"sqlite:///{STATE_DIR / 'mlflow' / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def configure(uri: str | None = None) -> MlflowClient:
    """Point mlflow at ``uri`` (or the environment / embedded default) and return a client."""
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def artifact_root(uri: str) -> str | None:
    """Where new experiments store artifacts: explicit setting, else beside a local SQLite store."""
    if root := os.environ.get("MODELOPS_ARTIFACT_ROOT"):
        return root
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None  # a tracking server decides


def ensure_experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_root(client.tracking_uri)
    try:
        return client.create_experiment(name, artifact_location=f"{location}/{name}" if location else None)
    except mlflow.exceptions.MlflowException:
        # Created concurrently by another task: read it back.
        return client.get_experiment_by_name(name).experiment_id


def upsert_run(client: MlflowClient, experiment: str, key_tags: dict[str, str], run_name: str) -> str:
    """The run carrying ``key_tags`` (e.g. the Airflow dag and run id), created on first call.

    Keyed so that a retried task reuses its run instead of leaving orphans behind.
    """
    experiment_id = ensure_experiment(client, experiment)
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in key_tags.items())
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=key_tags)
    log.info("Created MLflow run %s in %s", run.info.run_id, experiment)
    return run.info.run_id
