"""Fixtures for the Triton tests: the serving virtualenv and a registry of trained versions.

The registry is an SQLite MLflow store of its own, trained once per session with
``include.training.train`` on generated data:

* version 1: the configured HistGradientBoosting pipeline;
* version 2: the same with fewer iterations (a different model, same inputs);
* version 3: a DummyClassifier, which skl2onnx cannot convert;
* version 4: version 2's model registered again (a new version to break on purpose).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

from include import tracking
from include.config import ModelConfig, load_model_config
from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch
from include.training.train import features_and_target, holdout_split, train

ROOT = Path(__file__).resolve().parents[4]
# Serving tests serve the estimator as configured: the evidence section (calibration, SHAP...) is evaluation's.
CONFIG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml").model_copy(update={"evidence": None})


@dataclass(frozen=True)
class Registry:
    client: MlflowClient
    config: ModelConfig
    holdout: pd.DataFrame  # feature columns of 200 held-out rows

    @property
    def name(self) -> str:
        return self.config.name

    def pyfunc(self, version: str):
        return mlflow.pyfunc.load_model(self.client.get_model_version_download_uri(self.name, version))


def _with_estimator(estimator: str, params: dict) -> ModelConfig:
    return CONFIG.model_copy(update={"model": CONFIG.model.model_copy(update={"estimator": estimator, "params": params})})


def _train_versions(client: MlflowClient, tmp: Path) -> pd.DataFrame:
    batch = generate_batch(3000, seed=11)
    uri = str(tmp / "train.parquet")
    write_dataset(batch, uri)
    client.create_registered_model(CONFIG.name)
    configs = [
        CONFIG,
        _with_estimator("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 40}),
        _with_estimator("sklearn.dummy.DummyClassifier", {"strategy": "prior"}),
    ]
    for i, config in enumerate(configs, start=1):
        run_id = tracking.upsert_run(client, "triton-tests", {"test.version": str(i)}, f"v{i}")
        client.create_model_version(CONFIG.name, train(config, uri, run_id), run_id=run_id)
    second = client.get_model_version(CONFIG.name, "2")
    client.create_model_version(CONFIG.name, second.source, run_id=second.run_id)
    return batch


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    tmp = tmp_path_factory.mktemp("triton-registry")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    client = tracking.configure(f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        # One OpenMP thread: HistGradientBoosting's spinning threads crawl on a busy 2-core machine.
        with threadpool_limits(1):
            batch = _train_versions(client, tmp)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    _, holdout = holdout_split(batch, CONFIG)
    features, _ = features_and_target(holdout, CONFIG)
    return Registry(client=client, config=CONFIG, holdout=features.head(200).reset_index(drop=True))
