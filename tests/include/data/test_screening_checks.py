"""Personal data in a training batch: validation refuses it and the batch is quarantined, naming column, detector and
count; no value reaches MLflow (tags, the GX result, the Data Docs)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import get_model_config
from include.data.checks import screening_checks, validate
from include.data.dataset import write_dataset
from include.data.validation import DataValidationError
from include.demo.datagen import generate_batch

CONFIG = get_model_config("credit_approval")
AS_OF = datetime(2026, 11, 30, 12, tzinfo=UTC)
EMAILS = [f"applicant.{i}@gmail.com" for i in range(7)]
ROWS = [10, 25, 70, 300, 301, 999, 1400]


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate_batch(1500, seed=5, start="2026-10-01T00:00:00Z", hours=24 * 30)


@pytest.fixture(scope="module")
def with_emails(clean: pd.DataFrame) -> pd.DataFrame:
    frame = clean.copy()
    frame.loc[ROWS, "loan_purpose"] = EMAILS  # an upstream join put contact details into a category feature
    return frame


def _with_screening(**settings):
    screening = CONFIG.compliance.screening.model_copy(update=settings)
    return CONFIG.model_copy(update={"compliance": CONFIG.compliance.model_copy(update={"screening": screening})})


def _validate(client: MlflowClient, tmp_path: Path, frame: pd.DataFrame, name: str, config=CONFIG):
    uri = str(tmp_path / f"{name}.parquet")
    write_dataset(frame, uri)
    run_id = tracking.upsert_run(client, "screening-checks-tests", {"test": name}, name)
    return uri, run_id, lambda: validate(client, config, uri, run_id, as_of=AS_OF)


def _artifact_texts(client: MlflowClient, run_id: str, tmp_path: Path) -> str:
    folder = Path(client.download_artifacts(run_id, "validation", str(tmp_path)))
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_a_batch_with_emails_in_a_column_is_quarantined_naming_column_and_count(client, tmp_path, with_emails) -> None:
    _, run_id, run = _validate(client, tmp_path, with_emails, "emails")

    with pytest.raises(DataValidationError) as info:
        run()

    summary = str(info.value)
    assert "- loan_purpose: personal_data — email: 7 of 1500 rows flagged (compliance.screening" in summary
    assert "max_flagged_rows=0" in summary
    run_info = client.get_run(run_id)
    assert run_info.info.status == "FAILED"
    tags = run_info.data.tags
    assert tags["quarantine"] == "rejected" and tags["validation.status"] == "failed"
    assert "loan_purpose: personal_data — email: 7 of 1500 rows flagged" in tags["quarantine.reason"]
    assert tags["data_fingerprint"].startswith("sha256:")
    # The suite's value-set check on the same column fails too: its count stays, its examples are withheld.
    assert ("loan_purpose: expect_column_values_to_be_in_set — 7 of 1500 values unexpected "
            "(examples withheld: the column holds personal data)") in summary
    artifacts = _artifact_texts(client, run_id, tmp_path)
    assert '"personal_data"' in artifacts and '"email": 7' in artifacts  # project_checks.json, screening.json
    everything = "\n".join([summary, *tags.values(), *run_info.data.params.values(), artifacts])
    for email in EMAILS:
        assert email not in everything and email.split("@")[0] not in everything
    # No version can be made of it: the run is closed and marked; training never starts (tasks stop on the error).


def test_screening_checks_count_one_check_per_column_screened(with_emails, clean) -> None:
    failures, evaluated, report = screening_checks(with_emails, CONFIG)
    assert [(f.expectation_type, f.column) for f in failures] == [("personal_data", "loan_purpose")]
    assert evaluated == len(report.columns) == 4  # application_id, and the three category features
    assert screening_checks(clean, CONFIG)[0] == []


def test_flagged_rows_up_to_max_flagged_rows_are_tolerated(client, tmp_path, with_emails) -> None:
    _, run_id, run = _validate(client, tmp_path, with_emails, "tolerated", _with_screening(max_flagged_rows=7))
    with pytest.raises(DataValidationError) as info:
        run()  # the value set still refuses the e-mails: only the screen tolerates them
    assert "personal_data" not in str(info.value) and "examples withheld" in str(info.value)
    tags = client.get_run(run_id).data.tags
    assert tags["quarantine"] == "rejected" and not any(e in tags["quarantine.reason"] for e in EMAILS)


def test_a_clean_batch_passes_and_disabled_screening_adds_no_check(client, tmp_path, clean) -> None:
    uri, run_id, run = _validate(client, tmp_path, clean, "clean")
    assert run()["rows"] == 1500
    assert client.get_run(run_id).data.tags["validation.status"] == "passed"
    assert '"flagged_rows": 0' in _artifact_texts(client, run_id, tmp_path)

    off = _with_screening(enabled=False)
    assert screening_checks(clean, off) == ([], 0, None)
    run_id = tracking.upsert_run(client, "screening-checks-tests", {"test": "off"}, "off")
    validate(client, off, uri, run_id, as_of=AS_OF)
    assert client.get_run(run_id).data.tags["validation.status"] == "passed"
