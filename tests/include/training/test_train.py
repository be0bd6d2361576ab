"""Tests for include.training.train (split, estimator, the ``python -m include.training.train`` entrypoint) and include.training.evaluate."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import Column, ConfigError, ModelConfig, load_model_config
from include.data.dataset import read_dataset, write_dataset
from include.data.fingerprint import dataset_fingerprint
from include.demo.datagen import generate_batch
from include.governance import lineage
from include.monitoring import drift, reference_profile
from include.training.evaluate import evaluate_run
from include.training.train import (
    EXIT_BAD_INPUT,
    EXIT_DATA_CHANGED,
    MODEL_URI_TAG,
    build_estimator,
    features_and_target,
    holdout_split,
    main,
)

ROOT = Path(__file__).resolve().parents[3]
CFG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
EXPERIMENT = "train-tests"
COMMIT = "test-commit-0123"
NO_SUCH_FINGERPRINT = "sha256:" + "0" * 64


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def _with_model(**changes: object) -> ModelConfig:
    return CFG.model_copy(update={"model": CFG.model.model_copy(update=changes)})


def _ids(df: pd.DataFrame) -> set[str]:
    return set(df[CFG.dataset.id_column])


# --- holdout_split ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return generate_batch(5000, seed=3)


def test_holdout_split_is_deterministic_and_partitions_the_rows(batch: pd.DataFrame) -> None:
    train, holdout = holdout_split(batch, CFG)

    again_train, again_holdout = holdout_split(batch.copy(), CFG)
    pd.testing.assert_frame_equal(again_train, train)
    pd.testing.assert_frame_equal(again_holdout, holdout)
    assert _ids(train).isdisjoint(_ids(holdout))
    assert _ids(train) | _ids(holdout) == _ids(batch)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.4])
def test_holdout_size_follows_the_fraction(batch: pd.DataFrame, fraction: float) -> None:
    _, holdout = holdout_split(batch, _with_model(holdout_fraction=fraction))
    assert len(holdout) / len(batch) == pytest.approx(fraction, abs=0.03)


def test_holdout_split_ignores_row_order_and_index(batch: pd.DataFrame) -> None:
    _, holdout = holdout_split(batch, CFG)
    shuffled = batch.sample(frac=1.0, random_state=5)  # keeps the shuffled index
    assert _ids(holdout_split(shuffled, CFG)[1]) == _ids(holdout)
    assert _ids(holdout_split(shuffled.reset_index(drop=True), CFG)[1]) == _ids(holdout)


def test_holdout_split_ignores_file_layout(tmp_path: Path, batch: pd.DataFrame) -> None:
    _, holdout = holdout_split(batch, CFG)
    write_dataset(batch, str(tmp_path / "batch.csv"))  # CSV reads timestamps back as strings
    assert _ids(holdout_split(read_dataset(str(tmp_path / "batch.csv")), CFG)[1]) == _ids(holdout)


def test_duplicate_rows_land_on_the_same_side(batch: pd.DataFrame) -> None:
    doubled = pd.concat([batch, batch], ignore_index=True)
    train, holdout = holdout_split(doubled, CFG)
    assert _ids(train).isdisjoint(_ids(holdout))
    assert len(holdout) % 2 == 0


def test_features_and_target_names_missing_columns(batch: pd.DataFrame) -> None:
    x, y = features_and_target(batch, CFG)
    assert list(x.columns) == CFG.dataset.feature_names
    assert y.name == "defaulted"
    with pytest.raises(ValueError, match="missing column.*credit_score.*defaulted"):
        features_and_target(batch.drop(columns=["credit_score", "defaulted"]), CFG)


# --- build_estimator -------------------------------------------------------------------------


def test_build_estimator_configures_the_pipeline() -> None:
    pipeline = build_estimator(CFG)
    estimator = pipeline.named_steps["estimator"]
    assert type(estimator).__name__ == "HistGradientBoostingClassifier"
    expected = {**CFG.model.params, "random_state": CFG.model.random_state}
    assert {k: estimator.get_params()[k] for k in expected} == expected
    transformers = {name: cols for name, _, cols in pipeline.named_steps["preprocess"].transformers}
    assert transformers["categorical"] == ["home_ownership", "loan_purpose", "region"]
    assert set(transformers["numeric"]) | set(transformers["categorical"]) == set(CFG.dataset.feature_names)


def test_build_estimator_keeps_an_explicit_random_state_and_skips_it_where_unsupported() -> None:
    assert build_estimator(_with_model(params={"random_state": 7}))[-1].random_state == 7
    knn = build_estimator(_with_model(estimator="sklearn.neighbors.KNeighborsClassifier", params={}))
    assert "random_state" not in knn[-1].get_params()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"estimator": "sklearn.ensemble.NoSuchClassifier"}, "credit_approval: model.estimator: cannot import sklearn.ensemble.NoSuchClassifier"),
        ({"estimator": "sklearn.no_such_module.Classifier"}, "credit_approval: model.estimator: cannot import sklearn.no_such_module.Classifier"),
        ({"params": {"max_iter": 10, "no_such_param": 1}}, "credit_approval: model.params: "),
    ],
)
def test_build_estimator_errors_name_the_key(changes: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_estimator(_with_model(**changes))
    assert expected in str(err.value)
    if "params" in changes:
        assert "no_such_param" in str(err.value)


def test_timestamp_features_are_rejected() -> None:
    dataset = CFG.dataset.model_copy(update={"features": [*CFG.dataset.features, Column(name="decided_at", type="timestamp")]})
    with pytest.raises(ConfigError, match=r"dataset.features: timestamp features are not supported: \['decided_at'\]"):
        build_estimator(CFG.model_copy(update={"dataset": dataset}))


@pytest.mark.parametrize(
    "estimator", ["sklearn.pipeline.Pipeline", "sklearn.metrics.roc_auc_score", "sklearn.linear_model.LinearRegression"]
)
def test_unusable_estimator_is_a_config_error(estimator: str) -> None:
    with pytest.raises(ConfigError, match="model.estimator"):
        build_estimator(_with_model(estimator=estimator, params={}))


def test_bad_param_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.params"):
        build_estimator(_with_model(params={"max_iter": "lots"}))


# --- main() end to end -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowClient]:
    """A fresh SQLite store that main() finds through MLFLOW_TRACKING_URI; global state restored afterwards."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('train')}/mlflow.db"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MODELOPS_CODE_COMMIT", COMMIT)
        mp.delenv("MODELOPS_TRAINING_BACKEND", raising=False)
        lineage.code_commit.cache_clear()
        yield tracking.configure(uri)
    lineage.code_commit.cache_clear()
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def dataset_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("data") / "train.parquet")
    write_dataset(generate_batch(1500, seed=21), uri)
    return uri


def _new_run(client: MlflowClient, key: str) -> str:
    return tracking.upsert_run(client, EXPERIMENT, {"test.case": key}, key)


def _main(dataset_uri: str, run_id: str, *extra: str) -> int:
    return main(["--model", "credit_approval", "--dataset-uri", dataset_uri, "--run-id", run_id, *extra])


@pytest.fixture(scope="module")
def trained(client: MlflowClient, dataset_uri: str) -> tuple[int, str]:
    """One training through the entrypoint, with the fingerprint the validation step would pass."""
    run_id = _new_run(client, "trained")
    fingerprint = dataset_fingerprint(read_dataset(dataset_uri), CFG.dataset.column_types)
    return _main(dataset_uri, run_id, "--expected-fingerprint", fingerprint), run_id


def test_main_trains_and_logs_a_loadable_model(client: MlflowClient, dataset_uri: str, trained: tuple[int, str]) -> None:
    rc, run_id = trained
    assert rc == 0
    run = client.get_run(run_id)
    tags = run.data.tags
    assert tags[MODEL_URI_TAG].startswith("models:/")
    assert tags["code_commit"] == COMMIT
    assert tags["dependency_hash"].startswith("sha256:")
    assert tags["training_backend"] == "local"
    assert run.data.params["estimator"] == CFG.model.estimator
    assert run.data.params["max_iter"] == "150"
    assert run.data.metrics["train_rows"] + run.data.metrics["holdout_rows"] == 1500
    assert run.info.status == "FINISHED"

    model = mlflow.sklearn.load_model(tags[MODEL_URI_TAG])
    x, _ = features_and_target(read_dataset(dataset_uri).head(50), CFG)
    proba = model.predict_proba(x)
    assert proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_main_logs_the_training_features_drift_profile(client: MlflowClient, dataset_uri: str, trained: tuple[int, str]) -> None:
    _, run_id = trained
    train_df, holdout_df = holdout_split(read_dataset(dataset_uri), CFG)

    profile = reference_profile.load_profile(client, run_id)

    assert profile.column_types == {c.name: c.type for c in CFG.dataset.features}
    assert profile.n_rows == len(train_df)
    assert profile.columns["home_ownership"].counts == train_df["home_ownership"].value_counts().to_dict()
    assert not drift.detect_drift(profile, holdout_df).dataset_drift


def test_evaluate_run_logs_metrics_and_plots(client: MlflowClient, dataset_uri: str, trained: tuple[int, str]) -> None:
    _, run_id = trained

    values = evaluate_run(client, CFG, dataset_uri, run_id)

    assert set(values) == {"roc_auc", "accuracy", "precision", "recall", "f1", "log_loss"}
    assert values["roc_auc"] > CFG.gates.minimum
    assert all(0.0 <= values[k] <= 1.0 for k in ("accuracy", "precision", "recall", "f1"))
    logged = client.get_run(run_id).data.metrics
    assert {k: logged[k] for k in values} == pytest.approx(values)
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {"plots/roc_curve.png", "plots/confusion_matrix.png"}


def test_evaluate_run_without_a_model_names_the_tag(client: MlflowClient, dataset_uri: str) -> None:
    run_id = _new_run(client, "untrained")
    with pytest.raises(ValueError, match=f"run {run_id} has no {MODEL_URI_TAG} tag"):
        evaluate_run(client, CFG, dataset_uri, run_id)


def test_changed_data_exits_3_and_logs_no_model(
    client: MlflowClient, dataset_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = _new_run(client, "changed")

    assert _main(dataset_uri, run_id, "--expected-fingerprint", NO_SUCH_FINGERPRINT) == EXIT_DATA_CHANGED

    assert "changed since validation" in caplog.text
    run = client.get_run(run_id)
    assert MODEL_URI_TAG not in run.data.tags
    assert run.data.params == {}
    experiment_id = run.info.experiment_id
    assert client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "credit_approval", "--dataset-uri", "{tmp}/missing.parquet"], "dataset not found: {tmp}/missing.parquet"),
        (["--model", "no_such_model", "--dataset-uri", "{data}"], "unknown model 'no_such_model'"),
        (["--model", "credit_approval", "--dataset-uri", "s3://bucket/train.parquet"], "unsupported URI scheme 's3'"),
    ],
)
def test_bad_input_exits_2(
    client: MlflowClient, dataset_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, args: list[str], message: str
) -> None:
    run_id = _new_run(client, "bad-input")
    fill = {"tmp": tmp_path, "data": dataset_uri}

    assert main([*(a.format(**fill) for a in args), "--run-id", run_id]) == EXIT_BAD_INPUT

    assert message.format(**fill) in caplog.text
    assert MODEL_URI_TAG not in client.get_run(run_id).data.tags


def test_missing_required_argument_exits_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "credit_approval"])
    assert exit_info.value.code == EXIT_BAD_INPUT
