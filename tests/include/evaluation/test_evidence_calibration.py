"""Tests for include.evaluation.calibration: ECE against hand-computed values and known-calibrated scores,
the calibrate-or-not decision in training, and the ONNX export of calibrated pipelines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV, calibration_curve
from threadpoolctl import threadpool_limits

from include.config import CalibrationConfig, ModelConfig, load_model_config
from include.demo.datagen import generate_batch
from include.evaluation.calibration import (
    calibrated_pipeline,
    expected_calibration_error,
    fit_model,
    reliability_table,
)
from include.serving import onnx
from include.training.train import build_estimator, features_and_target, sklearn_types_to_trust

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")


def test_ece_of_a_hand_computed_example() -> None:
    # bins of width 0.5: [0, 0.5] holds 0.1, 0.3 (mean 0.2, one positive of two: 0.5); (0.5, 1] holds 0.8, 0.9,
    # 1.0 (mean 0.9, two positives of three); ECE = 2/5 * |0.5 - 0.2| + 3/5 * |2/3 - 0.9| = 0.12 + 0.14 = 0.26
    y = [1, 0, 1, 0, 1]
    p = [0.1, 0.3, 0.8, 0.9, 1.0]

    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.26)


def test_ece_of_perfectly_calibrated_scores_is_near_zero_and_of_overconfident_ones_is_not() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y = (rng.uniform(size=p.size) < p).astype(int)  # P(y=1 | p) = p: calibrated by construction

    assert expected_calibration_error(y, p, bins=10) < 0.005
    # pushed towards 0 and 1: binning can only hide some of the gap, never add to it (Jensen), so the ECE lies
    # between half and all of the unbinned E|P(y=1 | score) - score| = E|p - sharp| (~0.12)
    sharp = np.clip(0.5 + 1.6 * (p - 0.5), 0, 1)
    gap = np.abs(p - sharp).mean()
    assert gap / 2 < expected_calibration_error(y, sharp, bins=10) <= gap + 0.005


def test_ece_of_a_constant_score_is_its_distance_to_the_base_rate() -> None:
    y = np.array([0] * 75 + [1] * 25)
    assert expected_calibration_error(y, np.full(100, 0.8), bins=10) == pytest.approx(0.55)
    assert expected_calibration_error([], [], bins=10) == 0.0


def test_reliability_table_bins_as_sklearns_calibration_curve() -> None:
    rng = np.random.default_rng(1)
    p = np.round(rng.uniform(size=2000), 1)  # many scores exactly on a bin edge
    y = (rng.uniform(size=p.size) < p).astype(int)

    table = reliability_table(y, p, bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")

    filled = [row for row in table if row["rows"]]
    np.testing.assert_allclose([row["fraction_positive"] for row in filled], prob_true)
    np.testing.assert_allclose([row["mean_predicted"] for row in filled], prob_pred)
    assert sum(row["rows"] for row in table) == p.size
    weighted = sum(row["rows"] * abs(row["fraction_positive"] - row["mean_predicted"]) for row in filled) / p.size
    assert expected_calibration_error(y, p, bins=10) == pytest.approx(weighted)


@pytest.mark.parametrize(("y", "p", "message"), [
    ([0, 1], [0.5], "2 labels for 1"), ([0, 2], [0.1, 0.2], "0 or 1"), ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
    ([0, 1], [0.1, np.nan], "finite"),
])
def test_bad_inputs_are_refused(y, p, message) -> None:
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(y, p)


# --- calibration in training --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.Series]:
    x, y = features_and_target(generate_batch(1500, seed=21), CONFIG)
    return x.reset_index(drop=True), y.reset_index(drop=True)


def _fit(settings: CalibrationConfig | None, split, config: ModelConfig = CONFIG):
    with threadpool_limits(1):  # HistGradientBoosting's OpenMP threads crawl on a busy 2-core machine
        return fit_model(build_estimator(config), *split, settings, 42)


def test_method_none_fits_the_plain_pipeline(split) -> None:
    model, info = _fit(CalibrationConfig(method="none", max_ece=0.01), split)
    assert info["method"] == "none" and "oof_ece" not in info
    assert type(model.steps[-1][1]).__name__ == "HistGradientBoostingClassifier"


def test_calibrates_only_above_max_ece(split) -> None:
    # the demo's boosted trees on 1,200 training rows are overconfident (out-of-fold ECE ~0.08)
    model, info = _fit(CalibrationConfig(method="sigmoid", max_ece=0.03, cv=3), split)
    assert info["method"] == "sigmoid" and info["oof_ece"] > 0.03
    step = model.steps[-1][1]
    assert isinstance(step, CalibratedClassifierCV) and step.method == "sigmoid" and not step.ensemble
    assert [name for name, _ in model.steps] == ["preprocess", "estimator"]
    sklearn_types_to_trust(model)  # MLflow's skops format loads it: only scikit-learn types inside

    relaxed, relaxed_info = _fit(CalibrationConfig(method="sigmoid", max_ece=0.5, cv=3), split)
    assert relaxed_info["method"] == "none"
    assert relaxed_info["oof_ece"] == pytest.approx(info["oof_ece"])  # same folds, same measurement
    assert type(relaxed.steps[-1][1]).__name__ == "HistGradientBoostingClassifier"


def test_sigmoid_calibration_keeps_the_ranking_and_lowers_the_ece(split) -> None:
    x, y = split
    train, test = slice(0, 1000), slice(1000, None)
    with threadpool_limits(1):
        plain = build_estimator(CONFIG).fit(x[train], y[train])
        calibrated = calibrated_pipeline(build_estimator(CONFIG), CalibrationConfig(method="sigmoid", cv=3), 42)
        calibrated.fit(x[train], y[train])
    p_plain, p_cal = plain.predict_proba(x[test])[:, 1], calibrated.predict_proba(x[test])[:, 1]

    # ensemble=False: the same estimator (same data, same seed) under a monotone map: the same order
    assert (np.argsort(p_plain, kind="stable") == np.argsort(p_cal, kind="stable")).mean() > 0.99
    assert expected_calibration_error(y[test], p_cal) < expected_calibration_error(y[test], p_plain)


@pytest.mark.parametrize(("estimator", "params"), [
    ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 20}),
    ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 8, "max_depth": 6}),
    ("sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
])
def test_a_sigmoid_calibrated_pipeline_exports_to_onnx_within_the_parity_tolerance(estimator, params, split) -> None:
    config = CONFIG.model_copy(update={"model": CONFIG.model.model_copy(update={"estimator": estimator, "params": params})})
    model, info = _fit(CalibrationConfig(method="sigmoid", cv=3), split, config)
    assert info["method"] == "sigmoid"

    exported = onnx.convert_to_onnx(model, config)
    frame = onnx.parity_frame(split[0].head(40), config, missing_rows=5)

    assert onnx.check_export(exported, model, frame, config)["max_abs_diff"] <= onnx.PARITY_TOLERANCE
    assert onnx.describe(model) == "ColumnTransformer → CalibratedClassifierCV"


def test_an_isotonic_calibrated_pipeline_is_refused_by_the_export_parity_check(split) -> None:
    """skl2onnx looks isotonic calibration up at the nearest threshold; scikit-learn interpolates between them."""
    model, _ = _fit(CalibrationConfig(method="isotonic", cv=3), split)
    exported = onnx.convert_to_onnx(model, CONFIG)
    frame = onnx.parity_frame(split[0].head(300), CONFIG, label="holdout", missing_rows=5)

    with pytest.raises(onnx.ParityError, match="disagrees with scikit-learn"):
        onnx.check_export(exported, model, frame, CONFIG)
