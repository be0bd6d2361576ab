"""One hour end to end on a real MLflow store and a real inference log: read, check, measure, decide, record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.config import get_model_config
from include.demo.datagen import generate_batch
from include.monitoring import history, inference_log
from include.monitoring.assessment import HourAssessment
from include.monitoring.delayed_labels import log_labels
from include.monitoring.hourly import assess_window
from include.monitoring.reference_profile import log_profile
from include.monitoring.windows import hour_step

CFG = get_model_config("credit_approval")
TYPES = {c.name: c.type for c in CFG.dataset.features}
G = pd.Timestamp("2026-11-05T12:00Z")

DQ_MODEL = "credit_dq"
DQ_HOUR = pd.Timestamp("2026-06-01T10:00Z")


@pytest.fixture(scope="module")
def served(client, runs, profile) -> str:
    """Version 1 of DQ_MODEL, registered with a reference profile in its training run."""
    import mlflow

    run_id, model_uri = runs[1]
    with mlflow.start_run(run_id=run_id):
        log_profile(profile)
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
    return assess_window(client, config, hour, hour + pd.Timedelta(hours=hours), champion=champion,
                         root=str(tmp_path / "log"), now=hour + pd.Timedelta(days=2), check_gaps=check_gaps)


def _metrics_at(client, run_id: str, hour: pd.Timestamp) -> dict[str, float]:
    step = hour_step(hour)
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
    run_id = history.monitoring_run(client, config)

    first = _window(client, config, quiet, tmp_path).assessment  # no history: no traffic expected

    assert first.level == "skipped" and first.findings == [] and [i.kind for i in first.data_quality] == ["no_rows"]
    assert _metrics_at(client, run_id, quiet)["data_quality.no_rows"] == 1
    for back in range(1, 6):  # busy hours before the next empty one
        hour = quiet + pd.Timedelta(hours=24 - back)
        history.log_hour(client, run_id, HourAssessment(DQ_MODEL, "1", hour.isoformat(), 400, "ok", "test"),
                         pd.Series(dtype=float))

    empty = quiet + pd.Timedelta(hours=24)
    got = _window(client, config, empty, tmp_path).assessment

    assert got.level == "warning" and [f.name for f in got.findings] == ["data_quality.no_rows"]
    assert got.findings[0].value == 400 and got.findings[0].threshold == CFG.monitoring.min_rows
    assert "median of 400 per hour (traffic was expected)" in got.findings[0].detail
    metrics = _metrics_at(client, run_id, empty)
    assert metrics["rows"] == 0 and metrics["data_quality.no_rows"] == 1 and metrics["alert_level"] == 1


def test_a_version_without_profile_and_broken_label_files_still_give_kpis(client, served, tmp_path) -> None:
    config = _dq_config(tmp_path)
    hour = DQ_HOUR + pd.Timedelta(hours=3)
    batch = _log_hour_of_traffic(tmp_path, hour, "99")  # a version the registry does not know
    arrived = batch.rename(columns={"application_id": "request_id"})[["request_id", "defaulted", "repaid_amount"]]
    labels = tmp_path / "outcomes"
    log_labels(labels, arrived, arrived_at=hour + pd.Timedelta(days=1))
    log_labels(labels, arrived.head(10).assign(defaulted="maybe"), arrived_at=hour)  # text, corrected a day later
    day = labels / f"date={hour + pd.Timedelta(days=1):%Y-%m-%d}"
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
    assert got.kpis["default_precision"]["value"] is not None  # from the label file that could be read


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


def test_a_skipped_hour_is_reported_by_the_next_assessment_and_filled_by_a_manual_one(client, tmp_path) -> None:
    config = CFG.model_copy(update={"name": "credit_gap"})  # a monitoring run of its own; no traffic needed
    run_id = history.monitoring_run(client, config)

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
    step = hour_step(G + pd.Timedelta(hours=3))  # the re-assessment's point joins the first one's
    assert sorted(p.value for p in client.get_metric_history(run_id, "data_quality.unassessed_hours")
                  if p.step == step) == [0.0, 1.0]
    assert assess(4, hours=2).findings == []  # a two-hour window: 16:00 and 17:00
    assert _metrics_at(client, run_id, G + pd.Timedelta(hours=4))["window_hours"] == 2
    assert assess(6).findings == []
    assert assess(9, check_gaps=False).findings == []  # a back-fill does not report 19:00 and 20:00
    late = assess(11)
    assert [f.name for f in late.findings] == ["data_quality.unassessed_hours"] and late.findings[0].value == 1
    assert "2026-11-05 22:00;" in late.findings[0].detail
