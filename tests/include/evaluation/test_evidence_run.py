"""End to end on a real SQLite MLflow store: training and evaluate_run with the demo config's ``evidence`` section
leave the metrics, tags and artifacts a version carries; the version gets its evidence tags and
top_features reads them. Values are checked against scikit-learn / fairlearn recomputed on the holdout."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from include import tracking
from include.config import load_model_config
from include.data.dataset import read_dataset, write_dataset
from include.demo.datagen import generate_batch
from include.evaluation.columns import band
from include.evaluation.evidence import tag_version
from include.evaluation.explanations import TOP_FEATURES_TAG, load_importance, top_features
from include.training.evaluate import evaluate_run
from include.training.train import MODEL_URI_TAG, features_and_target, holdout_split, train

ROOT = Path(__file__).resolve().parents[3]
_DEMO = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
# the demo's evidence with calibration on request (the demo itself only measures: MODELOPS_CALIBRATION=sigmoid turns it on)
CFG = _DEMO.model_copy(update={"evidence": _DEMO.evidence.model_copy(update={
    "calibration": _DEMO.evidence.calibration.model_copy(update={"method": "sigmoid"})})})
MY_ARTIFACTS = {"evidence/calibration.json", "evidence/reliability_curve.png", "evidence/slices.json",
                "evidence/fairness.json", "evidence/baseline.json", "evidence/shap_importance.json",
                "evidence/shap_importance.png"}


@pytest.fixture(scope="module")
def dataset_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("evidence-data") / "train.parquet")
    write_dataset(generate_batch(2000, seed=31), uri)
    return uri


@pytest.fixture(scope="module")
def evaluated(client: MlflowClient, dataset_uri: str) -> str:
    run_id = tracking.upsert_run(client, "evidence-tests", {"test.case": "evidence"}, "evidence")
    with threadpool_limits(1):  # HistGradientBoosting's OpenMP threads crawl on a busy 2-core machine
        train(CFG, dataset_uri, run_id)
        evaluate_run(client, CFG, dataset_uri, run_id)
    return run_id


def test_the_run_carries_every_configured_piece_of_evidence(client: MlflowClient, evaluated: str) -> None:
    run = client.get_run(evaluated)
    metrics, tags = run.data.metrics, run.data.tags

    assert tags["calibration.method"] in ("sigmoid", "none")
    assert (tags["calibration.method"] == "sigmoid") == (metrics["calibration.oof_ece_uncalibrated"] > 0.03)
    assert 0 <= metrics["calibration.ece"] < 0.1
    for column, values in {"region": ["east", "north", "south", "west"], "home_ownership": ["mortgage", "own", "rent"],
                           "age_band": ["30-50", "ge50", "lt30"]}.items():
        for value in values:
            assert metrics[f"slice.{column}.{value}.rows"] > 0
            assert 0 < metrics[f"slice.{column}.{value}.roc_auc"] <= 1
    assert metrics["fairness.age_band.groups"] == 3
    assert {f"baseline.{m}" for m in ("roc_auc", "accuracy", "precision", "recall", "f1", "log_loss")} <= set(metrics)
    assert len(tags[TOP_FEATURES_TAG].split(",")) == 5
    assert MY_ARTIFACTS <= {a.path for a in client.list_artifacts(evaluated, "evidence")}
    calibration = json.loads(Path(client.download_artifacts(evaluated, "evidence/calibration.json",
                                                            tempfile.mkdtemp())).read_text())
    assert calibration["bins"] == 10 and sum(r["rows"] for r in calibration["reliability"]) == metrics["holdout_rows"]


def test_slice_and_fairness_values_match_the_libraries_on_the_holdout(
    client: MlflowClient, dataset_uri: str, evaluated: str
) -> None:
    metrics = client.get_run(evaluated).data.metrics
    model = mlflow.sklearn.load_model(client.get_run(evaluated).data.tags[MODEL_URI_TAG])
    _, holdout = holdout_split(read_dataset(dataset_uri, CFG.dataset.column_types), CFG)
    x, y = features_and_target(holdout, CFG)
    proba = model.predict_proba(x)[:, 1]

    south = (holdout["region"] == "south").to_numpy()
    assert metrics["slice.region.south.rows"] == south.sum()
    assert metrics["slice.region.south.roc_auc"] == pytest.approx(roc_auc_score(y[south], proba[south]))
    bands = band(holdout["age"], CFG.evidence.derived_columns[0])
    decision = proba >= CFG.monitoring.decision_threshold
    assert metrics["fairness.age_band.demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, decision, sensitive_features=bands))


def test_the_version_carries_the_top_features_monitoring_reads(client: MlflowClient, evaluated: str) -> None:
    run = client.get_run(evaluated)
    name = "evidence_top_features"
    client.create_registered_model(name)
    version = client.create_model_version(name, source=run.data.tags[MODEL_URI_TAG], run_id=evaluated).version

    assert top_features(client, name, version) == run.data.tags[TOP_FEATURES_TAG].split(",")  # from the run
    assert tag_version(client, name, version) == {TOP_FEATURES_TAG: run.data.tags[TOP_FEATURES_TAG],
                                                  "calibration.method": run.data.tags["calibration.method"]}
    assert tag_version(client, name, version) == {}  # already there
    tags = client.get_model_version(name, version).tags
    assert tags[TOP_FEATURES_TAG] == run.data.tags[TOP_FEATURES_TAG]

    importance = load_importance(client, evaluated)
    assert top_features(client, name, version, k=2) == importance["top_features"][:2]
    assert top_features(client, name, version)[0] == "credit_score"  # the generator's strongest feature
    assert list(importance["importance"])[:5] == importance["top_features"]
    assert all(np.isfinite(v) and v >= 0 for v in importance["importance"].values())


def test_without_an_evidence_section_nothing_of_it_is_logged(client: MlflowClient, dataset_uri: str) -> None:
    config = CFG.model_copy(update={"evidence": None})
    run_id = tracking.upsert_run(client, "evidence-tests", {"test.case": "plain"}, "plain")
    with threadpool_limits(1):
        train(config, dataset_uri, run_id)
        evaluate_run(client, config, dataset_uri, run_id)

    run = client.get_run(run_id)
    assert not [k for k in run.data.metrics if k.startswith(("calibration.", "slice.", "fairness.", "baseline."))]
    assert TOP_FEATURES_TAG not in run.data.tags and "calibration.method" not in run.data.tags
    assert not MY_ARTIFACTS & {a.path for a in client.list_artifacts(run_id, "evidence")}
    model = mlflow.sklearn.load_model(run.data.tags[MODEL_URI_TAG])
    assert type(model.steps[-1][1]).__name__ == "HistGradientBoostingClassifier"
