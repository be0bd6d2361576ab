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

from include import settings, tracking_auth
from include.tracking_auth import Credentials

log = logging.getLogger(__name__)

def default_tracking_uri() -> str:
    return f"sqlite:///{settings.state_dir() / 'mlflow' / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def configure(uri: str | None = None, *, credentials: Credentials | None = None) -> MlflowClient:
    """Point mlflow at ``uri`` (or the environment / embedded default) and return a client.

    ``credentials`` (or the userinfo of an http(s) ``uri``, which is taken out of it) authenticate
    this process's requests to that server without entering ``os.environ``
    (:mod:`include.tracking_auth`); MLflow's own ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` /
    ``_TOKEN`` variables keep working. Raises :class:`~include.tracking_auth.CredentialsError` when
    the URI's userinfo and ``credentials`` disagree or are incomplete.
    """
    uri, in_uri = tracking_auth.split_uri(uri or tracking_uri())
    if credentials and in_uri and credentials != in_uri:
        raise tracking_auth.CredentialsError(f"tracking URI {uri}: credentials both in its userinfo and given apart")
    if credentials := credentials or in_uri:
        tracking_auth.register(uri, credentials)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def artifact_root(uri: str) -> str | None:
    """Where new experiments store artifacts: explicit setting, else beside a local SQLite store."""
    if root := settings.ARTIFACT_ROOT.get():
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
    found = find_run(client, experiment, key_tags)
    if found is not None:
        return found
    run = client.create_run(experiment_id, run_name=run_name, tags=key_tags)
    log.info("Created MLflow run %s in %s", run.info.run_id, experiment)
    return run.info.run_id


OUTCOME_TAG = "modelops.outcome"


def find_run(client: MlflowClient, experiment: str, key_tags: dict[str, str]) -> str | None:
    """The id of the run carrying ``key_tags`` in ``experiment``, or None."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in key_tags.items())
    runs = client.search_runs([found.experiment_id], filter_string=query, max_results=1)
    return runs[0].info.run_id if runs else None


def close_run(
    client: MlflowClient, run_id: str, status: str, outcome: str, *, only_if: tuple[str, ...] | None = None
) -> bool:
    """End ``run_id`` with ``status`` (``FINISHED``, ``FAILED``, ``KILLED``) and the ``modelops.outcome`` tag saying why.

    With ``only_if``, a run whose current status is not listed is left alone (e.g. not to turn a
    quarantined, FAILED run into another failure). Returns whether the run was closed.
    """
    if only_if is not None and client.get_run(run_id).info.status not in only_if:
        return False
    client.set_tag(run_id, OUTCOME_TAG, outcome[:5000])
    client.set_terminated(run_id, status=status)
    log.info("MLflow run %s closed as %s: %s", run_id, status, outcome)
    return True
