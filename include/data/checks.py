"""The data steps of a training run: validate (Great Expectations) and fingerprint, both recorded in MLflow.

What validation refuses, before anything is trained:

* data that cannot be read as the model's configuration declares it (:func:`include.data.dataset.read_dataset`):
  a corrupt file, a column of another type, an undeclared or a missing column;
* whatever the model's expectation suite (``config/expectations/<model>.json``) refuses;
* the checks derived from the declared columns and ``dataset.checks`` (:func:`derived_expectations`),
  run by GX beside the suite: non-finite numbers and numbers beyond ``max_abs_value`` in every
  ``int``/``float`` column, event timestamps after the run's logical date plus ``max_future_minutes`` (or
  older than ``max_age_days``), a null target or one outside ``classes``;
* too few rows of a class in the training or the holdout split (:func:`split_checks`: evaluation needs
  both classes on both sides; identical rows all land on one side of the split);
* personal data (:func:`screening_checks`, ``compliance.screening``): more than ``max_flagged_rows`` rows
  with an e-mail address, IBAN, card number, national identifier or phone number, named by column,
  detector and count, never by value (GX's examples of values in those columns are withheld too).

A refused batch is quarantined: its MLflow run is marked FAILED and tagged ``quarantine=rejected`` with
``quarantine.reason`` and the batch's fingerprint (or, when it cannot be read, a digest of its files),
the GX result and Data Docs are attached, and :class:`~include.data.validation.DataValidationError` or
:class:`~include.data.dataset.DatasetError` stops everything downstream.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import DatasetInput, InputTag, RunStatus
from mlflow.tracking import MlflowClient

from include.config import ModelConfig
from include.data.dataset import DatasetError, local_path, read_dataset
from include.data.fingerprint import dataset_fingerprint, mlflow_digest, schema_hash
from include.data.validation import DataValidationError, FailedExpectation, ValidationReport, validate_dataframe
from include.governance.screening import ScreeningReport, screen_frame

log = logging.getLogger(__name__)

QUARANTINE_TAG = "quarantine"
SOURCE = "dataset.checks"  # meta.source of the derived expectations


def read_batch(config: ModelConfig, dataset_uri: str) -> pd.DataFrame:
    """The training batch, read with the model's declared column types (see :mod:`include.data.dataset`)."""
    return read_dataset(dataset_uri, config.dataset.column_types)


def derived_expectations(config: ModelConfig, as_of: datetime) -> list[dict[str, Any]]:
    """GX suite entries that follow from the declared columns and ``dataset.checks``, for a run at ``as_of``.

    ``as_of`` (aware, UTC) is the run's logical date: event timestamps may not be later than it plus
    ``max_future_minutes`` (nor older than ``max_age_days``). Returns ``{"type", "kwargs", "meta"}`` dicts.
    """
    ds, checks = config.dataset, config.dataset.checks
    as_of = _utc(as_of)
    meta = {"source": SOURCE}
    entries: list[dict[str, Any]] = []
    for column in ds.all_columns:
        if column.type in ("int", "float"):
            # GX skips nulls here; inf, -inf and huge values are out of range.
            entries.append({"type": "expect_column_values_to_be_between", "meta": meta, "kwargs": {
                "column": column.name, "min_value": -checks.max_abs_value, "max_value": checks.max_abs_value}})
    latest = as_of + timedelta(minutes=checks.max_future_minutes)
    earliest = as_of - timedelta(days=checks.max_age_days) if checks.max_age_days else None
    entries.append({"type": "expect_column_values_to_be_between", "meta": meta, "kwargs": {
        "column": ds.timestamp_column, "min_value": earliest.isoformat() if earliest else None,
        "max_value": latest.isoformat()}})
    entries.append({"type": "expect_column_values_to_not_be_null", "meta": meta, "kwargs": {"column": ds.target.name}})
    entries.append({"type": "expect_column_values_to_be_in_set", "meta": meta,
                    "kwargs": {"column": ds.target.name, "value_set": list(checks.classes)}})
    return entries


def split_checks(df: pd.DataFrame, config: ModelConfig) -> tuple[list[FailedExpectation], int]:
    """Rows per class in the training and the holdout split; returns the failures and how many checks ran."""
    from include.training.train import holdout_split

    target, checks = config.dataset.target.name, config.dataset.checks
    if target not in df.columns:
        return [], 0
    train, holdout = holdout_split(df, config)
    failures = []
    for side, part in (("training", train), ("holdout", holdout)):
        counts = part[target].value_counts()
        short = {c: int(counts.get(c, 0)) for c in checks.classes if counts.get(c, 0) < checks.min_rows_per_class}
        if short:
            shown = ", ".join(f"class {c!r}: {n} rows" for c, n in short.items())
            failures.append(FailedExpectation(
                "min_rows_per_class", target,
                f"the {side} split has too few rows ({shown}; at least {checks.min_rows_per_class} each, "
                f"dataset.checks.min_rows_per_class); {len(part)} of {len(df)} rows are in it",
            ))
    return failures, 2


def screening_checks(df: pd.DataFrame, config: ModelConfig) -> tuple[list[FailedExpectation], int, ScreeningReport | None]:
    """The batch screened for personal data (``compliance.screening``, :mod:`include.governance.screening`).

    Returns the failures (one ``personal_data`` failure per column and detector that flagged rows, when more
    than ``max_flagged_rows`` rows are flagged; counts only), how many checks ran (one per column screened)
    and the report (None when screening is disabled).
    """
    settings = config.compliance.screening
    if not settings.enabled:
        return [], 0, None
    report = screen_frame(df, settings)
    if not report.flagged_rows:
        return [], len(report.columns), report
    if not report.exceeds(settings.max_flagged_rows):
        log.warning("Personal data tolerated (compliance.screening.max_flagged_rows=%s): %s",
                    settings.max_flagged_rows, report.summary())
        return [], len(report.columns), report
    failures = [
        FailedExpectation("personal_data", column, f"{detector}: {rows} of {report.rows} rows flagged "
                          f"(compliance.screening; {report.flagged_rows} rows in all, more than max_flagged_rows="
                          f"{settings.max_flagged_rows}; values not recorded)")
        for column, detector, rows in report.flagged()
    ]
    return failures, max(len(report.columns), len(failures)), report


def validate(
    client: MlflowClient, config: ModelConfig, dataset_uri: str, run_id: str, *, as_of: datetime | None = None
) -> dict:
    """Validate the batch for a run at ``as_of`` (default now); results go to the run under ``validation/``.

    Raises :class:`DatasetError` (unreadable, or not as declared) or :class:`DataValidationError` (refused
    by the suite or the checks) after quarantining the batch; ``FileNotFoundError`` when there is no data.
    """
    as_of = _utc(as_of or datetime.now(UTC))
    client.set_tag(run_id, "dataset_uri", dataset_uri)
    try:
        df = read_batch(config, dataset_uri)
    except DatasetError as exc:
        _quarantine(client, run_id, dataset_uri, reason=f"unreadable: {exc}", digest=("files_sha256", _files_digest(dataset_uri)))
        raise
    screened, screen_checks, screen = screening_checks(df, config)
    with tempfile.TemporaryDirectory(prefix="gx-report-") as tmp:
        report = validate_dataframe(df, config.suite_path, report_dir=Path(tmp),
                                    extra_expectations=derived_expectations(config, as_of),
                                    redact_columns=screen.flagged_columns if screen else ())
        split_failures, split_count = split_checks(df, config)
        report = report.with_checks([*split_failures, *screened], split_count + screen_checks)
        _write_project_checks(report, Path(tmp), screen)
        client.log_artifacts(run_id, tmp, artifact_path="validation")
    stats = report.statistics or {}
    client.set_tag(run_id, "validation.status", "passed" if report.success else "failed")
    if report.success:
        log.info("Validation passed: %s rows, %s expectations", len(df), stats.get("evaluated_expectations"))
        return {"rows": len(df), "expectations": stats.get("evaluated_expectations")}
    fingerprint = dataset_fingerprint(df, config.dataset.column_types)
    _quarantine(client, run_id, dataset_uri, reason=report.summary(), digest=("data_fingerprint", fingerprint))
    raise DataValidationError(report)


def _utc(when: datetime) -> datetime:
    """A plain aware UTC datetime (pendulum's DateTime, as Airflow hands it, loses the offset in isoformat())."""
    if when.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware, got {when!r}")
    return datetime.fromtimestamp(when.timestamp(), tz=UTC)


def _write_project_checks(report: ValidationReport, folder: Path, screen: ScreeningReport | None = None) -> None:
    """``project_checks.json`` (the checks run outside GX) and, when the batch was screened, ``screening.json``
    (counts per column and detector, never values)."""
    import json

    (folder / "project_checks.json").write_text(json.dumps(report.result.get("project_checks", []), indent=2))
    if screen is not None:
        (folder / "screening.json").write_text(json.dumps(screen.as_dict(), indent=2))


def _quarantine(client: MlflowClient, run_id: str, dataset_uri: str, *, reason: str, digest: tuple[str, str]) -> None:
    """Mark the batch's run FAILED and tag it quarantined, with why and what identifies the batch."""
    client.set_tag(run_id, QUARANTINE_TAG, "rejected")
    client.set_tag(run_id, f"{QUARANTINE_TAG}.reason", reason[:5000])
    client.set_tag(run_id, "validation.summary", reason[:5000])
    client.set_tag(run_id, "modelops.outcome", "rejected: the batch failed validation")
    client.set_tag(run_id, digest[0], digest[1])
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
    log.error("Batch %s quarantined (%s %s): %s", dataset_uri, digest[0], digest[1], reason.splitlines()[0])


def _files_digest(dataset_uri: str) -> str:
    """SHA-256 over the bytes of the batch's files (sorted by path): identifies data that cannot be parsed."""
    path = local_path(dataset_uri)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    sha = hashlib.sha256()
    for file in files:
        sha.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
    return "sha256:" + sha.hexdigest()


def fingerprint(client: MlflowClient, config: ModelConfig, dataset_uri: str, run_id: str) -> dict[str, str]:
    """Full-content fingerprint and schema hash, as run tags and as the run's logged dataset input.

    Returns ``data_fingerprint`` and ``schema_hash`` (``sha256:<64 hex>``) and ``dataset_rows``. The run gets
    them as tags, and the dataset as a ``training`` input whose MLflow ``digest`` is the fingerprint's
    prefix (:func:`include.data.fingerprint.mlflow_digest`), not MLflow's own first-10,000-rows digest.
    """
    from mlflow.data.pandas_dataset import from_pandas

    df = read_batch(config, dataset_uri)
    column_types = config.dataset.column_types
    result = {
        "data_fingerprint": dataset_fingerprint(df, column_types),
        "schema_hash": schema_hash(df, column_types),
        "dataset_rows": str(len(df)),
    }
    dataset = from_pandas(
        df,
        source=dataset_uri,
        name=config.name,
        targets=config.dataset.target.name,
        digest=mlflow_digest(result["data_fingerprint"]),  # the full value is the run's tag
    )
    client.log_inputs(
        run_id,
        datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])],
    )
    for key, value in result.items():
        client.set_tag(run_id, key, value)
    log.info("Dataset %s: %s rows, fingerprint %s", dataset_uri, len(df), result["data_fingerprint"])
    return result
