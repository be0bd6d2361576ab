"""Tests for include.evaluation.explanations: SHAP importance per configured feature, against closed forms and
data whose important feature is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from include.config import CalibrationConfig, load_model_config
from include.demo.datagen import generate_batch
from include.evaluation.calibration import calibrated_pipeline
from include.evaluation.explanations import column_features, global_importance, top
from include.training.train import build_estimator, features_and_target

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
FEATURES = CONFIG.dataset.feature_names


def _config(estimator: str, params: dict):
    return CONFIG.model_copy(update={"model": CONFIG.model.model_copy(update={"estimator": estimator, "params": params})})


@pytest.fixture(scope="module")
def demo() -> tuple[pd.DataFrame, pd.Series]:
    x, y = features_and_target(generate_batch(2000, seed=8), CONFIG)
    return x.reset_index(drop=True), y.reset_index(drop=True)


def _fit(model, x, y):
    with threadpool_limits(1):  # HistGradientBoosting's OpenMP threads crawl on a busy 2-core machine
        return model.fit(x, y)


def test_preprocessed_columns_map_back_to_features(demo) -> None:
    model = _fit(build_estimator(CONFIG), *demo)
    width = model[:-1].transform(demo[0].head(3)).shape[1]

    owners = column_features(model[:-1], width)

    categories = {"home_ownership": 3, "loan_purpose": 6, "region": 4}  # the generator's levels
    assert width == 6 + sum(categories.values())
    assert owners[:6] == ["age", "annual_income", "loan_amount", "credit_score", "employment_years", "debt_to_income"]
    assert {f: owners.count(f) for f in categories} == categories


def test_linear_importance_is_the_closed_form_over_each_features_columns(demo) -> None:
    """LinearExplainer with an independent masker: SHAP_j = coef_j * (z_j - mean of z_j in the background)."""
    x, y = demo
    model = _fit(build_estimator(_config("sklearn.linear_model.LogisticRegression", {"max_iter": 500})), x, y)
    sample, background = x.head(200), x.tail(100)

    result = global_importance(model, sample, background)

    z, z_bg = model[:-1].transform(sample), model[:-1].transform(background)
    contributions = model[-1].coef_[0] * (z - z_bg.mean(axis=0))
    owners = np.array(column_features(model[:-1], z.shape[1]))
    expected = {f: np.abs(contributions[:, owners == f].sum(axis=1)).mean() for f in FEATURES}
    assert result["method"] == "shap.LinearExplainer"
    assert result["importance"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert list(result["importance"]) == sorted(expected, key=lambda f: -expected[f])


def test_the_tree_explainer_finds_the_generators_strongest_feature(demo) -> None:
    """The demo labels' log-odds move most with credit_score (1.0 per 70 points, sd 70)."""
    x, y = demo
    model = _fit(build_estimator(CONFIG), x, y)

    result = global_importance(model, x.head(300), x.tail(100))

    assert result["method"] == "shap.TreeExplainer" and result["rows"] == 300
    assert top(result["importance"], 2)[0] == "credit_score"
    assert set(result["importance"]) == set(FEATURES)


def test_a_calibrated_pipeline_is_explained_through_its_estimator(demo) -> None:
    x, y = demo
    plain = _fit(build_estimator(CONFIG), x, y)
    calibrated = _fit(calibrated_pipeline(build_estimator(CONFIG), CalibrationConfig(method="sigmoid", cv=3), 42), x, y)

    a = global_importance(plain, x.head(100), x.tail(50))
    b = global_importance(calibrated, x.head(100), x.tail(50))

    assert b["method"] == "shap.TreeExplainer"
    assert b["importance"] == pytest.approx(a["importance"])  # ensemble=False: the same estimator, fitted the same


def test_any_other_estimator_gets_the_model_agnostic_explainer() -> None:
    rng = np.random.default_rng(5)
    x, _ = features_and_target(generate_batch(600, seed=9), CONFIG)
    x = x.reset_index(drop=True)
    y = (x["debt_to_income"] > x["debt_to_income"].median()).astype(int)  # the label is one feature
    model = _fit(build_estimator(_config("sklearn.naive_bayes.GaussianNB", {})), x, y)  # neither a tree nor coef_

    result = global_importance(model, x.head(30), x.sample(60, random_state=int(rng.integers(100))), agnostic_rows=20)

    assert result["method"] == "shap.PermutationExplainer" and result["rows"] == 20
    assert top(result["importance"], 1) == ["debt_to_income"]


def test_a_model_outside_a_known_pipeline_falls_back_to_permutation_importance() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    x = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (x["b"] + 0.1 * rng.normal(size=400) > 0).astype(int)
    model = LogisticRegression().fit(x, y)

    result = global_importance(model, x, x, y_sample=y)

    assert result["method"].startswith("sklearn.inspection.permutation_importance")
    assert top(result["importance"], 1) == ["b"]
    with pytest.raises(ValueError, match="labels of both classes"):
        global_importance(model, x, x)


def test_top_skips_features_without_importance_and_breaks_ties_by_name() -> None:
    assert top({"b": 0.2, "a": 0.2, "c": 0.0, "d": 0.5}, 5) == ["d", "a", "b"]
