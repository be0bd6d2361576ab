"""The monitoring run in MLflow: metrics per hour, and what is read back (hours assessed, traffic, KPI baseline)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from include.config import get_model_config
from include.monitoring import history
from include.monitoring.assessment import HourAssessment
from include.monitoring.data_quality import DataQualityIssue
from include.monitoring.windows import hour_step

CFG = get_model_config("credit_approval")


def _hour(version: str, hour: pd.Timestamp, approval: float, healthy: bool, rows: int = 400) -> HourAssessment:
    return HourAssessment(CFG.name, version, hour.isoformat(), rows, "ok" if healthy else "warning", "test",
                          healthy=healthy, kpis={"approval_rate": {"name": "approval_rate", "value": approval,
                                                                   "rows": 400}})


def _at(client, run_id: str, key: str, hour: pd.Timestamp) -> list[float]:
    return [p.value for p in client.get_metric_history(run_id, key) if p.step == hour_step(hour)]


def test_one_monitoring_run_per_model(client) -> None:
    first = history.monitoring_run(client, CFG)

    assert history.monitoring_run(client, CFG) == first
    assert history.monitoring_run(client, CFG.model_copy(update={"name": "other_model"})) != first
    tags = client.get_run(first).data.tags
    assert (tags[history.KIND_TAG], tags[history.MODEL_TAG]) == ("monitoring", CFG.name)


def test_baseline_is_the_holdout_until_the_first_healthy_days_are_frozen(client, runs) -> None:
    run_id = runs[0][0]
    client.create_registered_model(CFG.name)
    version = str(client.create_model_version(CFG.name, runs[0][1], run_id=run_id).version)
    client.log_metric(run_id, "kpi.approval_rate", 0.65)  # the holdout KPI: differs from every healthy-days mean
    deployed = pd.Timestamp("2026-05-01T00:00Z")
    window = deployed + pd.Timedelta(days=CFG.monitoring.cold_start_days)  # baseline days start here
    mon_run = history.monitoring_run(client, CFG)
    latency = pd.Series([1.0, 2.0, 30.0])
    for offset, approval, healthy, served in [(1, 0.7, True, version), (2, 0.9, True, version),
                                              (3, 0.1, False, version), (4, 0.2, True, "99"),
                                              (-30, 0.3, True, version)]:  # the last one: before the window
        history.log_hour(client, mon_run, _hour(served, window + pd.Timedelta(hours=offset), approval, healthy),
                         latency)

    during = window + pd.Timedelta(days=1)
    assert history.kpi_baseline(client, CFG, version, deployed, during, mon_run) == ({"approval_rate": 0.65},
                                                                                     "holdout")
    assert history.BASELINE_TAG not in client.get_model_version(CFG.name, version).tags
    after = window + pd.Timedelta(days=CFG.monitoring.baseline_days, hours=1)
    frozen = history.kpi_baseline(client, CFG, version, deployed, after, mon_run)
    # mean of the version's healthy hours in the window, 0.7 and 0.9 only: not the holdout (0.65), and
    # not with the unhealthy hour (0.567), the other version's (0.6) or the one before the window (0.633)
    assert frozen == ({"approval_rate": pytest.approx(0.8)}, "healthy_days")
    tag = json.loads(client.get_model_version(CFG.name, version).tags[history.BASELINE_TAG])
    assert tag["kpis"] == {"approval_rate": pytest.approx(0.8)}
    assert (tag["from"], tag["to"]) == (window.isoformat(),
                                        (window + pd.Timedelta(days=CFG.monitoring.baseline_days)).isoformat())
    # frozen: a later healthy hour of the window does not move it
    history.log_hour(client, mon_run, _hour(version, window + pd.Timedelta(hours=5), 0.1, True), latency)
    later = history.kpi_baseline(client, CFG, version, deployed, after + pd.Timedelta(days=1), mon_run)
    assert later == ({"approval_rate": pytest.approx(0.8)}, "healthy_days")
    # metrics per hour plot as a history; latency percentiles come from the inference log's column
    steps = {m.step for m in client.get_metric_history(mon_run, "kpi.approval_rate")}
    assert hour_step(window + pd.Timedelta(hours=1)) in steps
    assert client.get_metric_history(mon_run, "latency_ms.p99")[0].value == pytest.approx(29.44)


def test_every_data_quality_kind_is_a_metric_each_hour(client) -> None:
    config = CFG.model_copy(update={"name": "credit_metrics"})
    run_id = history.monitoring_run(client, config)
    hour = pd.Timestamp("2026-07-01T10:00Z")
    issues = [DataQualityIssue("wrong_type", "annual income!", 12, 0.03, 0.01, "text"),
              DataQualityIssue("wrong_type", "age", 3, 0.01, 0.01, "text"),
              DataQualityIssue("unreadable_file", None, 2, 2.0, 1.0, "corrupt")]
    assessed = HourAssessment(config.name, "4", hour.isoformat(), 300, "warning", "test", data_quality=issues)

    history.log_hour(client, run_id, assessed, pd.Series([None], dtype=float))

    assert _at(client, run_id, "data_quality.wrong_type", hour) == [15.0]
    assert _at(client, run_id, "data_quality.unreadable_file", hour) == [2.0]
    assert _at(client, run_id, "data_quality.all_null", hour) == [0.0]  # every kind, 0 when none
    assert _at(client, run_id, "data_quality.wrong_type.annual income_", hour) == [12.0]  # a key MLflow accepts
    assert _at(client, run_id, "model_version", hour) == [4.0] and _at(client, run_id, "alert_level", hour) == [1.0]
    assert "latency_ms.p99" not in client.get_run(run_id).data.metrics  # no latency (batch rows): no percentile


def test_assessed_windows_and_expected_rows_are_read_back(client) -> None:
    config = CFG.model_copy(update={"name": "credit_windows"})
    run_id = history.monitoring_run(client, config)
    start = pd.Timestamp("2026-07-02T00:00Z")
    none = pd.Series(dtype=float)
    for offset, rows in [(0, 100), (1, 300), (2, 200)]:
        history.log_hour(client, run_id, _hour("1", start + pd.Timedelta(hours=offset), 0.5, True, rows), none)
    history.log_hour(client, run_id, _hour("1", start + pd.Timedelta(hours=5), 0.5, True, 900), none, window_hours=3)

    assert history.assessed_windows(client, run_id) == {hour_step(start): 1.0, hour_step(start) + 1: 1.0,
                                                        hour_step(start) + 2: 1.0, hour_step(start) + 5: 3.0}
    assert history.expected_rows(client, run_id, start + pd.Timedelta(hours=3), lookback_hours=3) == 200.0  # median
    assert history.expected_rows(client, run_id, start + pd.Timedelta(hours=3), lookback_hours=1) == 200.0
    assert history.expected_rows(client, run_id, start, lookback_hours=24) == 0.0  # nothing before


def test_deployed_at_is_the_latest_deploy_record(client, runs) -> None:
    from include.governance import audit

    name = "credit_deployed"
    client.create_registered_model(name)
    version = str(client.create_model_version(name, runs[1][1], run_id=runs[1][0]).version)
    assert history.deployed_at(client, name, version) is None
    for at in ("2026-07-01T00:00:00.000000Z", "2026-07-03T00:00:00.000000Z", "2026-07-02T00:00:00.000000Z"):
        audit.write(client, audit.AuditRecord(action="deploy", model=name, version=version, actor="test",
                                              reason="deployed", at=at))

    assert history.deployed_at(client, name, version) == pd.Timestamp("2026-07-03T00:00Z")
