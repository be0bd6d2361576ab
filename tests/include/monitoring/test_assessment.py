"""The assessment of one hour: tiers, cold start and data-quality findings (the decision; the DAG is tested end to end)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from include.config import get_model_config
from include.monitoring import assessment, windows
from include.monitoring.assessment import HourAssessment
from include.monitoring.data_quality import DataQualityIssue
from include.monitoring.findings import Finding

CFG = get_model_config("credit_approval")
HOUR = pd.Timestamp("2026-05-01T10:00Z")
FEATURES = CFG.dataset.feature_names


class _Report:
    """The shape of include.monitoring.drift.DriftReport that assess() reads."""

    def __init__(self, drifted: list[str]) -> None:
        self.features = {f: SimpleNamespace(column=f, drifted=f in drifted, score=0.0) for f in FEATURES}
        self.share_drifted = len(drifted) / len(self.features)

    def as_dict(self) -> dict:
        return {"share_drifted": self.share_drifted,
                "features": {k: {"score": v.score, "drifted": v.drifted} for k, v in self.features.items()}}


def _frame(rows: int, approved_share: float) -> pd.DataFrame:
    approved = int(rows * approved_share)
    return pd.DataFrame({"request_id": [str(i) for i in range(rows)],
                         "prediction": np.r_[np.full(approved, 0.1), np.full(rows - approved, 0.9)],
                         "loan_amount": 100.0, "defaulted": np.nan, "repaid_amount": np.nan})


def _assess(drifted: list[str], approved_share: float, deployed_days_ago: float = 30, rows: int = 400,
            issues=()) -> HourAssessment:
    return assessment.assess(
        CFG, hour=HOUR, frame=_frame(rows, approved_share), version="3", drift_report=_Report(drifted),
        deployed_at=HOUR - pd.Timedelta(days=deployed_days_ago), baseline={"approval_rate": 0.8},
        baseline_source="holdout", data_quality=issues,
    )


def test_tiers() -> None:
    ok = _assess([], 0.8)
    assert (ok.level, ok.findings, ok.healthy) == ("ok", [], True)

    warning = _assess(FEATURES[:3], 0.8)  # 3/9 drifted >= 0.3, no KPI drop
    assert warning.level == "warning" and [f.name for f in warning.findings] == ["data_drift"]
    assert warning.findings[0] == Finding("data_drift", 3 / 9, 0.3, "3 of 9 features drifted: "
                                          + ", ".join(sorted(FEATURES[:3])))

    kpi_only = _assess([], 0.6)  # approval rate fell 0.2 >= 0.15
    assert kpi_only.level == "warning" and [f.name for f in kpi_only.findings] == ["kpi.approval_rate"]
    assert kpi_only.drops["approval_rate"] == pytest.approx(0.2)

    still_warning = _assess(FEATURES[:3], 0.6)  # drift below the critical threshold
    assert still_warning.level == "warning"

    critical = _assess(FEATURES[:5], 0.6)  # 5/9 >= 0.5 and a KPI drop
    assert critical.level == "critical"
    assert [f.name for f in critical.findings] == ["critical", "data_drift", "kpi.approval_rate"]
    assert not critical.healthy


def test_cold_start_silences_drift_but_not_kpi_drops() -> None:
    cold = _assess(FEATURES[:5], 0.6, deployed_days_ago=2)

    assert cold.cold_start
    assert cold.level == "warning" and [f.name for f in cold.findings] == ["kpi.approval_rate"]
    assert _assess(FEATURES[:5], 0.8, deployed_days_ago=2).level == "ok"


def test_a_quiet_hour_decides_nothing() -> None:
    quiet = _assess(FEATURES, 0.1, rows=CFG.monitoring.min_rows - 1)

    assert quiet.level == "skipped" and quiet.findings == [] and "min_rows" in quiet.reason


def test_an_assessment_survives_the_xcom_round_trip() -> None:
    issue = DataQualityIssue("unreadable_file", None, 1, 1.0, 1.0, "corrupt", ("a.parquet",))
    hour = _assess(FEATURES[:5], 0.6, issues=[issue])

    back = HourAssessment.from_dict(hour.as_dict())

    assert back == hour
    assert isinstance(back.data_quality[0], DataQualityIssue) and back.data_quality[0].files == ("a.parquet",)


# --- data quality: the hour is always assessed -------------------------------------------------


def _issue(kind: str, column: str | None, value: float, threshold: float = 0.01) -> DataQualityIssue:
    return DataQualityIssue(kind, column, 10, value, threshold, f"{kind} of {column}")


def test_a_data_quality_finding_warns_and_the_rest_is_assessed() -> None:
    got = _assess([], 0.8, issues=[_issue("all_null", "region", 1.0), _issue("non_finite", "age", 0.002)])

    assert got.level == "warning" and not got.healthy
    assert [f.name for f in got.findings] == ["data_quality.all_null.region"]  # 0.2% inf: below the 1% threshold
    assert got.kpis["approval_rate"]["value"] == pytest.approx(0.8)  # the KPIs went on
    assert [i.name for i in got.data_quality] == ["data_quality.all_null.region", "data_quality.non_finite.age"]
    assert "data_quality.all_null.region: all_null of region" in got.reason
    # cold start silences drift, not data quality
    assert _assess([], 0.8, issues=[_issue("all_null", "region", 1.0)], deployed_days_ago=1).level == "warning"


def test_invalid_predictions_escalate_to_critical_even_in_the_cold_start() -> None:
    many = _assess([], 0.8, issues=[_issue("invalid_predictions", None, 0.6)], deployed_days_ago=1)
    few = _assess([], 0.8, issues=[_issue("invalid_predictions", None, 0.2)])

    assert many.level == "critical" and [f.name for f in many.findings] == ["critical",
                                                                            "data_quality.invalid_predictions"]
    assert "the served version is broken" in many.findings[0].detail
    assert few.level == "warning"
    never = CFG.model_copy(update={"monitoring": CFG.monitoring.model_copy(update={"invalid_predictions_critical": None})})
    assert assessment.assess(never, hour=HOUR, frame=_frame(400, 0.8), version="3", drift_report=_Report([]),
                             deployed_at=None, baseline={}, baseline_source="none",
                             data_quality=[_issue("invalid_predictions", None, 1.0)]).level == "warning"


def test_below_min_rows_only_the_hour_kinds_count() -> None:
    quiet = _assess([], 0.8, issues=[_issue("all_null", "region", 1.0)], rows=10)
    empty = _assess([], 0.8, issues=[DataQualityIssue("no_rows", None, 1, 400.0, 100.0, "no prediction")], rows=0)
    no_traffic = _assess([], 0.8, issues=[DataQualityIssue("no_rows", None, 1, 0.0, 100.0, "no prediction")], rows=0)

    assert quiet.level == "skipped" and quiet.findings == [] and "data_quality.all_null.region recorded" in quiet.reason
    assert empty.level == "warning" and [f.name for f in empty.findings] == ["data_quality.no_rows"]
    assert no_traffic.level == "skipped" and [i.kind for i in no_traffic.data_quality] == ["no_rows"]


def test_a_gap_warns_even_in_a_quiet_hour_and_leaves_the_hour_healthy() -> None:
    g = pd.Timestamp("2026-11-05T12:00Z")
    gap = windows.gap_issue(CFG, windows.find_gap({windows.hour_step(g - pd.Timedelta(hours=3)): 1.0}, g))

    quiet = _assess([], 0.8, issues=[gap], rows=10)
    busy = _assess([], 0.8, issues=[gap])

    assert quiet.level == "warning" and [f.name for f in quiet.findings] == ["data_quality.unassessed_hours"]
    assert busy.level == "warning" and [f.name for f in busy.findings] == ["data_quality.unassessed_hours"]
    assert quiet.healthy and busy.healthy  # a gap says nothing about this hour's own data
