"""Missing values and unseen categories served by a real Triton as scikit-learn and the MLflow model score them.

A RandomForest version (trained by ``include.training.train`` on complete data) is exported and served;
rows with null numbers and categories go through Triton in the packed binary form any client may send
and through the project's client, and the deployment's verification compares Triton with the MLflow
model on its parity rows. The conversion itself, for every estimator family, is tested without a server
in tests/include/serving/test_onnx.py.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from include import tracking
from include.config import load_model_config
from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch
from include.promotion.rollout import DeploymentError
from include.serving import deploy, onnx
from include.serving.triton import repository
from include.serving.triton.client import TritonClient
from include.serving.triton.model import CATEGORICAL_INPUT, NUMERIC_INPUT
from include.serving.triton.repository import export_version
from include.serving.triton.server import TritonServer
from include.training.train import features_and_target, train

ROOT = Path(__file__).resolve().parents[4]
CONFIG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
FOREST = CONFIG.model_copy(update={"model": CONFIG.model.model_copy(update={
    "estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 8, "max_depth": 6}})})
TOLERANCE = onnx.PARITY_TOLERANCE  # probabilities; measured <1e-7
NUMERIC = [c.name for c in CONFIG.dataset.features if c.type not in onnx.STRING_TYPES]
CATEGORICAL = [c.name for c in CONFIG.dataset.features if c.type in onnx.STRING_TYPES]


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    x, _ = features_and_target(generate_batch(500, seed=21), CONFIG)
    return {"complete": x.reset_index(drop=True)}


# --- a real Triton server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def forest_version(tmp_path_factory: pytest.TempPathFactory, data) -> tuple:
    """An MLflow registry (SQLite) holding version 1: a RandomForest trained by include.training.train on complete data."""
    tmp = tmp_path_factory.mktemp("missing-registry")
    config = FOREST
    batch = generate_batch(500, seed=21)
    uri = str(tmp / "train.parquet")
    write_dataset(batch, uri)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    client = tracking.configure(f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        client.create_registered_model(config.name)
        run_id = tracking.upsert_run(client, "missing-values", {"test.version": "1"}, "rf")
        with threadpool_limits(1):
            client.create_model_version(config.name, train(config, uri, run_id), run_id=run_id)
        client.set_model_version_tag(config.name, "1", "dataset_uri", uri)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    model = mlflow.sklearn.load_model(client.get_model_version_download_uri(config.name, "1"))
    return client, config, model


@pytest.fixture(scope="module")
def served_forest(triton_venv: Path, forest_version, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    client, config, _ = forest_version
    repo = tmp_path_factory.mktemp("missing-triton") / "models"
    export_version(client, config.name, "1", config, repo)
    log_path = tmp_path_factory.mktemp("missing-triton-log") / "tritonserver.log"
    with TritonServer(venv=triton_venv, log_path=log_path).start(repo) as server:
        server.wait_ready(60)
        with TritonClient(server.url) as triton:
            triton.load(config.name)
            triton.wait_ready(config.name, "1", timeout=60)
        yield server.url


def _packed_request(frame: pd.DataFrame) -> tuple[bytes, dict[str, str]]:
    """A binary KServe v2 request in the packed form, as any client may send it: NaN for a null number, "" for a null text."""
    numbers = np.ascontiguousarray(frame[NUMERIC].to_numpy(dtype=np.float64, na_value=np.nan))
    texts = ["" if pd.isna(v) else str(v) for v in frame[CATEGORICAL].to_numpy(dtype=object).ravel()]
    strings = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    rows = len(frame)
    header = json.dumps({"inputs": [
        {"name": NUMERIC_INPUT, "shape": [rows, len(NUMERIC)], "datatype": "FP64",
         "parameters": {"binary_data_size": numbers.nbytes}},
        {"name": CATEGORICAL_INPUT, "shape": [rows, len(CATEGORICAL)], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(strings)}},
    ], "outputs": [{"name": repository.OUTPUT_NAME, "parameters": {"binary_data": False}}]}).encode()
    return header + numbers.tobytes() + strings, {"Inference-Header-Content-Length": str(len(header)),
                                                   "Content-Type": "application/octet-stream"}


def test_triton_serves_a_null_credit_score_like_sklearn(served_forest: str, forest_version, data) -> None:
    import httpx

    _, config, model = forest_version
    rows = data["complete"].head(30).astype({"credit_score": "Int64", "annual_income": float, "region": object})
    rows.loc[rows.index[::2], "credit_score"] = pd.NA
    rows.loc[rows.index[::3], "annual_income"] = np.nan
    rows.loc[rows.index[::5], "region"] = None
    expected = model.predict_proba(rows)[:, 1]

    body, headers = _packed_request(rows)
    response = httpx.post(f"{served_forest}/v2/models/{config.name}/versions/1/infer", content=body, headers=headers,
                          timeout=30)
    assert response.status_code == 200, response.text
    length = int(response.headers.get("Inference-Header-Content-Length", len(response.content)))
    served = np.asarray(json.loads(response.content[:length])["outputs"][0]["data"], dtype=np.float64)

    np.testing.assert_allclose(served, expected, rtol=0, atol=TOLERANCE)
    # the project's client sends nulls in float and text columns (not in int ones: INT64 has no NaN)
    sendable = rows.assign(credit_score=data["complete"]["credit_score"].head(30))
    with TritonClient(served_forest) as triton:
        through_client = triton.infer(config.name, sendable, version="1")
    np.testing.assert_allclose(through_client, model.predict_proba(sendable)[:, 1], rtol=0, atol=TOLERANCE)


def test_deployment_verification_serves_missing_floats_and_categories_like_the_registry(served_forest: str,
                                                                                        forest_version) -> None:
    """What the deploy DAG's verify step runs: Triton vs the MLflow model on held-out rows, missing values included."""
    client, config, _ = forest_version
    frame = deploy.verification_frame(client, config, "1", 30)
    floats = [c.name for c in config.dataset.features if c.type == "float"]
    assert set(frame.index) == {"holdout", *(f"{c} missing" for c in floats),
                                *(f"{c} {case}" for c in CATEGORICAL for case in ("missing", "unseen"))}
    assert (frame.index == "holdout").sum() == 30
    assert frame.loc["region missing", "region"].isna().all()

    with TritonClient(served_forest) as triton:
        result = deploy.verify(client, triton, config, "1", rows=30)

    assert result["rows"] == len(frame) and result["max_abs_diff"] <= TOLERANCE


def test_deployment_verification_names_the_cases_where_triton_differs(served_forest: str, forest_version,
                                                                     monkeypatch) -> None:
    """A served model that scores missing credit scores otherwise fails verification, naming that case."""
    client, config, _ = forest_version

    class Skewed(TritonClient):
        def infer(self, name, frame, version=None, **kwargs):
            scores = super().infer(name, frame, version, **kwargs)
            return np.where(frame.index == "annual_income missing", scores + 0.01, scores)

    with Skewed(served_forest) as triton, pytest.raises(
            DeploymentError, match=r"version 1 failed verification: .*Triton disagrees with the MLflow model: .*"
                                   r"on 5 of \d+ rows, on rows with: annual_income missing \(worst"):
        deploy.verify(client, triton, config, "1", rows=30)
