"""Missing values and unseen categories score in the ONNX export (Triton, the batch job) as in scikit-learn.

For every estimator family the config accepts, a small pipeline from ``include.training.train.build_estimator`` is
trained on data without and with missing values, converted, and scored by onnxruntime and scikit-learn on
the export's parity rows: each numeric feature missing, each categorical one missing (None, NaN) and
unseen. An export that routes missing values elsewhere (skl2onnx's RandomForest converter,
sklearn-onnx#1253) or a model that cannot score them is refused, naming the feature. The last test runs a
RandomForest version through a real Triton server with a null ``credit_score``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from include import tracking
from include.batch import worker
from include.config import ModelConfig, load_model_config
from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch
from include.promotion import rollout
from include.serving.triton import repository
from include.serving.triton.client import TritonClient
from include.serving.triton.repository import ExportError, export_version
from include.serving.triton.server import TritonServer
from include.training.train import build_estimator, features_and_target, train

ROOT = Path(__file__).resolve().parents[4]
CONFIG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
TOLERANCE = 1e-5  # probabilities, as the export's parity check (PARITY_TOLERANCE); measured <1e-7
FAMILIES = {
    "random_forest": ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 8, "max_depth": 6}),
    "extra_trees": ("sklearn.ensemble.ExtraTreesClassifier", {"n_estimators": 8, "max_depth": 6}),
    "gradient_boosting": ("sklearn.ensemble.GradientBoostingClassifier", {"n_estimators": 10, "max_depth": 3}),
    "gradient_boosting_exponential_loss": ("sklearn.ensemble.GradientBoostingClassifier",
                                           {"n_estimators": 10, "max_depth": 3, "loss": "exponential"}),
    "hist_gradient_boosting": ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 10}),
    "logistic_regression": ("sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
    "decision_tree": ("sklearn.tree.DecisionTreeClassifier", {"max_depth": 6}),
}
NUMERIC = [c.name for c in CONFIG.dataset.features if c.type not in repository.STRING_TYPES]
CATEGORICAL = [c.name for c in CONFIG.dataset.features if c.type in repository.STRING_TYPES]


def _config(family: str) -> ModelConfig:
    estimator, params = FAMILIES[family]
    return CONFIG.model_copy(update={"model": CONFIG.model.model_copy(update={"estimator": estimator, "params": params})})


def _with_missing(x: pd.DataFrame) -> pd.DataFrame:
    """Nulls as include.data.dataset.read_dataset returns them: pd.NA in Int64, NaN in float, None in text; NaN in text too."""
    out = x.astype({"credit_score": "Int64", "region": object, "loan_purpose": object})
    out.loc[out.index[::9], "credit_score"] = pd.NA
    out.loc[out.index[::13], "annual_income"] = np.nan
    out.loc[out.index[::11], "region"] = None
    out.loc[out.index[::17], "loan_purpose"] = np.nan
    return out


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame | pd.Series]:
    x, y = features_and_target(generate_batch(500, seed=21), CONFIG)
    x = x.reset_index(drop=True)
    return {"complete": x, "with_missing": _with_missing(x), "y": y.reset_index(drop=True)}


def _fit(model, x: pd.DataFrame, y: pd.Series):
    with threadpool_limits(1):  # HistGradientBoosting's OpenMP threads crawl on a busy 2-core machine
        return model.fit(x, y)


def _onnx_scores(onnx_model: bytes, frame: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    feeds = repository.onnx_feeds(frame, repository.input_spec(config))
    return session.run([repository.ONNX_PROBABILITIES], feeds)[0][:, 1]


@pytest.mark.parametrize("training", ["complete", "with_missing"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_missing_and_unseen_values_score_like_sklearn(family: str, training: str, data) -> None:
    config = _config(family)
    x = data[training]
    model = _fit(build_estimator(config), x, data["y"])
    onnx_model = repository.convert_to_onnx(model, config)
    frame = repository.parity_frame(x.head(5), config)

    got = _onnx_scores(onnx_model, frame, config)
    expected = model.predict_proba(frame)[:, 1]

    cases = [*(f"{c} missing" for c in NUMERIC),
             *(f"{c} {case}" for c in CATEGORICAL for case in ("missing", "missing (NaN)", "unseen"))]
    assert set(frame.index) == {"example", *cases}
    for case in ["example", *cases]:
        rows = frame.index == case
        np.testing.assert_allclose(got[rows], expected[rows], rtol=0, atol=TOLERANCE, err_msg=case)
    # the missing rows are not scored like the complete ones: the check above compares something
    example = expected[frame.index == "example"]
    assert max(np.abs(expected[frame.index == case] - example).max() for case in cases) > 1e-3
    assert repository.check_parity(onnx_model, model, frame, config)["max_abs_diff"] <= TOLERANCE


def test_a_random_forest_trained_on_complete_data_routes_a_null_credit_score_like_sklearn(data) -> None:
    """The issue's case: RandomForest, no missing value in training, a null credit_score when scoring."""
    config = _config("random_forest")
    model = _fit(build_estimator(config), data["complete"], data["y"])
    rows = data["complete"].head(50).copy()
    rows["credit_score"] = pd.array([pd.NA] * len(rows), dtype="Int64")  # read_dataset's null int

    got = _onnx_scores(repository.convert_to_onnx(model, config), rows, config)

    np.testing.assert_allclose(got, model.predict_proba(rows)[:, 1], rtol=0, atol=TOLERANCE)


def test_thresholds_route_every_value_as_sklearns_float32_comparison() -> None:
    """x <= w (float64 rows) and x32 <= w32 (float32 rows) hold exactly when scikit-learn's float32(x) <= t does."""
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.normal(size=5000) * 10.0 ** rng.integers(-6, 8, 5000),
                        rng.normal(size=500).astype(np.float32).astype(np.float64),  # thresholds on a float32
                        [0.0, -0.0, 1e-45, -1e-45, 3.4028234663852886e38, 1e300, np.inf]])
    w = repository._sklearn_thresholds(t, np.float64)
    w32 = repository._sklearn_thresholds(t, np.float32)
    near = [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), w, np.nextafter(w, np.inf), np.nextafter(w, -np.inf)]

    with np.errstate(over="ignore"):
        for x in near:
            np.testing.assert_array_equal(x <= w, x.astype(np.float32) <= t)
            np.testing.assert_array_equal(x.astype(np.float32) <= w32, x.astype(np.float32) <= t)
    assert np.isinf(w[-1]) and np.isinf(w32[-1])  # a split of the missing values from all others


def _skl2onnx_export(model, config: ModelConfig, converters: dict | None = None) -> bytes:
    initial_types = [(c["name"], StringTensorType([None, 1]) if c["type"] in repository.STRING_TYPES
                      else DoubleTensorType([None, 1])) for c in repository.input_spec(config)]
    return convert_sklearn(model, initial_types=initial_types, options={id(model): {"zipmap": False}},
                           target_opset=repository.TARGET_OPSET,
                           custom_conversion_functions={SimpleImputer: repository._simple_imputer, **(converters or {})},
                           ).SerializeToString()


@pytest.mark.parametrize("converter", ["skl2onnx", "float64 thresholds, no missing directions"])
def test_an_export_that_drops_the_missing_directions_is_refused_naming_the_feature(converter: str, data) -> None:
    config = _config("random_forest")
    model = _fit(build_estimator(config), data["complete"], data["y"])
    # what convert_to_onnx did before: skl2onnx's RandomForest converter with float64 thresholds
    converters = {RandomForestClassifier: repository._double_precision_trees} if converter != "skl2onnx" else None
    exported = _skl2onnx_export(model, config, converters)
    frame = repository.parity_frame(data["complete"].head(5), config)

    with pytest.raises(ExportError, match=r"disagrees with scikit-learn.* on rows with: .*credit_score missing") as info:
        repository.check_parity(exported, model, frame, config)

    named = str(info.value).split("on rows with: ")[1]
    assert "region unseen" not in named
    if converters:  # the complete rows agree: only the missing numbers are routed elsewhere
        assert not named.startswith("example")


def test_a_model_that_cannot_score_a_missing_number_is_refused_naming_the_features(data) -> None:
    """A LogisticRegression pipeline from before the imputer: scikit-learn raises, the export would score."""
    config = _config("logistic_regression")
    pre = ColumnTransformer([("numeric", StandardScaler(), NUMERIC),
                             ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL)])
    legacy = _fit(Pipeline([("preprocess", pre), ("estimator", LogisticRegression(max_iter=500))]),
                  data["complete"], data["y"])
    onnx_model = repository.convert_to_onnx(legacy, config)

    with pytest.raises(ExportError, match=r"cannot score rows with age missing, annual_income missing, .*"
                                          r"debt_to_income missing \(Input X contains NaN"):
        repository.check_parity(onnx_model, legacy, repository.parity_frame(data["complete"].head(5), config), config)


@pytest.mark.parametrize(("family", "imputed"), [
    ("random_forest", False), ("extra_trees", False), ("hist_gradient_boosting", False),
    ("gradient_boosting", True), ("logistic_regression", True),
])
def test_numbers_are_imputed_only_for_estimators_without_missing_value_support(family: str, imputed: bool,
                                                                               data) -> None:
    model = _fit(build_estimator(_config(family)), data["with_missing"], data["y"])
    numeric = model.named_steps["preprocess"].named_transformers_["numeric"]
    categorical = model.named_steps["preprocess"].named_transformers_["categorical"]

    assert isinstance(numeric.steps[0][1], SimpleImputer) is imputed
    assert [type(step).__name__ for _, step in categorical.steps] == ["SimpleImputer", "SimpleImputer", "OneHotEncoder"]
    assert np.isfinite(model.predict_proba(data["with_missing"].head(30))).all()


def test_a_missing_category_is_one_category_however_it_is_written(data) -> None:
    """None, NaN and the empty string (what Triton's client sends for None) all score as the missing category."""
    config = _config("random_forest")
    model = _fit(build_estimator(config), data["with_missing"], data["y"])
    onnx_model = repository.convert_to_onnx(model, config)
    rows = data["complete"].head(20).astype({"region": object})
    scores = {}
    for written in (None, np.nan, ""):
        rows["region"] = pd.Series([written] * len(rows), index=rows.index, dtype=object)
        scores[repr(written)] = model.predict_proba(rows)[:, 1]
        np.testing.assert_allclose(_onnx_scores(onnx_model, rows, config), scores[repr(written)], rtol=0,
                                   atol=TOLERANCE)

    np.testing.assert_array_equal(scores["None"], scores["nan"])
    np.testing.assert_array_equal(scores["None"], scores["''"])
    # training saw missing regions: the missing category has its own column, not the unseen one's zeros
    rows["region"] = repository.UNKNOWN_CATEGORY
    assert np.abs(model.predict_proba(rows)[:, 1] - scores["None"]).max() > 0


def test_the_batch_scorer_feeds_nulls_as_the_export_expects(data, tmp_path: Path) -> None:
    """worker.prepare checks parity on the missing rows and its workers score Arrow nulls like scikit-learn."""
    config = _config("random_forest")
    model = _fit(build_estimator(config), data["with_missing"], data["y"])
    local = tmp_path / "model"
    mlflow.sklearn.save_model(model, str(local), input_example=data["complete"].head(5), serialization_format="pickle")
    scorer = worker.prepare(str(local), "models:/credit_approval/1", config)
    rows = data["complete"].head(40).reset_index(drop=True)
    columns = {c: pa.array(rows[c]) for c in config.dataset.feature_names}
    nulls = np.arange(40) % 3 == 0
    columns["credit_score"] = pa.array(rows["credit_score"], mask=nulls, type=pa.int64())
    columns["region"] = pa.array(rows["region"], mask=nulls, type=pa.string())
    batch = pa.RecordBatch.from_pydict(columns)

    got = worker._predict(worker._session(scorer), scorer, batch)

    expected = model.predict_proba(batch.to_pandas())[:, 1]  # pyarrow: nulls become NaN / None
    assert scorer.parity["rows"] == 5 * (1 + len(NUMERIC) + 3 * len(CATEGORICAL))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


# --- a real Triton server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def forest_version(tmp_path_factory: pytest.TempPathFactory, data) -> tuple:
    """An MLflow registry (SQLite) holding version 1: a RandomForest trained by include.training.train on complete data."""
    tmp = tmp_path_factory.mktemp("missing-registry")
    config = _config("random_forest")
    batch = generate_batch(500, seed=21)
    uri = str(tmp / "train.parquet")
    write_dataset(batch, uri)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    client = tracking.configure(f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        client.create_registered_model(config.name)
        run_id = tracking.upsert_run(client, "missing-values", {"test.version": "1"}, "rf")
        with threadpool_limits(1):
            client.create_model_version(config.name, train(config, uri, run_id), run_id=run_id)
        client.set_model_version_tag(config.name, "1", "dataset_uri", uri)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    model = mlflow.sklearn.load_model(client.get_model_version_download_uri(config.name, "1"))
    return client, config, model


@pytest.fixture(scope="module")
def served_forest(triton_venv: Path, forest_version, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    client, config, _ = forest_version
    repo = tmp_path_factory.mktemp("missing-triton") / "models"
    export_version(client, config.name, "1", config, repo)
    log_path = tmp_path_factory.mktemp("missing-triton-log") / "tritonserver.log"
    with TritonServer(venv=triton_venv, log_path=log_path).start(repo) as server:
        server.wait_ready(60)
        with TritonClient(server.url) as triton:
            triton.load(config.name)
            triton.wait_ready(config.name, "1", timeout=60)
        yield server.url


def _packed_request(frame: pd.DataFrame) -> tuple[bytes, dict[str, str]]:
    """A binary KServe v2 request in the packed form, as any client may send it: NaN for a null number, "" for a null text."""
    numbers = np.ascontiguousarray(frame[NUMERIC].to_numpy(dtype=np.float64, na_value=np.nan))
    texts = ["" if pd.isna(v) else str(v) for v in frame[CATEGORICAL].to_numpy(dtype=object).ravel()]
    strings = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    rows = len(frame)
    header = json.dumps({"inputs": [
        {"name": repository.NUMERIC_INPUT, "shape": [rows, len(NUMERIC)], "datatype": "FP64",
         "parameters": {"binary_data_size": numbers.nbytes}},
        {"name": repository.CATEGORICAL_INPUT, "shape": [rows, len(CATEGORICAL)], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(strings)}},
    ], "outputs": [{"name": repository.OUTPUT_NAME, "parameters": {"binary_data": False}}]}).encode()
    return header + numbers.tobytes() + strings, {"Inference-Header-Content-Length": str(len(header)),
                                                   "Content-Type": "application/octet-stream"}


def test_triton_serves_a_null_credit_score_like_sklearn(served_forest: str, forest_version, data) -> None:
    import httpx

    _, config, model = forest_version
    rows = data["complete"].head(30).astype({"credit_score": "Int64", "annual_income": float, "region": object})
    rows.loc[rows.index[::2], "credit_score"] = pd.NA
    rows.loc[rows.index[::3], "annual_income"] = np.nan
    rows.loc[rows.index[::5], "region"] = None
    expected = model.predict_proba(rows)[:, 1]

    body, headers = _packed_request(rows)
    response = httpx.post(f"{served_forest}/v2/models/{config.name}/versions/1/infer", content=body, headers=headers,
                          timeout=30)
    assert response.status_code == 200, response.text
    length = int(response.headers.get("Inference-Header-Content-Length", len(response.content)))
    served = np.asarray(json.loads(response.content[:length])["outputs"][0]["data"], dtype=np.float64)

    np.testing.assert_allclose(served, expected, rtol=0, atol=TOLERANCE)
    # the project's client sends nulls in float and text columns (not in int ones: INT64 has no NaN)
    sendable = rows.assign(credit_score=data["complete"]["credit_score"].head(30))
    with TritonClient(served_forest) as triton:
        through_client = triton.infer(config.name, sendable, version="1")
    np.testing.assert_allclose(through_client, model.predict_proba(sendable)[:, 1], rtol=0, atol=TOLERANCE)


def test_deployment_parity_serves_missing_floats_and_categories_like_the_registry(served_forest: str,
                                                                                    forest_version) -> None:
    """What the deploy DAG's verify step compares: Triton vs the MLflow model, missing values included."""
    client, config, _ = forest_version
    frame = rollout.parity_frame(client, config, "1", 30)

    floats = [c.name for c in config.dataset.features if c.type == "float"]
    assert set(frame.index) == {"holdout", *(f"{c} missing" for c in floats),
                                *(f"{c} {case}" for c in CATEGORICAL for case in ("missing", "unseen"))}
    assert (frame.index == "holdout").sum() == 30
    assert frame.loc["region missing", "region"].isna().all()
    with TritonClient(served_forest) as triton:
        served = triton.infer(config.name, frame, version="1")
    pyfunc = mlflow.pyfunc.load_model(client.get_model_version_download_uri(config.name, "1"))
    expected = np.asarray(pyfunc.predict(frame))[:, 1]

    result = rollout.check_parity(expected, served, tolerance=TOLERANCE, labels=frame.index)

    assert result["rows"] == len(frame) and result["max_abs_diff"] <= TOLERANCE


def test_deployment_parity_names_the_cases_that_differ() -> None:
    labels = ["holdout", "holdout", "credit_score missing", "region unseen"]

    with pytest.raises(rollout.DeploymentError, match=r"over 4 rows on rows with: credit_score missing$"):
        rollout.check_parity([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.43, 0.4], tolerance=1e-5, labels=labels)
    with pytest.raises(rollout.DeploymentError, match=r"non-finite outputs on rows with: region unseen$"):
        rollout.check_parity([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, float("nan")], tolerance=1e-5, labels=labels)
