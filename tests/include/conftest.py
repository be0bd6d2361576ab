"""Shared fixtures for tests of include/: a real SQLite MLflow store with a few logged models."""

from __future__ import annotations

import re
from collections.abc import Iterator

import mlflow
import mlflow.sklearn
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from include import tracking
from include.training.train import sklearn_types_to_trust

EXPERIMENT = "registry-tests"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowClient]:
    """A fresh SQLite store for this module; mlflow's global URIs are restored afterwards."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield tracking.configure(f"sqlite:///{tmp_path_factory.mktemp('registry')}/mlflow.db")
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def runs(client: MlflowClient) -> list[tuple[str, str]]:
    """Three runs, each with a tiny logged sklearn model: ``(run_id, model_uri)``."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 2)), np.arange(20) % 2
    model = LogisticRegression().fit(x, y)
    trusted = sklearn_types_to_trust(model)
    logged = []
    for i in range(3):
        run_id = tracking.upsert_run(client, EXPERIMENT, {"test.run": str(i)}, f"run-{i}")
        with mlflow.start_run(run_id=run_id):
            # Explicit requirements skip MLflow's (slow) requirement inference.
            info = mlflow.sklearn.log_model(
                model, name="model", skops_trusted_types=trusted, pip_requirements=["scikit-learn"]
            )
        logged.append((run_id, info.model_uri))
    return logged



@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A registered model name of its own for each test."""
    return re.sub(r"[^A-Za-z0-9]+", "_", request.node.name).strip("_")
