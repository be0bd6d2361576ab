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


# --- data quality: the hour is always assessed -------------------------------------------------

from include import drift, inference_log  # noqa: E402
from include.datagen import generate_batch  # noqa: E402
from include.monitoring import DataQualityIssue  # noqa: E402

TYPES = {c.name: c.type for c in CFG.dataset.features}


@pytest.fixture(scope="module")
def profile() -> drift.ReferenceProfile:
    return drift.build_profile(generate_batch(2000, seed=1), TYPES)


def _issue(kind: str, column: str | None, value: float, threshold: float = 0.01) -> DataQualityIssue:
    return DataQualityIssue(kind, column, 10, value, threshold, f"{kind} of {column}")


def _assess_dq(issues, *, rows: int = 400, deployed_days_ago: float = 30, drifted=()):
    return monitoring.assess(
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
    assert monitoring.assess(never, hour=HOUR, frame=_frame(400, 0.8), version="3", drift_report=_Report([]),
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

    issues = {i.name: i for i in monitoring.frame_quality(CFG, frame, profile)}

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
    assert "data_quality.constant.loan_purpose" not in {i.name for i in monitoring.frame_quality(five, few, profile)}
    assert "data_quality.constant.loan_purpose" in {
        i.name for i in monitoring.frame_quality(five, few.assign(loan_purpose="medical"), profile)}  # 0.0975 ** 5


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


def _window(client, config, hour, tmp_path, champion="1"):
    return monitoring.assess_window(client, config, hour, hour + pd.Timedelta(hours=1), champion=champion,
                                    root=str(tmp_path / "log"), now=hour + pd.Timedelta(days=2))


def _metrics_at(client, run_id: str, hour: pd.Timestamp) -> dict[str, float]:
    step = monitoring.hour_step(hour)
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
    run_id = monitoring.monitoring_run(client, config)

    first = _window(client, config, quiet, tmp_path).assessment  # no history: no traffic expected

    assert first.level == "skipped" and first.findings == [] and [i.kind for i in first.data_quality] == ["no_rows"]
    assert _metrics_at(client, run_id, quiet)["data_quality.no_rows"] == 1
    for back in range(1, 6):  # busy hours before the next empty one
        hour = quiet + pd.Timedelta(hours=24 - back)
        monitoring.log_hour(client, run_id, HourAssessment(DQ_MODEL, "1", hour.isoformat(), 400, "ok", "test"),
                            pd.Series(dtype=float))

    empty = quiet + pd.Timedelta(hours=24)
    got = _window(client, config, empty, tmp_path).assessment

    assert got.level == "warning" and [f.name for f in got.findings] == ["data_quality.no_rows"]
    assert got.findings[0].value == 400 and got.findings[0].threshold == CFG.monitoring.min_rows
    assert "median of 400 per hour (traffic was expected)" in got.findings[0].detail
    metrics = _metrics_at(client, run_id, empty)
    assert metrics["rows"] == 0 and metrics["data_quality.no_rows"] == 1 and metrics["alert_level"] == 1


def test_a_version_without_profile_and_broken_outcomes_still_give_kpis(client, served, tmp_path) -> None:
    from include.outcomes import log_outcomes

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

    monitoring.audit_alert(client, hour, [finding], [], "test", "monitor_credit_dq", "r1")

    tags = client.get_registered_model(DQ_MODEL).tags
    [record] = [_json.loads(v) for k, v in tags.items() if k.startswith("audit.") and k.endswith(".alert.warning")]
    assert record["version"] is None and record["details"]["served_version"] == "99"
    assert record["details"]["findings"][0]["name"] == "data_quality.no_reference_profile"
