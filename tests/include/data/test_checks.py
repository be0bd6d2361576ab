"""Tests for include.data.checks: what validation refuses before training, and the quarantine it leaves in MLflow."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import get_model_config
from include.data.checks import fingerprint, validate
from include.data.dataset import DatasetError, write_dataset
from include.data.fingerprint import dataset_fingerprint
from include.data.validation import DataValidationError
from include.demo.datagen import generate_batch

CONFIG = get_model_config("credit_approval")
AS_OF = datetime(2026, 11, 30, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate_batch(1500, seed=5, start="2026-10-01T00:00:00Z", hours=24 * 30)


def _run(client: MlflowClient, name: str) -> str:
    return tracking.upsert_run(client, "data-checks-tests", {"test": name}, name)


def _refused(client: MlflowClient, tmp_path: Path, frame: pd.DataFrame, name: str, suffix: str = ".parquet"):
    uri = str(tmp_path / f"{name}{suffix}")
    write_dataset(frame, uri)
    run_id = _run(client, name)
    with pytest.raises(DataValidationError) as info:
        validate(client, CONFIG, uri, run_id, as_of=AS_OF)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["quarantine"] == "rejected"
    assert run.data.tags["data_fingerprint"].startswith("sha256:")
    return str(info.value), run


def test_a_clean_batch_passes_from_parquet_and_from_csv(client: MlflowClient, tmp_path: Path, clean: pd.DataFrame) -> None:
    for suffix in (".parquet", ".csv"):  # the CSV's timestamps used to arrive as text and fail the suite
        uri = str(tmp_path / f"clean{suffix}")
        write_dataset(clean, uri)
        run_id = _run(client, f"clean{suffix}")
        result = validate(client, CONFIG, uri, run_id, as_of=AS_OF)
        assert result["rows"] == len(clean)
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING"  # training goes on in this run
        assert run.data.tags["validation.status"] == "passed"
        assert "quarantine" not in run.data.tags


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e308, -5e12])
def test_non_finite_and_implausibly_large_numbers_are_refused(client, tmp_path, clean, value) -> None:
    frame = clean.copy()
    frame.loc[[3, 9], "annual_income"] = value
    frame.loc[[4], "employment_years"] = value
    summary, _ = _refused(client, tmp_path, frame, f"huge-{value}")
    assert "annual_income: expect_column_values_to_be_between — 2 of 1500 values unexpected" in summary
    assert "employment_years: expect_column_values_to_be_between — 1 of 1500 values unexpected" in summary


def test_timestamps_after_the_logical_date_are_refused(client, tmp_path, clean) -> None:
    frame = clean.copy()
    frame.loc[[0, 1, 2], "applied_at"] = frame.loc[[0, 1, 2], "applied_at"] + pd.DateOffset(years=70)
    summary, _ = _refused(client, tmp_path, frame, "future")
    assert "applied_at: expect_column_values_to_be_between — 3 of 1500 values unexpected" in summary
    # The same rows are fine for a run 70 years on: the window follows the run's logical date.
    uri = str(tmp_path / "future.parquet")
    assert validate(client, CONFIG, uri, _run(client, "future-later"), as_of=datetime(2097, 1, 1, tzinfo=UTC))


def test_max_age_days_refuses_old_rows(client, tmp_path, clean) -> None:
    config = CONFIG.model_copy(update={"dataset": CONFIG.dataset.model_copy(update={
        "checks": CONFIG.dataset.checks.model_copy(update={"max_age_days": 30.0})})})
    uri = str(tmp_path / "old.parquet")
    write_dataset(clean, uri)
    run_id = _run(client, "old")
    with pytest.raises(DataValidationError, match=r"applied_at: expect_column_values_to_be_between"):
        validate(client, config, uri, run_id, as_of=AS_OF)


def test_labels_outside_the_classes_are_refused(client, tmp_path, clean) -> None:
    frame = clean.copy()
    frame.loc[[5, 6], "defaulted"] = 2
    summary, _ = _refused(client, tmp_path, frame, "label-2")
    assert "defaulted: expect_column_values_to_be_in_set — 2 of 1500 values unexpected, e.g. [2, 2]" in summary


def test_a_single_class_is_refused_naming_the_split_and_the_counts(client, tmp_path, clean) -> None:
    summary, _ = _refused(client, tmp_path, clean.assign(defaulted=0), "single-class")
    assert "defaulted: min_rows_per_class — the training split has too few rows (class 1: 0 rows" in summary
    assert "the holdout split has too few rows (class 1: 0 rows" in summary


def test_identical_rows_land_on_one_side_of_the_split_and_are_refused(client, tmp_path, clean) -> None:
    frame = pd.concat([clean.iloc[[0]]] * 600 + [clean.iloc[[1]].assign(defaulted=1 - clean.iloc[0]["defaulted"])] * 600,
                      ignore_index=True)
    summary, _ = _refused(client, tmp_path, frame, "identical")
    assert "min_rows_per_class" in summary


def test_unreadable_data_is_quarantined_with_a_digest_of_its_files(client, tmp_path, clean) -> None:
    good = tmp_path / "good.parquet"
    write_dataset(clean, str(good))
    raw = good.read_bytes()
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(raw[: len(raw) // 2] + bytes(4000) + raw[len(raw) // 2 + 4000:])
    run_id = _run(client, "broken")
    with pytest.raises(DatasetError, match=r"broken\.parquet"):
        validate(client, CONFIG, str(broken), run_id, as_of=AS_OF)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["quarantine"] == "rejected"
    assert run.data.tags["quarantine.reason"].startswith("unreadable: ")
    assert run.data.tags["files_sha256"].startswith("sha256:")


def test_a_column_of_another_type_is_quarantined_naming_file_and_column(client, tmp_path, clean) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    clean.to_parquet(folder / "a.parquet", index=False)
    clean.assign(age=clean["age"].astype(str)).to_parquet(folder / "b.parquet", index=False)
    run_id = _run(client, "mixed")
    with pytest.raises(DatasetError, match=r"b\.parquet: column 'age' is text \(string\), declared int"):
        validate(client, CONFIG, str(folder), run_id, as_of=AS_OF)
    assert client.get_run(run_id).data.tags["quarantine"] == "rejected"


def test_the_fingerprint_is_a_run_tag_and_the_logged_datasets_mlflow_digest(client, tmp_path, clean) -> None:
    uri = str(tmp_path / "fingerprinted.parquet")
    write_dataset(clean, uri)
    run_id = _run(client, "fingerprinted")

    result = fingerprint(client, CONFIG, uri, run_id)

    assert result["data_fingerprint"] == dataset_fingerprint(clean, CONFIG.dataset.column_types)
    run = client.get_run(run_id)
    assert run.data.tags["data_fingerprint"] == result["data_fingerprint"]
    (logged,) = run.inputs.dataset_inputs
    assert logged.dataset.digest == result["data_fingerprint"].removeprefix("sha256:")[:32]
    assert logged.dataset.source and [t.value for t in logged.tags if t.key == "mlflow.data.context"] == ["training"]
