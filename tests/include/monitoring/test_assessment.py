"""Hourly assessment tiers, cold start and cooldown (the decisions; the DAG is tested end to end)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from include.config import get_model_config
from include.monitoring import assessment
from include.monitoring.assessment import Finding, HourAssessment, due

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
    """The shape of include.monitoring.drift.DriftReport that assess() reads."""

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
    return assessment.assess(
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
    client.log_metric(run_id, "kpi.approval_rate", 0.65)  # the holdout KPI: differs from every healthy-days mean
    deployed = pd.Timestamp("2026-05-01T00:00Z")
    window = deployed + pd.Timedelta(days=CFG.monitoring.cold_start_days)  # baseline days start here
    mon_run = assessment.monitoring_run(client, CFG)
    latency = pd.Series([1.0, 2.0, 30.0])
    for offset, approval, healthy, served in [(1, 0.7, True, version), (2, 0.9, True, version),
                                              (3, 0.1, False, version), (4, 0.2, True, "99"),
                                              (-30, 0.3, True, version)]:  # the last one: before the window
        assessment.log_hour(client, mon_run, _hour(served, window + pd.Timedelta(hours=offset), approval, healthy),
                            latency)

    during = window + pd.Timedelta(days=1)
    assert assessment.kpi_baseline(client, CFG, version, deployed, during, mon_run) == ({"approval_rate": 0.65},
                                                                                       "holdout")
    assert assessment.BASELINE_TAG not in client.get_model_version(CFG.name, version).tags
    after = window + pd.Timedelta(days=CFG.monitoring.baseline_days, hours=1)
    frozen = assessment.kpi_baseline(client, CFG, version, deployed, after, mon_run)
    # mean of the version's healthy hours in the window, 0.7 and 0.9 only: not the holdout (0.65), and
    # not with the unhealthy hour (0.567), the other version's (0.6) or the one before the window (0.633)
    assert frozen == ({"approval_rate": pytest.approx(0.8)}, "healthy_days")
    tag = json.loads(client.get_model_version(CFG.name, version).tags[assessment.BASELINE_TAG])
    assert tag["kpis"] == {"approval_rate": pytest.approx(0.8)}
    assert (tag["from"], tag["to"]) == (window.isoformat(),
                                        (window + pd.Timedelta(days=CFG.monitoring.baseline_days)).isoformat())
    # frozen: a later healthy hour of the window does not move it
    assessment.log_hour(client, mon_run, _hour(version, window + pd.Timedelta(hours=5), 0.1, True), latency)
    later = assessment.kpi_baseline(client, CFG, version, deployed, after + pd.Timedelta(days=1), mon_run)
    assert later == ({"approval_rate": pytest.approx(0.8)}, "healthy_days")
    # metrics per hour plot as a history; latency percentiles come from the inference log's column
    steps = {m.step for m in client.get_metric_history(mon_run, "kpi.approval_rate")}
    assert assessment.hour_step(window + pd.Timedelta(hours=1)) in steps
    assert client.get_metric_history(mon_run, "latency_ms.p99")[0].value == pytest.approx(29.44)


def test_what_fired_is_remembered_on_the_monitoring_run(client) -> None:
    mon_run = assessment.monitoring_run(client, CFG)
    assert assessment.monitoring_run(client, CFG) == mon_run  # one per model

    assessment.record_fired(client, mon_run, _assessment("warning", DRIFT), [DRIFT])

    state = assessment.alert_state(client, mon_run)
    assert state["data_drift"] == {"hour": HOUR.isoformat(), "level": "warning", "value": 0.33, "version": "3"}
    assert due(_assessment("warning", DRIFT), state, cooldown_hours=6) == []


# --- data quality: the hour is always assessed -------------------------------------------------

from include.monitoring import drift, inference_log  # noqa: E402
from include.demo.datagen import generate_batch  # noqa: E402
from include.monitoring.assessment import DataQualityIssue  # noqa: E402

TYPES = {c.name: c.type for c in CFG.dataset.features}


@pytest.fixture(scope="module")
def profile() -> drift.ReferenceProfile:
    return drift.build_profile(generate_batch(2000, seed=1), TYPES)


def _issue(kind: str, column: str | None, value: float, threshold: float = 0.01) -> DataQualityIssue:
    return DataQualityIssue(kind, column, 10, value, threshold, f"{kind} of {column}")


def _assess_dq(issues, *, rows: int = 400, deployed_days_ago: float = 30, drifted=()):
    return assessment.assess(
        CFG, hour=HOUR, frame=_frame(rows, 0.8), version="3", drift_report=_Report(list(drifted)),
        deployed_at=HOUR - pd.Timedelta(days=deployed_days_ago), baseline={"approval_rate": 0.8},
        baseline_source="holdout", data_quality=issues,
    )


def test_a_data_quality_finding_warns_and_the_rest_is_assessed() -> None:
    got = _assess_dq([_issue("all_null", "region", 1.0), _issue("non_finite", "age", 0.002)])

    assert got.level == "warning" and not got.healthy
    assert [f.name for f in got.findings] == ["data_quality.all_null.region"]  # 0.2% inf: below the 1% threshold
    assert got.kpis["approval_rate"]["value"] == pytest.approx(0.8)  # the KPIs went on
    assert [i.name for i in got.data_quality] == ["data_quality.all_null.region", "data_quality.non_finite.age"]
    assert "data_quality.all_null.region: all_null of region" in got.reason
    # cold start silences drift, not data quality
    assert _assess_dq([_issue("all_null", "region", 1.0)], deployed_days_ago=1).level == "warning"


def test_invalid_predictions_escalate_to_critical_even_in_the_cold_start() -> None:
    many = _assess_dq([_issue("invalid_predictions", None, 0.6)], deployed_days_ago=1)
    few = _assess_dq([_issue("invalid_predictions", None, 0.2)])

    assert many.level == "critical" and [f.name for f in many.findings] == ["critical",
                                                                            "data_quality.invalid_predictions"]
    assert "the served version is broken" in many.findings[0].detail
    assert few.level == "warning"
    never = CFG.model_copy(update={"monitoring": CFG.monitoring.model_copy(update={"invalid_predictions_critical": None})})
    assert assessment.assess(never, hour=HOUR, frame=_frame(400, 0.8), version="3", drift_report=_Report([]),
                             deployed_at=None, baseline={}, baseline_source="none",
                             data_quality=[_issue("invalid_predictions", None, 1.0)]).level == "warning"


def test_below_min_rows_only_the_hour_kinds_count() -> None:
    quiet = _assess_dq([_issue("all_null", "region", 1.0)], rows=10)
    empty = _assess_dq([DataQualityIssue("no_rows", None, 1, 400.0, 100.0, "no prediction")], rows=0)
    no_traffic = _assess_dq([DataQualityIssue("no_rows", None, 1, 0.0, 100.0, "no prediction")], rows=0)

    assert quiet.level == "skipped" and quiet.findings == [] and "data_quality.all_null.region recorded" in quiet.reason
    assert empty.level == "warning" and [f.name for f in empty.findings] == ["data_quality.no_rows"]
    assert no_traffic.level == "skipped" and [i.kind for i in no_traffic.data_quality] == ["no_rows"]


def test_a_data_quality_finding_re_fires_within_the_cooldown_when_it_grew_by_half() -> None:
    state = _state("data_quality.wrong_type.age", "warning", 0.04, HOUR - pd.Timedelta(hours=1))
    grew = Finding("data_quality.wrong_type.age", 0.059, 0.01)
    doubled = Finding("data_quality.wrong_type.age", 0.06, 0.01)

    assert due(_assessment("warning", grew), state, cooldown_hours=6) == []  # not +0.005 (half the threshold)
    assert due(_assessment("warning", doubled), state, cooldown_hours=6) == [doubled]


def test_frame_quality_names_each_unusable_column(profile: drift.ReferenceProfile) -> None:
    frame = generate_batch(400, seed=3)[list(TYPES)].assign(
        region=None,  # nothing at all
        annual_income=lambda f: f["annual_income"].where(f.index >= 20, np.inf),  # 20 infinities
        credit_score=300,  # a value the reference never has, in every row
        loan_purpose=lambda f: f["loan_purpose"].iloc[0],  # a common value, but in all 400 rows
        prediction=np.where(np.arange(400) < 8, np.nan, 0.3),
    )
    frame.loc[8, "prediction"] = 1.7

    issues = {i.name: i for i in assessment.frame_quality(CFG, frame, profile)}

    assert set(issues) == {"data_quality.all_null.region", "data_quality.non_finite.annual_income",
                           "data_quality.constant.credit_score", "data_quality.constant.loan_purpose",
                           "data_quality.invalid_predictions"}
    assert issues["data_quality.non_finite.annual_income"].count == 20
    assert issues["data_quality.non_finite.annual_income"].value == pytest.approx(0.05)
    assert "all 400 value(s) of 'credit_score' are 300" in issues["data_quality.constant.credit_score"].detail
    invalid = issues["data_quality.invalid_predictions"]
    assert (invalid.count, invalid.value) == (9, pytest.approx(9 / 400))
    assert "8 missing or NaN, 1 outside [0, 1]" in invalid.detail
    # the same value in a few rows is no finding when the reference makes that likely enough (0.345 ** 5 > 0.001)
    few = generate_batch(5, seed=4)[list(TYPES)].assign(loan_purpose="debt_consolidation", prediction=0.2)
    five = CFG.model_copy(update={"monitoring": CFG.monitoring.model_copy(update={"min_rows": 5})})
    assert "data_quality.constant.loan_purpose" not in {i.name for i in assessment.frame_quality(five, few, profile)}
    assert "data_quality.constant.loan_purpose" in {
        i.name for i in assessment.frame_quality(five, few.assign(loan_purpose="medical"), profile)}  # 0.0975 ** 5


# --- one hour end to end on a real MLflow store and a real inference log ------------------------

DQ_MODEL = "credit_dq"
DQ_HOUR = pd.Timestamp("2026-06-01T10:00Z")


@pytest.fixture(scope="module")
def served(client, runs, profile) -> str:
    """Version 1 of DQ_MODEL, registered with a reference profile in its training run."""
    import mlflow

    run_id, model_uri = runs[1]
    with mlflow.start_run(run_id=run_id):
        drift.log_profile(profile)
    client.create_registered_model(DQ_MODEL)
    return str(client.create_model_version(DQ_MODEL, model_uri, run_id=run_id).version)


def _dq_config(tmp_path):
    mon = CFG.monitoring.model_copy(update={"outcomes_uri": str(tmp_path / "outcomes"), "cold_start_days": 0})
    return CFG.model_copy(update={"name": DQ_MODEL, "monitoring": mon})


def _log_hour_of_traffic(tmp_path, hour: pd.Timestamp, version: str, rows: int = 300, seed: int = 11,
                         **columns) -> pd.DataFrame:
    batch = generate_batch(rows, seed=seed, start=hour.isoformat(), hours=1)
    features = batch[list(TYPES)].assign(**columns)
    scores = np.random.default_rng(seed).uniform(0, 1, rows)
    inference_log.log_predictions(DQ_MODEL, version, "online", features, scores, ts=batch["applied_at"],
                                  request_ids=batch["application_id"].tolist(), root=tmp_path / "log")
    return batch


def _window(client, config, hour, tmp_path, champion="1", *, hours: int = 1, check_gaps: bool = False):
    """Assess ``hours`` from ``hour`` (the data-quality tests leave hours out: no gap check unless asked)."""
    return assessment.assess_window(client, config, hour, hour + pd.Timedelta(hours=hours), champion=champion,
                                    root=str(tmp_path / "log"), now=hour + pd.Timedelta(days=2),
                                    check_gaps=check_gaps)


def _metrics_at(client, run_id: str, hour: pd.Timestamp) -> dict[str, float]:
    step = assessment.hour_step(hour)
    out = {}
    for key in client.get_run(run_id).data.metrics:
        for point in client.get_metric_history(run_id, key):
            if point.step == step:
                out[key] = point.value
    return out


def test_an_hour_with_an_all_null_feature_is_assessed(client, served, tmp_path) -> None:
    config = _dq_config(tmp_path)
    _log_hour_of_traffic(tmp_path, DQ_HOUR, served, region=None)

    result = _window(client, config, DQ_HOUR, tmp_path)

    got = result.assessment
    assert got.level == "warning" and got.rows == 300
    assert "data_quality.all_null.region" in [f.name for f in got.findings]
    assert got.drift["skipped"] == {"region": "column 'region' has no non-null values in the current data"}
    assert len(got.drift["features"]) == len(TYPES) - 1  # the other features were checked
    assert got.kpis["approval_rate"]["value"] is not None
    metrics = _metrics_at(client, result.monitoring_run_id, DQ_HOUR)
    assert metrics["data_quality.all_null"] == 300 and metrics["data_quality.all_null.region"] == 300
    assert metrics["data_quality.wrong_type"] == 0 and metrics["alert_level"] == 1 and "drift.age" in metrics
    assert result.report_path == "reports/2026-06-01/1000/data_drift.html"
    assert [a.path for a in client.list_artifacts(result.monitoring_run_id, "reports/2026-06-01/1000")] == [
        result.report_path]
    assert got.notes == ["Evidently report leaves out region (no finite non-null value in the sample)"]


def test_files_other_writers_broke_are_findings_not_a_failed_hour(client, served, tmp_path) -> None:
    config = _dq_config(tmp_path)
    hour = DQ_HOUR + pd.Timedelta(hours=1)
    _log_hour_of_traffic(tmp_path, hour, served)
    folder = inference_log.partition_path(DQ_MODEL, "online", hour, tmp_path / "log")
    other = generate_batch(50, seed=12, start=hour.isoformat(), hours=1)
    text = other[list(TYPES)].assign(annual_income="12k", request_id=other["application_id"], ts=other["applied_at"],
                                     model_name=DQ_MODEL, model_version=int(served), prediction=0.4)
    text.to_parquet(folder / "other-writer.parquet", index=False)  # text where a number is declared
    text.head(0).to_parquet(folder / "empty.parquet", index=False)  # zero rows
    (folder / "corrupt.parquet").write_bytes(b"PAR1\x00\x01 truncated")

    got = _window(client, config, hour, tmp_path).assessment

    assert got.rows == 350 and got.level == "warning"
    findings = {f.name: f for f in got.findings}
    assert findings["data_quality.unreadable_file"].value == 1
    assert "corrupt.parquet" in findings["data_quality.unreadable_file"].detail
    wrong = findings["data_quality.wrong_type.annual_income"]
    assert wrong.value == pytest.approx(50 / 350) and "other-writer.parquet" in wrong.detail and "'12k'" in wrong.detail
    assert "annual_income" in got.drift["features"]  # 300 good values are still checked


def test_an_hour_without_rows_is_recorded_and_warns_when_traffic_was_expected(client, served, tmp_path) -> None:
    config = _dq_config(tmp_path)
    quiet = DQ_HOUR + pd.Timedelta(days=10)
    run_id = assessment.monitoring_run(client, config)

    first = _window(client, config, quiet, tmp_path).assessment  # no history: no traffic expected

    assert first.level == "skipped" and first.findings == [] and [i.kind for i in first.data_quality] == ["no_rows"]
    assert _metrics_at(client, run_id, quiet)["data_quality.no_rows"] == 1
    for back in range(1, 6):  # busy hours before the next empty one
        hour = quiet + pd.Timedelta(hours=24 - back)
        assessment.log_hour(client, run_id, HourAssessment(DQ_MODEL, "1", hour.isoformat(), 400, "ok", "test"),
                            pd.Series(dtype=float))

    empty = quiet + pd.Timedelta(hours=24)
    got = _window(client, config, empty, tmp_path).assessment

    assert got.level == "warning" and [f.name for f in got.findings] == ["data_quality.no_rows"]
    assert got.findings[0].value == 400 and got.findings[0].threshold == CFG.monitoring.min_rows
    assert "median of 400 per hour (traffic was expected)" in got.findings[0].detail
    metrics = _metrics_at(client, run_id, empty)
    assert metrics["rows"] == 0 and metrics["data_quality.no_rows"] == 1 and metrics["alert_level"] == 1


def test_a_version_without_profile_and_broken_outcomes_still_give_kpis(client, served, tmp_path) -> None:
    from include.monitoring.delayed_labels import log_outcomes

    config = _dq_config(tmp_path)
    hour = DQ_HOUR + pd.Timedelta(hours=3)
    batch = _log_hour_of_traffic(tmp_path, hour, "99")  # a version the registry does not know
    arrived = batch.rename(columns={"application_id": "request_id"})[["request_id", "defaulted", "repaid_amount"]]
    outcomes = tmp_path / "outcomes"
    log_outcomes(outcomes, arrived, arrived_at=hour + pd.Timedelta(days=1))
    log_outcomes(outcomes, arrived.head(10).assign(defaulted="maybe"), arrived_at=hour)  # text labels
    day = outcomes / f"date={hour + pd.Timedelta(days=1):%Y-%m-%d}"
    (day / "broken.parquet").write_bytes(b"not parquet")
    arrived[["request_id"]].to_parquet(day / "no-columns.parquet")

    got = _window(client, config, hour, tmp_path).assessment

    names = {f.name: f for f in got.findings}
    assert "version '99' (served, per the inference log) is not registered" in names[
        "data_quality.no_reference_profile"].detail
    assert names["data_quality.outcomes_unreadable"].value == 2
    assert "broken.parquet" in names["data_quality.outcomes_unreadable"].detail
    assert "no-columns.parquet" in names["data_quality.outcomes_unreadable"].detail
    assert got.drift is None and got.version == "99"
    assert got.kpis["default_precision"]["value"] is not None  # from the outcome file that could be read


def test_mostly_nan_predictions_are_critical(client, served, tmp_path) -> None:
    config = _dq_config(tmp_path)
    hour = DQ_HOUR + pd.Timedelta(hours=4)
    batch = generate_batch(300, seed=12, start=hour.isoformat(), hours=1)
    scores = np.where(np.arange(300) < 200, np.nan, 0.2)
    inference_log.log_predictions(DQ_MODEL, served, "online", batch[list(TYPES)], scores, ts=batch["applied_at"],
                                  root=tmp_path / "log")

    got = _window(client, config, hour, tmp_path).assessment

    assert got.level == "critical" and got.findings[0].name == "critical"
    assert got.findings[1].name == "data_quality.invalid_predictions"
    assert got.findings[1].value == pytest.approx(2 / 3)
    assert got.kpis["approval_rate"]["rows"] == 100


def test_an_alert_about_an_unregistered_version_is_audited_on_the_model(client, served) -> None:
    import json as _json

    hour = HourAssessment(DQ_MODEL, "99", DQ_HOUR.isoformat(), 300, "warning", "no profile")
    finding = Finding("data_quality.no_reference_profile", 1.0, 1.0, "version '99' is not registered")

    assessment.audit_alert(client, hour, [finding], [], "test", "monitor_credit_dq", "r1")

    tags = client.get_registered_model(DQ_MODEL).tags
    [record] = [_json.loads(v) for k, v in tags.items() if k.startswith("audit.") and k.endswith(".alert.warning")]
    assert record["version"] is None and record["details"]["served_version"] == "99"
    assert record["details"]["findings"][0]["name"] == "data_quality.no_reference_profile"


# --- which hour a run assesses ---------------------------------------------------------------------

from datetime import UTC, datetime  # noqa: E402

from include.monitoring.assessment import find_gap, run_window  # noqa: E402

NOW = pd.Timestamp("2026-11-05T12:20Z")
INTERVAL = (pd.Timestamp("2026-11-05T11:00Z"), pd.Timestamp("2026-11-05T12:00Z"))


def _span(window) -> tuple[str, str, str]:
    return f"{window.start:%d %H:%M}", f"{window.end:%d %H:%M}", window.source


def test_a_scheduled_run_assesses_its_data_interval() -> None:
    scheduled = run_window(run_type="scheduled", run_after=INTERVAL[1], data_interval=INTERVAL,
                           logical_date=INTERVAL[0], now=NOW)
    named = run_window(run_type="scheduled", run_after=INTERVAL[1], data_interval=INTERVAL,
                       logical_date=INTERVAL[0], hour="2026-11-01T00:00:00Z", now=NOW)
    backfill = run_window(run_type="backfill", run_after=INTERVAL[1], data_interval=INTERVAL,
                          logical_date=INTERVAL[0], now=NOW)

    assert _span(scheduled) == ("05 11:00", "05 12:00", "data_interval")
    assert scheduled.check_gaps and scheduled.warnings == ()
    assert _span(named) == _span(scheduled)  # a scheduled run is keyed by its interval
    assert "param 'hour' ('2026-11-01T00:00:00Z') is ignored" in named.warnings[0]
    assert _span(backfill) == _span(scheduled) and not backfill.check_gaps  # a back-fill fills gaps
    with pytest.raises(ValueError, match="scheduled run has no data interval"):
        run_window(run_type="scheduled", run_after=NOW, data_interval=(None, None), now=NOW)


@pytest.mark.parametrize("hour", [
    "2026-11-05T10:00:00Z", "2026-11-05T10:00", " 2026-11-05 10:59:59.5 ", "2026-11-05T12:30:00+02:00",
    "2026-11-05T05:15-05:00", datetime(2026, 11, 5, 10, 0, tzinfo=UTC), pd.Timestamp("2026-11-05T10:00"),
])
def test_a_manual_run_assesses_the_hour_it_names(hour) -> None:
    window = run_window(run_type="manual", run_after=NOW, hour=hour, now=NOW)

    assert _span(window) == ("05 10:00", "05 11:00", "hour") and window.check_gaps
    # the hour it names wins over the data interval a logical date gave the run
    with_date = run_window(run_type="manual", run_after=NOW, hour=hour, data_interval=INTERVAL,
                           logical_date=NOW, now=NOW)
    assert _span(with_date) == _span(window)


def test_a_manual_run_without_an_hour_assesses_the_last_complete_hour() -> None:
    assert _span(run_window(run_type="manual", run_after=NOW, now=NOW)) == ("05 11:00", "05 12:00",
                                                                            "last_complete_hour")
    assert _span(run_window(run_type="manual", run_after=pd.Timestamp("2026-11-05T12:00Z"), hour="", now=NOW)) == (
        "05 11:00", "05 12:00", "last_complete_hour")
    # without a zone, it is UTC; an asset or operator trigger is like a manual run
    assert _span(run_window(run_type="operator_triggered", run_after=datetime(2026, 11, 5, 9, 59), hour=None,
                            now=NOW))[:2] == ("05 08:00", "05 09:00")
    # given a logical date (the UI's default is the time of the trigger): its data interval, the last that ended
    ui = run_window(run_type="manual", run_after=NOW, data_interval=INTERVAL, logical_date=NOW, now=NOW)
    assert _span(ui) == ("05 11:00", "05 12:00", "data_interval") and ui.warnings == ()
    # a zero-length interval (an unscheduled DAG given a logical date): the last hour that ended by then
    exact = (pd.Timestamp("2026-11-05T12:07Z"),) * 2
    assert _span(run_window(run_type="manual", run_after=NOW, data_interval=exact, logical_date=exact[0],
                            now=NOW))[:2] == ("05 11:00", "05 12:00")


@pytest.mark.parametrize(("hour", "message"), [
    ("garbage", "param 'hour': 'garbage' is not an ISO 8601 date-time"),
    ("10:00", "param 'hour': '10:00' is not an ISO 8601 date-time"),
    ("2026-13-05T10:00Z", "param 'hour': '2026-13-05T10:00Z' is not an ISO 8601 date-time"),
    (42, r"param 'hour': 42 \(int\) is not a date-time"),
    ("2026-11-05T12:00:00Z", "names the hour 2026-11-05 12:00 UTC, which has not ended yet"),
    ("2026-11-06T00:00:00Z", "which has not ended yet"),
])
def test_a_bad_hour_is_refused_naming_the_param(hour, message) -> None:
    with pytest.raises(ValueError, match=message):
        run_window(run_type="manual", run_after=NOW, hour=hour, now=NOW)


def test_a_manual_run_given_the_logical_date_of_a_scheduled_run_is_warned_about() -> None:
    boundary = run_window(run_type="manual", run_after=NOW, data_interval=INTERVAL, logical_date=INTERVAL[1], now=NOW)
    named = run_window(run_type="manual", run_after=NOW, data_interval=INTERVAL, logical_date=INTERVAL[1],
                       hour="2026-11-05T09:00Z", now=NOW)

    assert _span(boundary) == ("05 11:00", "05 12:00", "data_interval")
    [warning] = boundary.warnings
    assert "took the logical date 2026-11-05 12:00:00+00:00" in warning and "scheduled run" in warning
    assert '"logical_date": null' in warning
    assert _span(named)[2] == "hour" and named.warnings == boundary.warnings


# --- the hours no run assessed -------------------------------------------------------------------

G = pd.Timestamp("2026-11-05T12:00Z")


def _assessed(*offsets: int, span: float = 1.0) -> dict[int, float]:
    return {assessment.hour_step(G + pd.Timedelta(hours=o)): span for o in offsets}


def test_find_gap_lists_the_hours_since_the_last_assessed_one() -> None:
    assert find_gap({}, G) is None  # the model's first assessment
    assert find_gap(_assessed(-3, -2, -1), G) is None
    assert find_gap(_assessed(-3, -2, -1, 0, 1), G) is None  # a re-assessment of G
    assert find_gap(_assessed(-1, 2), G) is None  # windows at or after G do not count

    gap = find_gap(_assessed(-4, -3), G)
    assert [f"{h:%H}" for h in gap.hours] == ["10", "11"] and gap.last_assessed == G - pd.Timedelta(hours=3)
    assert not gap.beyond_lookback
    # a hole before the last assessed hour was the previous run's to report
    assert find_gap(_assessed(-3, -1), G) is None
    assert [f"{h:%H}" for h in find_gap(_assessed(-3, -1), G - pd.Timedelta(hours=1)).hours] == ["10"]


def test_find_gap_counts_the_hours_a_longer_window_covered() -> None:
    assert find_gap(_assessed(-3, span=3.0), G) is None  # 09:00-12:00
    assert [f"{h:%H}" for h in find_gap(_assessed(-3, span=2.0), G).hours] == ["11"]
    assert find_gap(_assessed(-1, span=4.0), G) is None  # a window past G


def test_find_gap_looks_back_a_bounded_number_of_hours() -> None:
    gap = find_gap(_assessed(-200), G, lookback_hours=168)

    assert len(gap.hours) == 168 and gap.hours[-1] == G - pd.Timedelta(hours=1) and gap.beyond_lookback
    assert gap.last_assessed == G - pd.Timedelta(hours=200)
    issue = assessment.gap_issue(CFG, gap)
    assert (issue.kind, issue.count, issue.value, issue.threshold, issue.fires) == ("unassessed_hours", 168, 168.0,
                                                                                    1.0, True)
    assert "none was assessed in the 168 h looked back; the last assessed hour started 2026-10-28 04:00 UTC" \
        in issue.detail


def test_the_gap_finding_names_the_hours_and_the_run_that_assesses_one() -> None:
    gap = find_gap(_assessed(-6, -4), G)  # 09:00, 10:00, 11:00 unassessed
    issue = assessment.gap_issue(CFG, gap)

    assert issue.name == "data_quality.unassessed_hours" and issue.count == 3
    assert "3 hour(s) before this one were not assessed by any monitoring run (hours starting, UTC): " \
           "2026-11-05 09:00 to 2026-11-05 11:00 (3 h); the last assessed hour before them started " \
           "2026-11-05 08:00 UTC" in issue.detail
    assert 'manual run of monitor_credit_approval: logical_date null, conf {"hour": "2026-11-05T11:00:00Z"}' \
        in issue.detail
    many = assessment.gap_issue(CFG, assessment.Gap(tuple(G - pd.Timedelta(hours=2 * k) for k in range(7, 0, -1)),
                                                    G - pd.Timedelta(hours=15), 168))
    assert "2 earlier span(s), 2026-11-05 02:00, 2026-11-05 04:00" in many.detail


def test_a_gap_warns_even_in_a_quiet_hour_and_leaves_the_hour_healthy() -> None:
    gap = assessment.gap_issue(CFG, find_gap(_assessed(-3), G))

    quiet = _assess_dq([gap], rows=10)
    busy = _assess_dq([gap])

    assert quiet.level == "warning" and [f.name for f in quiet.findings] == ["data_quality.unassessed_hours"]
    assert busy.level == "warning" and [f.name for f in busy.findings] == ["data_quality.unassessed_hours"]
    assert quiet.healthy and busy.healthy  # a gap says nothing about this hour's own data


def test_each_gap_is_told_once() -> None:
    gap = Finding("data_quality.unassessed_hours", 1.0, 1.0, "11:00 unassessed")
    told = _state(gap.name, "warning", 1.0, G - pd.Timedelta(hours=2))

    assert due(_assessment("warning", gap, hour=G), told, cooldown_hours=6) == [gap]  # another gap, in the cooldown
    again = _state(gap.name, "warning", 1.0, G)
    assert due(_assessment("warning", gap, hour=G), again, cooldown_hours=6) == []  # a re-run of the same hour
    other = Finding("data_drift", 0.33, 0.3)  # other findings keep the cooldown
    assert due(_assessment("warning", other, hour=G), _state(other.name, "warning", 0.33, G - pd.Timedelta(hours=2)),
               cooldown_hours=6) == []


def test_a_skipped_hour_is_reported_by_the_next_assessment_and_filled_by_a_manual_one(client, tmp_path) -> None:
    config = CFG.model_copy(update={"name": "credit_gap"})  # a monitoring run of its own; no traffic needed
    run_id = assessment.monitoring_run(client, config)

    def assess(offset: int, hours: int = 1, check_gaps: bool = True):
        return _window(client, config, G + pd.Timedelta(hours=offset), tmp_path, champion=None, hours=hours,
                       check_gaps=check_gaps).assessment

    assert assess(0).findings == [] and assess(1).findings == []  # the first hours: nothing before them
    skipped = assess(3)  # 14:00 was not assessed

    assert skipped.level == "warning" and [f.name for f in skipped.findings] == ["data_quality.unassessed_hours"]
    assert "2026-11-05 14:00;" in skipped.findings[0].detail and skipped.findings[0].value == 1
    assert _metrics_at(client, run_id, G + pd.Timedelta(hours=3))["data_quality.unassessed_hours"] == 1
    assert assess(2).findings == []  # a manual run fills it
    assert assess(3).findings == []  # and the hour after no longer reports it
    step = assessment.hour_step(G + pd.Timedelta(hours=3))  # the re-assessment's point joins the first one's
    assert sorted(p.value for p in client.get_metric_history(run_id, "data_quality.unassessed_hours")
                  if p.step == step) == [0.0, 1.0]
    assert assess(4, hours=2).findings == []  # a two-hour window: 16:00 and 17:00
    assert _metrics_at(client, run_id, G + pd.Timedelta(hours=4))["window_hours"] == 2
    assert assess(6).findings == []
    assert assess(9, check_gaps=False).findings == []  # a back-fill does not report 19:00 and 20:00
    late = assess(11)
    assert [f.name for f in late.findings] == ["data_quality.unassessed_hours"] and late.findings[0].value == 1
    assert "2026-11-05 22:00;" in late.findings[0].detail
