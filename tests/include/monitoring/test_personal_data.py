"""Personal data in an hour's inputs: the ``personal_data`` finding at the configured tier, end to end on a real
MLflow store and a real inference log; never a value in what is recorded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.config import get_model_config
from include.demo.datagen import generate_batch
from include.governance.screening import screen_frame
from include.monitoring import assessment, inference_log, response
from include.monitoring.hourly import assess_window
from include.monitoring.reference_profile import log_profile

CFG = get_model_config("credit_approval")
TYPES = {c.name: c.type for c in CFG.dataset.features}
MODEL = "credit_pii"
HOUR = pd.Timestamp("2026-07-01T10:00Z")
CARDS = ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"]


@pytest.fixture(scope="module")
def served(client, runs, profile) -> str:
    """Version 1 of MODEL, registered with a reference profile in its training run."""
    import mlflow

    run_id, model_uri = runs[2]
    with mlflow.start_run(run_id=run_id):
        log_profile(profile)
    client.create_registered_model(MODEL)
    return str(client.create_model_version(MODEL, model_uri, run_id=run_id).version)


def _config(tmp_path, **screening):
    mon = CFG.monitoring.model_copy(update={"outcomes_uri": str(tmp_path / "outcomes"), "cold_start_days": 0})
    compliance = CFG.compliance.model_copy(update={
        "screening": CFG.compliance.screening.model_copy(update=screening)})
    return CFG.model_copy(update={"name": MODEL, "monitoring": mon, "compliance": compliance})


def _log_hour(tmp_path, hour: pd.Timestamp, version: str, rows: int = 300, cards: int = 0, seed: int = 21):
    batch = generate_batch(rows, seed=seed, start=hour.isoformat(), hours=1)
    features = batch[list(TYPES)].copy()
    if cards:  # a join gone wrong upstream
        features.loc[: cards - 1, "region"] = [CARDS[i % len(CARDS)] for i in range(cards)]
    scores = np.random.default_rng(seed).uniform(0, 1, rows)
    inference_log.log_predictions(MODEL, version, "online", features, scores, ts=batch["applied_at"],
                                  request_ids=batch["application_id"].tolist(), root=tmp_path / "log")


def _assess(client, config, hour, tmp_path):
    return assess_window(client, config, hour, hour + pd.Timedelta(hours=1), champion="1", root=str(tmp_path / "log"),
                         now=hour + pd.Timedelta(days=2), check_gaps=False)


def _recorded(client, run_id: str) -> str:
    """Everything the monitoring run holds as text: tags, params, metric names, artifact paths."""
    data = client.get_run(run_id).data
    paths, folders = [], [None]
    while folders:
        for item in client.list_artifacts(run_id, folders.pop()):
            (folders if item.is_dir else paths).append(item.path)
    return "\n".join([*data.tags.values(), *data.tags, *data.params.values(), *data.metrics, *paths])


def test_card_numbers_in_a_category_feature_are_a_warning_by_default(client, served, tmp_path) -> None:
    config = _config(tmp_path)
    _log_hour(tmp_path, HOUR, served, cards=12)

    result = _assess(client, config, HOUR, tmp_path)

    got = result.assessment
    found = {f.name: f for f in got.findings}
    finding = found["personal_data"]
    assert (finding.value, finding.threshold) == (12, 1)
    assert "12 of 300 rows hold personal data" in finding.detail and "region: card 12" in finding.detail
    assert got.level == "warning" and not got.healthy
    assert "critical" not in found
    assert response.action(got.findings) == response.WARN  # notify; nothing rolled back
    assert result.report_path is None  # Evidently's report would show the values
    assert any("Evidently report not written: the hour's inputs hold personal data (region)" in n for n in got.notes)
    said = "\n".join([got.reason, *(f.detail for f in got.findings), *(i.detail for i in got.data_quality),
                      *got.notes, str(got.as_dict()), _recorded(client, result.monitoring_run_id)])
    for card in CARDS:
        assert card not in said


def test_the_configured_tier_critical_makes_the_hour_critical_without_a_rollback(client, served, tmp_path) -> None:
    config = _config(tmp_path, inference_tier="critical")
    hour = HOUR + pd.Timedelta(hours=1)
    _log_hour(tmp_path, hour, served, cards=12, seed=22)

    got = _assess(client, config, hour, tmp_path).assessment

    assert got.level == "critical"
    assert "personal_data" in [f.name for f in got.findings] and "critical" not in [f.name for f in got.findings]
    assert response.action(got.findings) == response.WARN  # a critical alert; no rollback, no retraining


def test_personal_data_counts_below_min_rows_and_up_to_max_flagged_rows_is_tolerated(client, served, tmp_path) -> None:
    hour = HOUR + pd.Timedelta(hours=2)
    _log_hour(tmp_path, hour, served, rows=40, cards=3, seed=23)  # fewer than monitoring.min_rows

    few = _assess(client, _config(tmp_path), hour, tmp_path).assessment
    assert few.level == "warning" and [f.name for f in few.findings] == ["personal_data"]
    assert few.findings[0].value == 3

    tolerated = _assess(client, _config(tmp_path, max_flagged_rows=3), hour, tmp_path).assessment
    assert tolerated.level == "skipped" and tolerated.findings == []
    assert _assess(client, _config(tmp_path, enabled=False), hour, tmp_path).assessment.findings == []


def test_a_demo_hour_has_no_personal_data(client, served, tmp_path) -> None:
    hour = HOUR + pd.Timedelta(hours=3)
    _log_hour(tmp_path, hour, served, seed=24)

    result = _assess(client, _config(tmp_path), hour, tmp_path)

    assert "personal_data" not in [f.name for f in result.assessment.findings]
    assert result.report_path is not None  # the Evidently report is written as usual
    read = inference_log.read_checked(MODEL, hour, hour + pd.Timedelta(hours=1), features=TYPES,
                                      root=tmp_path / "log")
    screened = screen_frame(read.frame)
    assert screened.flagged_rows == 0 and "request_id" in [c.column for c in screened.columns]


def test_the_finding_from_a_report() -> None:
    frame = pd.DataFrame({"region": ["north"] * 5 + CARDS[:2], "notes": ["x"] * 6 + ["mail jane.doe@gmail.com"]})
    config = CFG
    finding = assessment.personal_data_finding(config, screen_frame(frame))
    assert finding.name == "personal_data" and (finding.value, finding.threshold) == (2, 1)
    assert "region: card 2; notes: email 1" in finding.detail and "jane" not in finding.detail
    assert assessment.personal_data_finding(config, screen_frame(frame.head(5))) is None


def test_data_quality_details_of_a_column_with_personal_data_are_withheld(client, served, tmp_path) -> None:
    hour = HOUR + pd.Timedelta(hours=4)
    batch = generate_batch(300, seed=25, start=hour.isoformat(), hours=1)
    features = batch[list(TYPES)].assign(region=CARDS[0])  # one value in every row: also a "constant" issue
    inference_log.log_predictions(MODEL, served, "online", features, np.full(300, 0.3), ts=batch["applied_at"],
                                  root=tmp_path / "log")

    got = _assess(client, _config(tmp_path), hour, tmp_path).assessment

    constant = next(i for i in got.data_quality if i.kind == "constant" and i.column == "region")
    assert constant.count == 300 and "details withheld: the column holds personal data" in constant.detail
    assert {f.name: f.value for f in got.findings}["personal_data"] == 300
    said = "\n".join([got.reason, *(f.detail for f in got.findings), *(i.detail for i in got.data_quality)])
    assert CARDS[0] not in said
