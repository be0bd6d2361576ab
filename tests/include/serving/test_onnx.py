"""Tests for include.serving.onnx: the conversion, the parity rows and the one parity check.

For every estimator family the config accepts, a small pipeline from ``include.training.train.build_estimator`` is
trained on data without and with missing values, converted, and scored by onnxruntime and scikit-learn on
the parity rows: each numeric feature missing, each categorical one missing (None, NaN) and unseen. An
export that routes missing values elsewhere (skl2onnx's RandomForest converter, sklearn-onnx#1253) or a
model that cannot score them is refused, naming the feature. No server and no registry here: Triton
serving the same exports is tested in ``triton/``.
"""

from __future__ import annotations

from pathlib import Path

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

from include.batch import worker
from include.config import Column, ModelConfig, load_model_config
from include.demo.datagen import generate_batch
from include.serving import onnx
from include.serving.onnx import ExportError, ParityError
from include.training.train import build_estimator, features_and_target

ROOT = Path(__file__).resolve().parents[3]
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
NUMERIC = [c.name for c in CONFIG.dataset.features if c.type not in onnx.STRING_TYPES]
CATEGORICAL = [c.name for c in CONFIG.dataset.features if c.type in onnx.STRING_TYPES]
FLOATS = [c.name for c in CONFIG.dataset.features if c.type == "float"]


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
    feeds = onnx.onnx_feeds(frame, onnx.input_spec(config))
    return session.run([onnx.ONNX_PROBABILITIES], feeds)[0][:, 1]


# --- conversion ----------------------------------------------------------------------------------


@pytest.mark.parametrize("training", ["complete", "with_missing"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_missing_and_unseen_values_score_like_sklearn(family: str, training: str, data) -> None:
    config = _config(family)
    x = data[training]
    model = _fit(build_estimator(config), x, data["y"])
    onnx_model = onnx.convert_to_onnx(model, config)
    frame = onnx.parity_frame(x.head(5), config)

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
    assert onnx.check_export(onnx_model, model, frame, config)["max_abs_diff"] <= TOLERANCE


def test_a_random_forest_trained_on_complete_data_routes_a_null_credit_score_like_sklearn(data) -> None:
    """The issue's case: RandomForest, no missing value in training, a null credit_score when scoring."""
    config = _config("random_forest")
    model = _fit(build_estimator(config), data["complete"], data["y"])
    rows = data["complete"].head(50).copy()
    rows["credit_score"] = pd.array([pd.NA] * len(rows), dtype="Int64")  # read_dataset's null int

    got = _onnx_scores(onnx.convert_to_onnx(model, config), rows, config)

    np.testing.assert_allclose(got, model.predict_proba(rows)[:, 1], rtol=0, atol=TOLERANCE)


def test_thresholds_route_every_value_as_sklearns_float32_comparison() -> None:
    """x <= w (float64 rows) and x32 <= w32 (float32 rows) hold exactly when scikit-learn's float32(x) <= t does."""
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.normal(size=5000) * 10.0 ** rng.integers(-6, 8, 5000),
                        rng.normal(size=500).astype(np.float32).astype(np.float64),  # thresholds on a float32
                        [0.0, -0.0, 1e-45, -1e-45, 3.4028234663852886e38, 1e300, np.inf]])
    w = onnx._sklearn_thresholds(t, np.float64)
    w32 = onnx._sklearn_thresholds(t, np.float32)
    near = [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), w, np.nextafter(w, np.inf), np.nextafter(w, -np.inf)]

    with np.errstate(over="ignore"):
        for x in near:
            np.testing.assert_array_equal(x <= w, x.astype(np.float32) <= t)
            np.testing.assert_array_equal(x.astype(np.float32) <= w32, x.astype(np.float32) <= t)
    assert np.isinf(w[-1]) and np.isinf(w32[-1])  # a split of the missing values from all others


def _skl2onnx_export(model, config: ModelConfig, converters: dict | None = None) -> bytes:
    initial_types = [(c["name"], StringTensorType([None, 1]) if c["type"] in onnx.STRING_TYPES
                      else DoubleTensorType([None, 1])) for c in onnx.input_spec(config)]
    return convert_sklearn(model, initial_types=initial_types, options={id(model): {"zipmap": False}},
                           target_opset=onnx.TARGET_OPSET,
                           custom_conversion_functions={SimpleImputer: onnx._simple_imputer, **(converters or {})},
                           ).SerializeToString()


@pytest.mark.parametrize("converter", ["skl2onnx", "float64 thresholds, no missing directions"])
def test_an_export_that_drops_the_missing_directions_is_refused_naming_the_feature(converter: str, data) -> None:
    config = _config("random_forest")
    model = _fit(build_estimator(config), data["complete"], data["y"])
    # what convert_to_onnx did before: skl2onnx's RandomForest converter with float64 thresholds
    converters = {RandomForestClassifier: onnx._double_precision_trees} if converter != "skl2onnx" else None
    exported = _skl2onnx_export(model, config, converters)
    frame = onnx.parity_frame(data["complete"].head(5), config)

    with pytest.raises(ParityError, match=r"disagrees with scikit-learn.* on rows with: .*credit_score missing") as info:
        onnx.check_export(exported, model, frame, config)

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
    onnx_model = onnx.convert_to_onnx(legacy, config)

    with pytest.raises(ExportError, match=r"cannot score rows with age missing, annual_income missing, .*"
                                          r"debt_to_income missing \(Input X contains NaN"):
        onnx.check_export(onnx_model, legacy, onnx.parity_frame(data["complete"].head(5), config), config)


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
    onnx_model = onnx.convert_to_onnx(model, config)
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
    rows["region"] = onnx.UNKNOWN_CATEGORY
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


@pytest.fixture(scope="module")
def two_models(data) -> tuple:
    """Two HistGradientBoosting pipelines of different sizes on the same inputs (the configured family)."""
    config = CONFIG.model_copy(update={"model": CONFIG.model.model_copy(update={"params": {"max_iter": 20}})})
    small = config.model_copy(update={"model": config.model.model_copy(update={"params": {"max_iter": 5}})})
    return (_fit(build_estimator(config), data["with_missing"], data["y"]),
            _fit(build_estimator(small), data["with_missing"], data["y"]))


def test_conversion_is_deterministic(two_models) -> None:
    model, _ = two_models
    assert onnx.convert_to_onnx(model, CONFIG) == onnx.convert_to_onnx(model, CONFIG)


def test_an_export_of_another_model_is_refused_naming_the_worst_row(two_models, data) -> None:
    model, other = two_models
    rows = data["complete"].head(100)

    with pytest.raises(ParityError, match=r"^credit_approval: the ONNX export disagrees with scikit-learn: max \|diff\| "
                                          r"\S+ > 1e-05 on \d+ of 100 rows, on rows with: row \d+.* \(worst: row \d+: "
                                          r"the ONNX export 0\.\d{6}, scikit-learn 0\.\d{6}\)$"):
        onnx.check_export(onnx.convert_to_onnx(other, CONFIG), model, rows, CONFIG)


def test_the_export_of_the_same_model_passes_on_missing_and_unseen_values(two_models, data) -> None:
    model, _ = two_models
    rows = data["complete"].head(300).astype({"debt_to_income": float})
    rows.loc[rows.index[:40], "debt_to_income"] = np.nan
    rows.loc[rows.index[40:80], "loan_purpose"] = "crypto"

    parity = onnx.check_export(onnx.convert_to_onnx(model, CONFIG), model, rows, CONFIG, 1e-6)

    assert parity["rows"] == 300 and parity["max_abs_diff"] <= 1e-6 and parity["tolerance"] == 1e-6


def test_a_categories_only_pipeline_converts_faithfully() -> None:
    """No numeric feature: the trees see the one-hot block in float32, and must compare in float32."""
    dataset = CONFIG.dataset.model_copy(update={"features": [c for c in CONFIG.dataset.features if c.type == "category"]})
    config = CONFIG.model_copy(update={"dataset": dataset})
    x, y = features_and_target(generate_batch(1000, seed=6), config)
    model = _fit(build_estimator(config), x, y)

    parity = onnx.check_export(onnx.convert_to_onnx(model, config), model, x, config, 1e-6)

    assert parity["rows"] == 1000 and parity["max_abs_diff"] <= 1e-6


def test_features_that_cannot_be_converted_are_named() -> None:
    dataset = CONFIG.dataset.model_copy(
        update={"features": [*CONFIG.dataset.features, Column(name="decided_at", type="timestamp")]})
    config = CONFIG.model_copy(update={"dataset": dataset})

    with pytest.raises(ExportError, match=r"cannot be converted to ONNX \(nor served\): decided_at \(timestamp\)$"):
        onnx.input_spec(config)
    assert onnx.input_spec(CONFIG)[:2] == [{"name": "age", "type": "int"}, {"name": "annual_income", "type": "float"}]


def test_a_classifier_of_three_classes_is_refused() -> None:
    x, y = np.arange(12.0).reshape(-1, 1), np.arange(12) % 3
    with pytest.raises(ExportError, match=r"only binary classifiers can be served; the model's classes are \[0, 1, 2\]"):
        onnx.positive_column(LogisticRegression().fit(x, y), CONFIG)


# --- the parity rows -------------------------------------------------------------------------------


def test_the_parity_rows_cover_every_null_as_read_and_every_unseen_category(data) -> None:
    sample = data["complete"].tail(3)

    frame = onnx.parity_frame(data["complete"].head(5), CONFIG, sample=sample)

    labels = list(dict.fromkeys(frame.index))
    assert labels[:2] == ["sample", "example"]
    assert labels[2:] == [f"{c.name} {case}" for c in CONFIG.dataset.features
                          for case in (("missing", "missing (NaN)", "unseen") if c.type == "category" else ("missing",))]
    assert list(frame.columns) == CONFIG.dataset.feature_names
    assert len(frame) == 3 + 5 * (1 + len(NUMERIC) + 3 * len(CATEGORICAL))
    assert str(frame.loc["credit_score missing", "credit_score"].dtype) == "Int64"  # read_dataset's null int
    assert frame.loc["credit_score missing", "credit_score"].isna().all()
    assert frame.loc["region missing (NaN)", "region"].isna().all()
    assert (frame.loc["region unseen", "region"] == onnx.UNKNOWN_CATEGORY).all()
    # one feature at a time: the other columns keep the example's values
    np.testing.assert_array_equal(frame.loc["region unseen", "age"].to_numpy(), data["complete"]["age"].head(5))


def test_sendable_parity_rows_hold_only_nulls_a_request_can_carry(data) -> None:
    frame = onnx.parity_frame(data["complete"].head(50), CONFIG, label="holdout", missing_rows=5, nulls="sendable")

    assert set(frame.index) == {"holdout", *(f"{c} missing" for c in FLOATS),
                                *(f"{c} {case}" for c in CATEGORICAL for case in ("missing", "unseen"))}
    assert (frame.index == "holdout").sum() == 50
    assert (frame.index == "annual_income missing").sum() == 5
    assert frame.loc["region missing", "region"].isna().all()
    assert not frame[[c for c in NUMERIC if c not in FLOATS]].isna().any().any()  # int columns: never null


# --- the one parity check ------------------------------------------------------------------------


def test_scores_within_the_tolerance_agree() -> None:
    result = onnx.check_parity([0.1, 0.2], [0.1, 0.2000001])

    assert result == {"rows": 2, "max_abs_diff": pytest.approx(1e-7, rel=1e-3), "tolerance": onnx.PARITY_TOLERANCE}
    assert onnx.check_parity([], [])["rows"] == 0


def test_a_difference_beyond_the_tolerance_names_its_cases_and_the_worst_row() -> None:
    labels = ["holdout", "holdout", "credit_score missing", "region unseen"]

    with pytest.raises(ParityError, match=r"^credit_approval version 3: Triton disagrees with the MLflow model: "
                                          r"max \|diff\| 0\.13 > 1e-05 on 2 of 4 rows, on rows with: credit_score "
                                          r"missing, region unseen \(worst: region unseen: Triton 0\.530000, the "
                                          r"MLflow model 0\.400000\)$"):
        onnx.check_parity([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.33, 0.53], labels=labels,
                          names=("the MLflow model", "Triton"), subject="credit_approval version 3")


@pytest.mark.parametrize("side", ["expected", "got"])
def test_nan_on_either_side_disagrees(side: str) -> None:
    values = {"expected": [0.1, 0.2], "got": [0.1, 0.2]}
    values[side] = [0.1, float("nan")]

    with pytest.raises(ParityError, match=r"on 1 of 2 rows, 1 of them not finite, on rows with: row 1 "):
        onnx.check_parity(values["expected"], values["got"])


def test_a_different_number_of_values_is_refused() -> None:
    with pytest.raises(ParityError, match=r"the ONNX export returned 1 values for 2 rows"):
        onnx.check_parity([0.1, 0.2], [0.1])


def test_the_tolerance_is_the_bound() -> None:
    assert onnx.check_parity([0.5], [0.5 + 1e-3], tolerance=1e-2)["max_abs_diff"] == pytest.approx(1e-3)
    with pytest.raises(ParityError):
        onnx.check_parity([0.5], [0.5 + 1e-3], tolerance=1e-4)
