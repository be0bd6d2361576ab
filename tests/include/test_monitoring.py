"""Hourly assessment tiers, cold start and cooldown (the decisions; the DAG is tested end to end)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include import monitoring
from include.config import get_model_config
from include.monitoring import Finding, HourAssessment, due

CFG = get_model_config("credit_approval")
HOUR = pd.Timestamp("2026-05-01T10:00Z")


def _assessment(level: str, *findings: Finding, hour: pd.Timestamp = HOUR) -> HourAssessment:
    return HourAssessment(CFG.name, "3", hour.isoformat(), 500, level, "test", findings=list(findings))


def _state(name: str, level: str, value: float, hour: pd.Timestamp) -> dict:
    return {name: {"hour": hour.isoformat(), "level": level, "value": value, "version": "3"}}


DRIFT = Finding("data_drift", 0.33, 0.3)


def test_a_new_condition_is_due() -> None:
    assert due(_assessment("warning", DRIFT), {}, cooldown_hours=6) == [DRIFT]


def test_the_same_condition_is_not_repeated_within_the_cooldown() -> None:
    state = _state("data_drift", "warning", 0.33, HOUR - pd.Timedelta(hours=5))

    assert due(_assessment("warning", DRIFT), state, cooldown_hours=6) == []
    # the same hour again (a re-run or retry) sends nothing twice
    assert due(_assessment("warning", DRIFT), _state("data_drift", "warning", 0.33, HOUR), cooldown_hours=6) == []


def test_it_fires_again_after_the_cooldown() -> None:
    state = _state("data_drift", "warning", 0.33, HOUR - pd.Timedelta(hours=6))

    assert due(_assessment("warning", DRIFT), state, cooldown_hours=6) == [DRIFT]


def test_another_version_is_a_new_case() -> None:
    state = _state("data_drift", "warning", 0.33, HOUR - pd.Timedelta(hours=1))
    state["data_drift"]["version"] = "2"  # fired for the version before a redeployment

    assert due(_assessment("warning", DRIFT), state, cooldown_hours=6) == [DRIFT]


def test_it_fires_again_within_the_cooldown_when_worse() -> None:
    state = _state("data_drift", "warning", 0.33, HOUR - pd.Timedelta(hours=1))
    slightly = Finding("data_drift", 0.40, 0.3)
    much = Finding("data_drift", 0.56, 0.3)  # >= 0.33 + half the threshold

    assert due(_assessment("warning", slightly), state, cooldown_hours=6) == []
    assert due(_assessment("warning", much), state, cooldown_hours=6) == [much]
    # a higher tier is worse too
    assert due(_assessment("critical", slightly), state, cooldown_hours=6) == [slightly]


class _Report:
    """The shape of include.drift.DriftReport that assess() reads."""

    def __init__(self, drifted: list[str]) -> None:
        from types import SimpleNamespace

        self.features = {f: SimpleNamespace(column=f, drifted=f in drifted, score=0.0) for f in CFG.dataset.feature_names}
        self.share_drifted = len(drifted) / len(self.features)

    def as_dict(self) -> dict:
        return {"share_drifted": self.share_drifted,
                "features": {k: {"score": v.score, "drifted": v.drifted} for k, v in self.features.items()}}


def _frame(rows: int, approved_share: float) -> pd.DataFrame:
    approved = int(rows * approved_share)
    return pd.DataFrame({"request_id": [str(i) for i in range(rows)],
                         "prediction": np.r_[np.full(approved, 0.1), np.full(rows - approved, 0.9)],
                         "loan_amount": 100.0, "defaulted": np.nan, "repaid_amount": np.nan})


def _assess(drifted: list[str], approved_share: float, deployed_days_ago: float = 30, rows: int = 400):
    return monitoring.assess(
        CFG, hour=HOUR, frame=_frame(rows, approved_share), version="3", drift_report=_Report(drifted),
        deployed_at=HOUR - pd.Timedelta(days=deployed_days_ago), baseline={"approval_rate": 0.8},
        baseline_source="holdout",
    )


FEATURES = CFG.dataset.feature_names


def test_tiers() -> None:
    ok = _assess([], 0.8)
    assert (ok.level, ok.findings, ok.healthy) == ("ok", [], True)

    warning = _assess(FEATURES[:3], 0.8)  # 3/9 drifted >= 0.3, no KPI drop
    assert warning.level == "warning" and [f.name for f in warning.findings] == ["data_drift"]

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


# --- MLflow side: the monitoring run's metrics, alert state and the KPI baseline --------------


def _hour(version: str, hour: pd.Timestamp, approval: float, healthy: bool) -> HourAssessment:
    return HourAssessment(CFG.name, version, hour.isoformat(), 400, "ok" if healthy else "warning", "test",
                          healthy=healthy, kpis={"approval_rate": {"name": "approval_rate", "value": approval,
                                                                   "rows": 400}})


def test_baseline_is_the_holdout_until_the_first_healthy_days_are_frozen(client, runs) -> None:
    run_id = runs[0][0]
    client.create_registered_model(CFG.name)
    version = str(client.create_model_version(CFG.name, runs[0][1], run_id=run_id).version)
    client.log_metric(run_id, "kpi.approval_rate", 0.8)
    deployed = pd.Timestamp("2026-05-01T00:00Z")
    window = deployed + pd.Timedelta(days=CFG.monitoring.cold_start_days)  # baseline days start here
    mon_run = monitoring.monitoring_run(client, CFG)
    latency = pd.Series([1.0, 2.0, 30.0])
    for offset, approval, healthy, served in [(1, 0.7, True, version), (2, 0.9, True, version),
                                              (3, 0.1, False, version), (4, 0.2, True, "99"),
                                              (-30, 0.3, True, version)]:  # the last one: before the window
        monitoring.log_hour(client, mon_run, _hour(served, window + pd.Timedelta(hours=offset), approval, healthy),
                            latency)

    during = window + pd.Timedelta(days=1)
    assert monitoring.kpi_baseline(client, CFG, version, deployed, during, mon_run) == ({"approval_rate": 0.8},
                                                                                       "holdout")
    after = window + pd.Timedelta(days=CFG.monitoring.baseline_days, hours=1)
    frozen = monitoring.kpi_baseline(client, CFG, version, deployed, after, mon_run)
    assert frozen == ({"approval_rate": pytest.approx(0.8)}, "healthy_days")  # mean of 0.7 and 0.9 only
    assert monitoring.BASELINE_TAG in client.get_model_version(CFG.name, version).tags
    # metrics per hour plot as a history; latency percentiles come from the inference log's column
    steps = {m.step for m in client.get_metric_history(mon_run, "kpi.approval_rate")}
    assert monitoring.hour_step(window + pd.Timedelta(hours=1)) in steps
    assert client.get_metric_history(mon_run, "latency_ms.p99")[0].value == pytest.approx(29.44)


def test_what_fired_is_remembered_on_the_monitoring_run(client) -> None:
    mon_run = monitoring.monitoring_run(client, CFG)
    assert monitoring.monitoring_run(client, CFG) == mon_run  # one per model

    monitoring.record_fired(client, mon_run, _assessment("warning", DRIFT), [DRIFT])

    state = monitoring.alert_state(client, mon_run)
    assert state["data_drift"] == {"hour": HOUR.isoformat(), "level": "warning", "value": 0.33, "version": "3"}
    assert due(_assessment("warning", DRIFT), state, cooldown_hours=6) == []
