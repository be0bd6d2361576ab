"""Data-quality findings: what is wrong with an hour's data, found from the read and from the values."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from include.config import get_model_config
from include.demo.datagen import generate_batch
from include.monitoring.data_quality import DataQualityIssue, drift_quality, frame_quality, no_rows, read_quality
from include.monitoring.inference_log import LogRead, ReadIssue
from include.monitoring.reference_profile import ReferenceProfile

CFG = get_model_config("credit_approval")
TYPES = {c.name: c.type for c in CFG.dataset.features}


def test_frame_quality_names_each_unusable_column(profile: ReferenceProfile) -> None:
    frame = generate_batch(400, seed=3)[list(TYPES)].assign(
        region=None,  # nothing at all
        annual_income=lambda f: f["annual_income"].where(f.index >= 20, np.inf),  # 20 infinities
        credit_score=300,  # a value the reference never has, in every row
        loan_purpose=lambda f: f["loan_purpose"].iloc[0],  # a common value, but in all 400 rows
        prediction=np.where(np.arange(400) < 8, np.nan, 0.3),
    )
    frame.loc[8, "prediction"] = 1.7

    issues = {i.name: i for i in frame_quality(CFG, frame, profile)}

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
    assert "data_quality.constant.loan_purpose" not in {i.name for i in frame_quality(five, few, profile)}
    assert "data_quality.constant.loan_purpose" in {
        i.name for i in frame_quality(five, few.assign(loan_purpose="medical"), profile)}  # 0.0975 ** 5


def test_read_quality_groups_the_reads_issues_per_kind_and_column() -> None:
    frame = pd.DataFrame({"request_id": [str(i) for i in range(200)]})
    issues = (
        ReadIssue("unreadable_file", "/log/a.parquet", None, 40, "cannot be read as Parquet (truncated)"),
        ReadIssue("missing_column", "/log/b.parquet", "age", 50, "has no 'age' column (50 row(s))"),
        ReadIssue("missing_column", "/log/c.parquet", "model_version", 200, "has no 'model_version' column"),
        ReadIssue("wrong_type", "/log/d.parquet", "annual_income", 4, "column 'annual_income': 4 value(s)"),
        ReadIssue("wrong_type", "/log/e.parquet", "annual_income", 6, "column 'annual_income': 6 value(s)"),
        ReadIssue("wrong_type", "/log/f.parquet", "prediction", 3, "column 'prediction': 3 value(s)"),
    )

    found = {i.name: i for i in read_quality(CFG, LogRead(frame, issues, files=6))}

    assert set(found) == {"data_quality.unreadable_file", "data_quality.missing_feature.age",
                          "data_quality.missing_column.model_version", "data_quality.wrong_type.annual_income"}
    unreadable = found["data_quality.unreadable_file"]
    assert (unreadable.count, unreadable.value, unreadable.threshold, unreadable.files) == (1, 1.0, 1.0,
                                                                                           ("/log/a.parquet",))
    assert "1 inference log file(s) could not be read and were left out (40 row(s) by their footers)" \
        in unreadable.detail
    wrong = found["data_quality.wrong_type.annual_income"]
    assert (wrong.count, wrong.value, wrong.files) == (10, 0.05, ("/log/d.parquet", "/log/e.parquet"))
    assert found["data_quality.missing_column.model_version"].value == 1.0
    assert "none of the hour's 200 row(s) has it" in found["data_quality.missing_column.model_version"].detail
    assert "missing from 1 log file(s) (50 of 200 rows, null there)" in found["data_quality.missing_feature.age"].detail


def test_an_empty_hour_warns_only_when_traffic_was_expected() -> None:
    start = pd.Timestamp("2026-06-01T10:00Z")
    busy = no_rows(CFG, start, start + pd.Timedelta(hours=1), expected=400.0)
    quiet = no_rows(CFG, start, start + pd.Timedelta(hours=1), expected=3.0)

    assert (busy.value, busy.threshold, busy.fires) == (400.0, CFG.monitoring.min_rows, True)
    assert "traffic was expected" in busy.detail
    assert not quiet.fires and f"below min_rows={CFG.monitoring.min_rows}: none expected" in quiet.detail


def test_a_feature_the_drift_check_skipped_is_reported_once() -> None:
    report = SimpleNamespace(skipped={"region": "no values", "age": "should be numeric, got dtype object"})
    already = [DataQualityIssue("all_null", "region", 300, 1.0, 0.01, "no value")]

    [issue] = drift_quality(report, already, 0.01)

    assert (issue.name, issue.fires) == ("data_quality.unchecked_feature.age", True)
    assert issue.detail == "drift of 'age' not checked: should be numeric, got dtype object"
