"""Tests for the evidence gates of include.governance.gates (slices, fairness, baseline): decisions over run metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.config import BaselineConfig, EvidenceConfig, FairnessConfig, SlicesConfig, load_model_config
from include.governance.gates import evaluate_gates

BASE = load_model_config(Path(__file__).resolve().parents[3] / "config" / "models" / "credit_approval.yaml")
EVIDENCE = EvidenceConfig.model_validate({
    "derived_columns": [{"name": "age_band", "from": "age", "bins": [30, 50]}],
    "slices": {"columns": ["region", "age_band"], "min_rows": 100, "tolerance": 0.03},
    "fairness": {"sensitive_features": ["age_band"], "max_demographic_parity_difference": 0.1,
                 "max_equalized_odds_difference": 0.2},
    "baseline": {"margin": 0.01},
})
CFG = BASE.model_copy(update={"evidence": EVIDENCE})
TAGS = {"data_fingerprint": "sha256:abc", **{f"compliance.{k}": v for k, v in BASE.compliance.labels.items()}}
VALIDATED = {"seq": 7, "at": "2026-11-30T10:00:00.000000Z", "action": "validated"}
EVIDENCE_GATES = ["slices", "fairness", "baseline"]


def _slices(**values: tuple[float, int]) -> dict[str, float]:
    """``region_north=(0.8, 500)`` -> slice.region.north.roc_auc / .rows; ``age_band_lt30`` -> slice.age_band.lt30."""
    out = {}
    for key, (auc, rows) in values.items():
        column, _, value = key.rpartition("_") if key.startswith("age_band") else key.partition("_")
        out[f"slice.{column}.{value}.roc_auc"], out[f"slice.{column}.{value}.rows"] = auc, rows
    return out


GOOD = {
    "roc_auc": 0.80, "baseline.roc_auc": 0.78,
    "fairness.age_band.demographic_parity_difference": 0.05, "fairness.age_band.equalized_odds_difference": 0.1,
    "fairness.age_band.groups": 3.0,
    **_slices(region_north=(0.80, 500), region_south=(0.79, 500), age_band_lt30=(0.75, 150), age_band_ge50=(0.8, 50)),
}


def _gates(candidate, champion=None, config=CFG):
    return evaluate_gates(config, candidate_metrics=candidate, candidate_tags=TAGS, champion_metrics=champion,
                          validation=VALIDATED)


def _result(report, gate):
    (found,) = [r for r in report.results if r.gate == gate]
    return found


def test_without_evidence_the_gates_are_todays() -> None:
    report = _gates(GOOD, config=BASE.model_copy(update={"evidence": None}))
    assert [r.gate for r in report.results] == ["min_metric", "no_regression", "compliance", "validation"]
    assert report.passed


def test_configured_evidence_adds_its_gates_in_order_and_they_pass_on_good_evidence() -> None:
    report = _gates(GOOD, champion=GOOD)
    gates = [r.gate for r in report.results]
    assert [g for g in gates if g in EVIDENCE_GATES] == EVIDENCE_GATES
    assert gates[:4] == ["min_metric", "no_regression", "compliance", "validation"]
    assert report.passed, report.summary()


def test_a_subsection_or_threshold_left_out_leaves_its_gate_out() -> None:
    evidence = EVIDENCE.model_copy(update={"slices": None, "baseline": BaselineConfig(margin=None),
                                           "fairness": FairnessConfig(sensitive_features=["age_band"])})
    report = _gates({"roc_auc": 0.8}, config=CFG.model_copy(update={"evidence": evidence}))
    assert not {r.gate for r in report.results} & set(EVIDENCE_GATES)


# --- slices ----------------------------------------------------------------------------------------------------


def test_slices_pass_without_a_champion_but_fail_without_slice_metrics() -> None:
    assert _result(_gates(GOOD), "slices").passed
    assert _result(_gates(GOOD), "slices").detail == "no champion yet"
    missing = _result(_gates({k: v for k, v in GOOD.items() if not k.startswith("slice.age_band")}), "slices")
    assert not missing.passed and "age_band" in missing.detail


def test_a_slice_worse_than_the_champions_by_more_than_the_tolerance_fails_and_is_named() -> None:
    champion = {**GOOD, **_slices(region_south=(0.85, 500))}  # the candidate's south is 0.06 worse
    result = _result(_gates(GOOD, champion), "slices")
    assert not result.passed
    assert result.value == pytest.approx(0.06) and result.threshold == 0.03
    assert "region=south" in result.detail and "region=north" not in result.detail

    within = {**GOOD, **_slices(region_south=(0.815, 500))}  # 0.025 worse: tolerated
    assert _result(_gates(GOOD, within), "slices").passed


def test_small_slices_are_not_gated() -> None:
    champion = {**GOOD, **_slices(age_band_ge50=(0.99, 50))}  # 0.19 better, on 50 rows (< min_rows 100)
    result = _result(_gates(GOOD, champion), "slices")
    assert result.passed and "too small" in result.detail


def test_a_champion_without_slice_metrics_is_no_reason_to_fail() -> None:
    result = _result(_gates(GOOD, {"roc_auc": 0.8}), "slices")
    assert result.passed and "no slice to compare" in result.detail


def test_slices_follow_the_direction_of_a_lower_is_better_metric() -> None:
    config = CFG.model_copy(update={
        "gates": BASE.gates.model_copy(update={"primary_metric": "log_loss", "minimum": 0.6}),
        "evidence": EVIDENCE.model_copy(update={"slices": SlicesConfig(columns=["region"], min_rows=1, tolerance=0.03)})})
    metrics = {"log_loss": 0.4, "slice.region.north.log_loss": 0.40, "slice.region.north.rows": 500}
    worse = _gates(metrics, {**metrics, "slice.region.north.log_loss": 0.35}, config)
    better = _gates(metrics, {**metrics, "slice.region.north.log_loss": 0.45}, config)
    assert not _result(worse, "slices").passed and _result(better, "slices").passed


# --- fairness --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "value", "ok"), [
    ("demographic_parity_difference", 0.1, True), ("demographic_parity_difference", 0.12, False),
    ("equalized_odds_difference", 0.2, True), ("equalized_odds_difference", 0.35, False),
])
def test_fairness_differences_are_held_to_their_maximum(metric: str, value: float, ok: bool) -> None:
    result = _result(_gates({**GOOD, f"fairness.age_band.{metric}": value}), "fairness")
    assert result.passed is ok
    if not ok:
        assert f"age_band {metric}={value:.4f}" in result.detail


def test_fairness_that_was_not_measured_fails_and_says_why() -> None:
    unmeasured = {k: v for k, v in GOOD.items() if not k.startswith("fairness.")}
    assert "not logged" in _result(_gates(unmeasured), "fairness").detail
    one_group = {**unmeasured, "fairness.age_band.groups": 1.0}
    result = _result(_gates(one_group), "fairness")
    assert not result.passed and "not measurable: 1 group(s)" in result.detail


# --- baseline --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("candidate", "baseline", "margin", "ok"), [
    (0.80, 0.78, 0.01, True), (0.80, 0.795, 0.01, False), (0.80, 0.79, 0.01, True),
    (0.77, 0.80, -0.05, True), (0.74, 0.80, -0.05, False),
])
def test_the_candidate_must_beat_the_baseline_by_the_margin(candidate, baseline, margin, ok) -> None:
    config = CFG.model_copy(update={"evidence": EVIDENCE.model_copy(update={"baseline": BaselineConfig(margin=margin)})})
    result = _result(_gates({**GOOD, "roc_auc": candidate, "baseline.roc_auc": baseline}, config=config), "baseline")
    assert result.passed is ok
    assert (result.value, result.threshold) == (candidate, baseline)
    assert "LogisticRegression" in result.detail


def test_a_lower_log_loss_than_the_baseline_is_a_gain_and_a_missing_baseline_fails() -> None:
    config = CFG.model_copy(update={
        "gates": BASE.gates.model_copy(update={"primary_metric": "log_loss", "minimum": 0.6}),
        "evidence": EVIDENCE.model_copy(update={"slices": None, "fairness": None})})
    assert _result(_gates({"log_loss": 0.40, "baseline.log_loss": 0.45}, config=config), "baseline").passed
    assert not _result(_gates({"log_loss": 0.45, "baseline.log_loss": 0.45}, config=config), "baseline").passed
    missing = _result(_gates({"log_loss": 0.40}, config=config), "baseline")
    assert not missing.passed and "baseline.log_loss was not logged" in missing.detail
