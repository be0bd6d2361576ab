"""Evaluate a trained run on its held-out split: metrics and plots logged to the same MLflow run."""

from __future__ import annotations

import logging

import numpy as np
from mlflow.tracking import MlflowClient

from include.config import ModelConfig
from include.data.dataset import read_dataset
from include.monitoring.kpis import KPI_PREFIX, compute_kpis
from include.training.train import MODEL_URI_TAG, features_and_target, holdout_split

log = logging.getLogger(__name__)

DECISION_THRESHOLD = 0.5


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    pred = (proba >= DECISION_THRESHOLD).astype(int)
    return {
        "roc_auc": float(metrics.roc_auc_score(y_true, proba)),
        "accuracy": float(metrics.accuracy_score(y_true, pred)),
        "precision": float(metrics.precision_score(y_true, pred, zero_division=0)),
        "recall": float(metrics.recall_score(y_true, pred, zero_division=0)),
        "f1": float(metrics.f1_score(y_true, pred, zero_division=0)),
        "log_loss": float(metrics.log_loss(y_true, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1])),
    }


def _log_plots(client: MlflowClient, run_id: str, y_true: np.ndarray, proba: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

    fig, ax = plt.subplots(figsize=(5, 5))
    RocCurveDisplay.from_predictions(y_true, proba, ax=ax)
    ax.set_title("ROC curve (holdout)")
    client.log_figure(run_id, fig, "plots/roc_curve.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ConfusionMatrixDisplay.from_predictions(y_true, (proba >= DECISION_THRESHOLD).astype(int), ax=ax)
    ax.set_title(f"Confusion matrix (threshold {DECISION_THRESHOLD})")
    client.log_figure(run_id, fig, "plots/confusion_matrix.png")
    plt.close(fig)


def evaluate_run(client: MlflowClient, config: ModelConfig, dataset_uri: str, run_id: str) -> dict[str, float]:
    """Score the run's model on the holdout split and log metrics (``roc_auc``, ``f1``…) and plots.

    With an ``evidence`` section, also the evidence of :func:`include.evaluation.evidence.log_evidence`
    (calibration, slices, fairness, baseline, SHAP); the returned dict stays the six holdout metrics.
    """
    import mlflow.sklearn

    model_uri = client.get_run(run_id).data.tags.get(MODEL_URI_TAG)
    if not model_uri:
        raise ValueError(f"run {run_id} has no {MODEL_URI_TAG} tag: training did not log a model")
    model = mlflow.sklearn.load_model(model_uri)
    train, holdout = holdout_split(read_dataset(dataset_uri, config.dataset.column_types), config)
    x, y = features_and_target(holdout, config)
    if y.nunique() < 2:
        raise ValueError(f"holdout split of {dataset_uri} has a single class in {config.dataset.target.name}")
    proba = model.predict_proba(x)[:, 1]
    values = classification_metrics(y.to_numpy(), proba)
    for key, value in values.items():
        client.log_metric(run_id, key, value)
    for name, kpi in compute_kpis(config, config.monitoring.kpis, holdout.assign(prediction=proba)).items():
        if kpi.value is not None:  # the version's first KPI baseline, until it has served healthy days
            client.log_metric(run_id, f"{KPI_PREFIX}{name}", kpi.value)
    _log_plots(client, run_id, y.to_numpy(), proba)
    # CBPE's reference for hourly estimated performance: evidence/holdout_predictions.parquet (scores + labels)
    from include.monitoring.performance_estimation import log_holdout_predictions

    log_holdout_predictions(client, run_id, config, y, proba)
    if config.evidence is not None:  # calibration, slices, fairness, baseline, SHAP: include.evaluation
        from include.evaluation.evidence import log_evidence

        log_evidence(client, config, run_id, model=model, train=train, holdout=holdout, proba=proba)
    log.info("Holdout metrics for run %s: %s", run_id, values)
    return values
