"""The data steps of a training run: validate (Great Expectations) and fingerprint, both recorded in MLflow.

A batch that fails validation is quarantined: its MLflow run is marked FAILED and tagged
``quarantine=rejected`` with the batch's fingerprint, the GX result and Data Docs are attached,
and :class:`~include.validation.DataValidationError` stops everything downstream.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from mlflow.entities import DatasetInput, InputTag, RunStatus
from mlflow.tracking import MlflowClient

from include.config import ModelConfig
from include.dataset import read_dataset
from include.fingerprint import dataset_fingerprint, schema_hash
from include.validation import DataValidationError, validate_dataframe

log = logging.getLogger(__name__)


def validate(client: MlflowClient, config: ModelConfig, dataset_uri: str, run_id: str) -> dict:
    """Validate the batch against the model's suite; results go to the run under ``validation/``."""
    df = read_dataset(dataset_uri)
    with tempfile.TemporaryDirectory(prefix="gx-report-") as tmp:
        report = validate_dataframe(df, config.suite_path, report_dir=Path(tmp))
        client.log_artifacts(run_id, tmp, artifact_path="validation")
    stats = report.statistics or {}
    client.set_tag(run_id, "validation.status", "passed" if report.success else "failed")
    client.set_tag(run_id, "dataset_uri", dataset_uri)
    if report.success:
        log.info("Validation passed: %s rows, %s expectations", len(df), stats.get("evaluated_expectations"))
        return {"rows": len(df), "expectations": stats.get("evaluated_expectations")}

    fingerprint = dataset_fingerprint(df, config.dataset.column_types)
    client.set_tag(run_id, "quarantine", "rejected")
    client.set_tag(run_id, "data_fingerprint", fingerprint)
    client.set_tag(run_id, "validation.summary", report.summary()[:5000])
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
    log.error("Batch %s quarantined (fingerprint %s)", dataset_uri, fingerprint)
    raise DataValidationError(report)


def fingerprint(client: MlflowClient, config: ModelConfig, dataset_uri: str, run_id: str) -> dict[str, str]:
    """Full-content fingerprint and schema hash, as run tags and as the run's logged dataset input."""
    from mlflow.data.pandas_dataset import from_pandas

    df = read_dataset(dataset_uri)
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
        # MLflow stores at most 36 characters of digest; the full value is the run tag.
        digest=result["data_fingerprint"].removeprefix("sha256:")[:32],
    )
    client.log_inputs(
        run_id,
        datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])],
    )
    for key, value in result.items():
        client.set_tag(run_id, key, value)
    log.info("Dataset %s: %s rows, fingerprint %s", dataset_uri, len(df), result["data_fingerprint"])
    return result
