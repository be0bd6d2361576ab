"""Tests for include.evaluation.baseline: the baseline goes through the candidate's preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression

from include.config import BaselineConfig, ConfigError, load_model_config
from include.demo.datagen import generate_batch
from include.evaluation.baseline import fit_baseline
from include.training.train import build_estimator, features_and_target

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")


def _steps(pipeline) -> dict[str, list[str]]:
    return {name: [type(s).__name__ for _, s in t.steps] for name, t, _ in pipeline.named_steps["preprocess"].transformers}


def test_the_baseline_is_the_candidates_pipeline_with_another_estimator() -> None:
    x, y = features_and_target(generate_batch(800, seed=4), CONFIG)
    x = x.astype({"credit_score": "float64"})
    x.loc[x.index[::7], "credit_score"] = np.nan  # LogisticRegression refuses NaN: the pipeline imputes it

    model = fit_baseline(CONFIG, BaselineConfig(params={"C": 0.5}), x, y)

    estimator = model.named_steps["estimator"]
    assert isinstance(estimator, LogisticRegression) and estimator.C == 0.5
    assert estimator.random_state == CONFIG.model.random_state
    assert isinstance(model.named_steps["preprocess"].named_transformers_["numeric"].steps[0][1], SimpleImputer)
    # the candidate's own preprocessing (boosted trees take NaN: no imputer) apart from that imputer
    candidate = _steps(build_estimator(CONFIG))
    assert _steps(model) == {**candidate, "numeric": ["SimpleImputer", *candidate["numeric"]]}
    assert model.predict_proba(x).shape == (len(x), 2)


def test_a_bad_baseline_is_a_config_error_naming_the_evidence_key() -> None:
    x, y = features_and_target(generate_batch(50, seed=4), CONFIG)
    with pytest.raises(ConfigError, match=r"evidence\.baseline\.estimator"):
        fit_baseline(CONFIG, BaselineConfig(estimator="sklearn.linear_model.NoSuchModel"), x, y)
    with pytest.raises(ConfigError, match=r"evidence\.baseline\.params"):
        fit_baseline(CONFIG, BaselineConfig(params={"C": "lots"}), x, y)
