"""Tests for include.evaluation.fairness against differences worked out by hand on a small table."""

from __future__ import annotations

import pytest

from include.evaluation.fairness import DEMOGRAPHIC_PARITY, EQUALIZED_ODDS, fairness_report, report_metrics

# group A: y 1 1 0 0, decision 1 1 1 0 -> selection 3/4, TPR 2/2 = 1,   FPR 1/2 = 0.5
# group B: y 1 1 1 0, decision 1 0 0 0 -> selection 1/4, TPR 1/3,       FPR 0/1 = 0
# group C: y 1 0,     decision 0 1     -> selection 1/2, TPR 0/1 = 0,   FPR 1/1 = 1
Y = [1, 1, 0, 0, 1, 1, 1, 0, 1, 0]
DECISION = [1, 1, 1, 0, 1, 0, 0, 0, 0, 1]
GROUP = ["A"] * 4 + ["B"] * 4 + ["C"] * 2


def test_differences_match_the_hand_computed_rates() -> None:
    report = fairness_report(Y, DECISION, GROUP, min_group_rows=1)

    assert report[DEMOGRAPHIC_PARITY] == pytest.approx(0.75 - 0.25)
    assert report[EQUALIZED_ODDS] == pytest.approx(max(1 - 0, 1 - 0))  # TPR A - C, FPR C - B
    assert report["groups"]["B"] == pytest.approx(
        {"rows": 4, "selection_rate": 0.25, "true_positive_rate": 1 / 3, "false_positive_rate": 0.0})
    assert report["excluded"] == {}


def test_small_groups_are_left_out() -> None:
    report = fairness_report(Y, DECISION, GROUP, min_group_rows=3)

    assert report["excluded"] == {"C": 2}
    assert set(report["groups"]) == {"A", "B"}
    assert report[DEMOGRAPHIC_PARITY] == pytest.approx(0.5)
    assert report[EQUALIZED_ODDS] == pytest.approx(max(1 - 1 / 3, 0.5 - 0))
    assert report_metrics("age_band", report) == pytest.approx({
        "fairness.age_band.groups": 2.0, "fairness.age_band.demographic_parity_difference": 0.5,
        "fairness.age_band.equalized_odds_difference": 2 / 3})


def test_equal_treatment_gives_zero_and_one_group_gives_nothing() -> None:
    same = fairness_report([1, 0, 1, 0], [1, 0, 1, 0], ["x", "x", "y", "y"])
    assert (same[DEMOGRAPHIC_PARITY], same[EQUALIZED_ODDS]) == (0.0, 0.0)

    alone = fairness_report(Y, DECISION, GROUP, min_group_rows=4)  # only A and B have 4 rows
    assert alone[DEMOGRAPHIC_PARITY] is not None
    single = fairness_report(Y, DECISION, GROUP, min_group_rows=5)
    assert (single[DEMOGRAPHIC_PARITY], single[EQUALIZED_ODDS], single["groups"]) == (None, None, {})
    assert report_metrics("age_band", single) == {"fairness.age_band.groups": 0.0}


def test_mismatched_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="sizes differ"):
        fairness_report([1, 0], [1], ["a", "b"])
