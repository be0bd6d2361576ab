"""Tests for the ``evidence`` section of a model config (include.config.EvidenceConfig and its checks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from include.config import ConfigError, load_model_config

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "models" / "credit_approval.yaml"


def _load(tmp_path: Path, evidence: object) -> object:
    (tmp_path / "models").mkdir(parents=True)
    (tmp_path / "expectations").mkdir()
    (tmp_path / "expectations" / "credit_approval.json").write_text("{}")
    raw = yaml.safe_load(DEMO.read_text())
    if evidence is None:
        raw.pop("evidence", None)
    else:
        raw["evidence"] = evidence
    path = tmp_path / "models" / "credit_approval.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_model_config(path)


def test_the_demo_uses_every_part() -> None:
    evidence = load_model_config(DEMO).evidence
    assert evidence is not None
    assert (evidence.slices, evidence.fairness, evidence.baseline) != (None, None, None)
    assert evidence.calibration.method == "none" and evidence.calibration.max_ece == 0.03  # measured, not applied
    assert evidence.explanations.enabled
    assert evidence.derived_columns[0].source == "age" and "age_band" not in load_model_config(DEMO).dataset.feature_names


def test_no_section_and_an_empty_section(tmp_path: Path) -> None:
    assert _load(tmp_path / "a", None).evidence is None
    empty = _load(tmp_path / "b", {}).evidence
    assert (empty.slices, empty.fairness, empty.baseline, empty.calibration.method) == (None, None, None, "none")


@pytest.mark.parametrize(("evidence", "message"), [
    ({"slices": {"columns": ["colour"]}}, r"evidence\.slices\.columns\.0: 'colour' is neither a feature"),
    ({"fairness": {"sensitive_features": ["age_band"]}}, r"evidence\.fairness\.sensitive_features\.0: 'age_band'"),
    ({"slices": {"columns": ["region", "credit_score"]}}, r"evidence\.slices\.columns\.1: 'credit_score' is numeric"),
    ({"derived_columns": [{"name": "band", "from": "region", "bins": [1]}]}, r"derived_columns\.0\.from: 'region' is not a numeric"),
    ({"derived_columns": [{"name": "age", "from": "age", "bins": [1]}]}, r"'age' is already a dataset column"),
    ({"derived_columns": [{"name": "b", "from": "age", "bins": [50, 30]}]}, "strictly increasing"),
    ({"derived_columns": [{"name": "b", "from": "age", "bins": [30], "labels": ["young"]}]}, "2 needed"),
    ({"derived_columns": [{"name": "b", "from": "age", "bins": [30], "labels": ["x", "a/b"]}]}, r"labels\.1"),
    ({"derived_columns": [{"name": "b", "from": "age", "bins": [1]}, {"name": "b", "from": "age", "bins": [2]}]}, "declared twice: b"),
    ({"calibration": {"method": "platt"}}, r"evidence\.calibration\.method"),
    ({"calibration": {"max_ece": 0}}, r"evidence\.calibration\.max_ece"),
    ({"baseline": {"estimator": "xgboost.XGBClassifier"}}, r"evidence\.baseline\.estimator"),
    ({"fairness": {"sensitive_features": ["region"], "max_equalized_odds_difference": 2}}, r"max_equalized_odds_difference"),
    ({"shap": {}}, r"evidence\.shap: unknown key"),
])
def test_mistakes_name_the_key(tmp_path: Path, evidence: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, evidence)
