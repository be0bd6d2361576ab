from __future__ import annotations

from pathlib import Path

import pytest

from include.config import load_model_config
from include.governance.gates import evaluate_gates

# today's four gates: the evidence gates have their own tests (test_evidence_gates.py)
CFG = load_model_config(Path(__file__).resolve().parents[3] / "config" / "models" / "credit_approval.yaml").model_copy(
    update={"evidence": None})
COMPLIANT = {f"compliance.{k}": v for k, v in CFG.compliance.labels.items()}


VALIDATED = {"seq": 7, "at": "2026-11-30T10:00:00.000000Z", "action": "validated"}


def _gates(metric, champion=None, tags=COMPLIANT, validation=VALIDATED):
    return evaluate_gates(
        CFG,
        candidate_metrics={} if metric is None else {"roc_auc": metric},
        candidate_tags={"data_fingerprint": "sha256:abc", **tags},
        champion_metrics=None if champion is None else {"roc_auc": champion},
        validation=validation,
    )


def test_first_model_above_minimum_passes():
    report = _gates(0.80)
    assert report.passed
    assert [r.gate for r in report.results] == ["min_metric", "no_regression", "compliance", "validation"]


def test_below_minimum_fails_with_values():
    report = _gates(0.60)
    assert not report.passed
    (failed,) = report.failed
    assert (failed.gate, failed.value, failed.threshold) == ("min_metric", 0.60, CFG.gates.minimum)
    assert "roc_auc=0.6000" in report.summary()


@pytest.mark.parametrize(("candidate", "champion", "ok"), [(0.80, 0.805, True), (0.80, 0.81, True), (0.79, 0.81, False)])
def test_regression_vs_champion_within_allowance(candidate, champion, ok):
    report = _gates(candidate, champion)
    assert next(r for r in report.results if r.gate == "no_regression").passed is ok


def test_missing_metric_fails():
    assert [r.gate for r in _gates(None, 0.8).failed] == ["min_metric", "no_regression"]


def test_missing_compliance_tag_fails_and_names_it():
    tags = {k: v for k, v in COMPLIANT.items() if k != "compliance.pii_reviewed"}
    report = _gates(0.85, tags=tags)
    assert [r.gate for r in report.failed] == ["compliance"]
    assert "pii_reviewed" in report.failed[0].detail


def test_data_without_a_passed_validation_in_the_ledger_is_refused():
    report = _gates(0.95, validation=None)

    assert not report.passed
    (failed,) = report.failed
    assert failed.gate == "validation" and failed.value == "sha256:abc"
    assert "no passed validation on record" in report.summary()
    assert "#7" in next(r for r in _gates(0.95).results if r.gate == "validation").detail
