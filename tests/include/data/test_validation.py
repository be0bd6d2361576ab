"""Tests for include.data.validation: the credit_approval suite on clean and faulty frames, reports, bad suites."""

from __future__ import annotations

import json
from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd
import pytest
from great_expectations.data_context import project_manager

from include.data.validation import DataValidationError, load_suite, validate_dataframe

SUITE = Path(__file__).resolve().parents[3] / "config" / "expectations" / "credit_approval.json"
CATEGORIES = {
    "home_ownership": ["rent", "own", "mortgage"],
    "loan_purpose": ["debt_consolidation", "home_improvement", "car", "business", "education", "medical"],
    "region": ["north", "south", "east", "west"],
}


def clean_frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    """A frame that satisfies the table's schema, built from numpy draws."""
    rng = np.random.default_rng(seed)
    loan = np.round(rng.uniform(1_000, 100_000, n), 2)
    defaulted = (rng.random(n) < 0.2).astype(np.int64)
    frame = pd.DataFrame(
        {
            "application_id": [f"APP-{i:09d}" for i in range(n)],
            "applied_at": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 86_400, n)), unit="s"),
            "age": rng.integers(18, 91, n),
            "annual_income": np.round(np.exp(rng.normal(np.log(60_000), 0.5, n)), 2),
            "loan_amount": loan,
            "credit_score": rng.integers(300, 851, n),
            "employment_years": np.round(rng.uniform(0, 50, n), 1),
            "debt_to_income": np.round(rng.uniform(0, 1.5, n), 4),
            **{column: rng.choice(levels, n).astype(object) for column, levels in CATEGORIES.items()},
            "defaulted": defaulted,
            "repaid_amount": np.where(defaulted == 1, np.round(loan * rng.uniform(0, 0.6, n), 2), loan),
        }
    )
    return frame


def wrong_types(df: pd.DataFrame) -> pd.DataFrame:
    values = df["annual_income"].to_numpy(dtype=object)
    values[[3, 50, 400]] = ["N/A", "12k", "unknown"]
    return df.assign(annual_income=values)


def nulls(df: pd.DataFrame) -> pd.DataFrame:
    values = df["credit_score"].astype("Int64")
    values.iloc[[0, 7, 99]] = pd.NA
    return df.assign(credit_score=values)


def out_of_range(df: pd.DataFrame) -> pd.DataFrame:
    age = df["age"].copy()
    age.iloc[[1, 2]] = [150, -3]
    return df.assign(age=age)


def missing_column(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["debt_to_income"])


def test_clean_frame_passes_silently(capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    report = validate_dataframe(clean_frame(), SUITE)

    assert report.success, report.summary()
    assert report.failures == []
    assert report.statistics["evaluated_expectations"] == len(json.loads(SUITE.read_text())["expectations"])
    assert report.summary().startswith("Validation passed")
    assert report.json_path is None and report.docs_path is None
    json.dumps(report.result)  # plain JSON data
    assert capfd.readouterr() == ("", "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("corrupt", "column", "expectation", "detail"),
    [
        (wrong_types, "annual_income", "expect_column_values_to_be_in_type_list", "3 of 500 values unexpected"),
        (nulls, "credit_score", "expect_column_values_to_not_be_null", "3 of 500 values are null"),
        (out_of_range, "age", "expect_column_values_to_be_between", "2 of 500 values unexpected"),
        (missing_column, "debt_to_income", "expect_table_columns_to_match_set", "missing columns ['debt_to_income']"),
    ],
)
def test_faulty_frame_fails_naming_the_column(corrupt, column: str, expectation: str, detail: str) -> None:
    report = validate_dataframe(corrupt(clean_frame()), SUITE)

    assert not report.success
    summary = report.summary()
    assert summary.startswith("Validation failed: ")
    assert column in summary
    assert any(f.expectation_type == expectation and detail in f.detail for f in report.failures), summary
    assert {f.column for f in report.failures} <= {column, None}
    assert "Traceback" not in summary


def test_wrong_types_show_the_offending_values() -> None:
    report = validate_dataframe(wrong_types(clean_frame()), SUITE)
    (type_failure,) = [f for f in report.failures if f.expectation_type == "expect_column_values_to_be_in_type_list"]
    assert type_failure.column == "annual_income"
    assert sorted(type_failure.detail.split("e.g. ")[1].strip("[]").replace("'", "").split(", ")) == ["12k", "N/A", "unknown"]


def test_missing_column_reports_errored_expectations_concisely() -> None:
    report = validate_dataframe(missing_column(clean_frame()), SUITE)

    errored = [f for f in report.failures if f.errored]
    assert errored and all(f.column == "debt_to_income" for f in errored)
    assert all(f.detail == "could not run: column 'debt_to_income' is missing" for f in errored)
    lines = report.summary().splitlines()
    assert lines[0] == f"Validation failed: {len(report.failures)} of {report.statistics['evaluated_expectations']} expectations"
    assert lines[1] == "- (table): expect_table_columns_to_match_set — missing columns ['debt_to_income']"
    assert len(lines) == 1 + len(report.failures)


def test_report_dir_gets_json_and_data_docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    report_dir = tmp_path / "report"

    report = validate_dataframe(missing_column(clean_frame()), SUITE, report_dir=report_dir)

    assert report.json_path == report_dir / "validation_result.json"
    saved = json.loads(report.json_path.read_text())
    assert saved["success"] is False
    assert saved["statistics"] == report.statistics
    assert report.docs_path is not None and report.docs_path.suffix == ".html"
    assert report.docs_path.is_relative_to(report_dir / "data_docs")
    assert (report_dir / "data_docs" / "index.html").is_file()
    page = report.docs_path.read_text()
    assert "credit_approval" in page
    assert "values must never be null" in page  # GX renders expectations as prose...
    assert "expect_column_values_to_not_be_null" in page  # ...and names the ones that raised
    for column in clean_frame(n=1).columns:
        assert column in page
    assert list(workdir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "report"]


def test_data_validation_error_carries_the_report() -> None:
    report = validate_dataframe(out_of_range(clean_frame()), SUITE)
    error = DataValidationError(report)
    assert isinstance(error, ValueError)
    assert error.report is report
    assert str(error) == report.summary()


def test_current_gx_context_is_restored() -> None:
    context = gx.get_context(mode="ephemeral")
    validate_dataframe(clean_frame(), SUITE)
    assert project_manager.get_current_project() is context


def test_load_suite_builds_the_expectations() -> None:
    suite = load_suite(SUITE)
    assert suite.name == "credit_approval"
    assert len(suite.expectations) == len(json.loads(SUITE.read_text())["expectations"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"name": "s", "expectations": [{"type": "expect_nothing_at_all", "kwargs": {}}]}', "'expect_nothing_at_all'"),
        ('{"name": "s", "expectations": [{"type": "expect_column_values_to_be_between", "kwargs": {"min_value": 1}}]}', "invalid configuration"),
        ('{"name": "s", "expectation": []}', "unknown keys ['expectation']"),
    ],
)
def test_bad_suite_file_is_a_value_error_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "broken_suite.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="broken_suite.json") as excinfo:
        validate_dataframe(clean_frame(), path)
    assert message in str(excinfo.value)


def test_missing_suite_file_is_a_value_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no_such_suite.json"):
        load_suite(tmp_path / "no_such_suite.json")

