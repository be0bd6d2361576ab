"""Shared by the batch tests: one MLflow store per module with a registered version of the model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from include.config import load_model_config
from include.demo.datagen import generate_batch

CFG = load_model_config(Path(__file__).resolve().parents[3] / "config" / "models" / "credit_approval.yaml")
MODEL = CFG.name


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """A fresh MLflow store holding version 1 of the model, trained and logged like include.training.train does."""
    from include import tracking
    from include.training.train import build_estimator, features_and_target

    tmp = tmp_path_factory.mktemp("registry")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    client = tracking.configure()
    x, y = features_and_target(generate_batch(2000, seed=1), CFG)
    # The configured pipeline with fewer trees: quicker to train, and any fitted pipeline will do.
    fewer_trees = CFG.model_copy(update={"model": CFG.model.model_copy(update={"params": {"max_iter": 30}})})
    model = build_estimator(fewer_trees).fit(x, y)
    client.create_registered_model(MODEL)
    yield {"client": client, "version": register_version(client, model, x), "model": model, "x": x, "y": y}
    mp.undo()


def register_version(client, model, x: pd.DataFrame) -> str:
    """Log ``model`` like include.training.train does and register it as a new version of MODEL; returns the version."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from include import tracking
    from include.training.train import sklearn_types_to_trust

    experiment = tracking.ensure_experiment(client, "batch-scoring-tests")
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x.head(5), model.predict_proba(x.head(5))),
            input_example=x.head(5),
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=sklearn_types_to_trust(model),
            # Given, so MLflow does not infer them by loading the model in a subprocess (~10 s here);
            # env_manager="local" scoring does not read them.
            pip_requirements=["scikit-learn"],
        )
    return client.create_model_version(MODEL, source=info.model_uri, run_id=run.info.run_id).version
