"""The monitoring note when the live inputs shift on the features the version relies on most (SHAP)."""

from __future__ import annotations

from pathlib import Path

from include import tracking
from include.config import load_model_config
from include.monitoring.hourly import important_drift_note

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")


def test_drift_on_top_features_is_noted_with_their_rank(tmp_path: Path) -> None:
    client = tracking.configure(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model(CONFIG.name)
    run = client.create_run(client.create_experiment("x"))
    client.create_model_version(CONFIG.name, "file:///nowhere", run_id=run.info.run_id,
                                tags={"shap.top_features": "credit_score,debt_to_income,annual_income"})
    client.create_model_version(CONFIG.name, "file:///nowhere", run_id=run.info.run_id)  # no explanations

    note = important_drift_note(client, CONFIG, "1", ["region", "annual_income", "credit_score"])

    assert note is not None and "credit_score (#1), annual_income (#3)" in note and "region" not in note
    assert important_drift_note(client, CONFIG, "1", ["region", "age"]) is None
    assert important_drift_note(client, CONFIG, "2", ["credit_score"]) is None
