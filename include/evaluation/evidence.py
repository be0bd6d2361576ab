"""Everything the ``evidence`` section asks for, computed on a run's holdout and logged to that run.

:func:`log_evidence` is called once by :func:`include.training.evaluate.evaluate_run`, after the holdout
metrics. What a run carries afterwards (each only when its sub-section is configured):

=============================  ================================================================================
metric / tag / artifact        what
=============================  ================================================================================
``calibration.ece``            holdout ECE of the logged model (``calibration.bins`` equal-width bins)
``calibration.method`` (tag)   calibration applied in training: sigmoid | isotonic | none (set by training)
``calibration.oof_ece_...``    uncalibrated out-of-fold ECE on the training split (training, with ``max_ece``)
``slice.<col>.<v>.<metric>``   the primary metric per slice, and ``slice.<col>.<v>.rows``
``fairness.<col>.<name>``      ``demographic_parity_difference``, ``equalized_odds_difference``, ``groups``
``baseline.<metric>``          the baseline's holdout metrics (all six)
``shap.top_features`` (tag)    the ``top_k`` most important features, comma separated
``evidence/*``                 calibration.json + reliability_curve.png, slices.json, fairness.json,
                               baseline.json, shap_importance.json + shap_importance.png
=============================  ================================================================================

:func:`tag_version` copies the run's evidence tags onto a registered version.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from include.evaluation import baseline as baseline_mod
from include.evaluation import calibration, fairness, slices
from include.evaluation.explanations import IMPORTANCE_ARTIFACT, IMPORTANCE_PLOT, TOP_FEATURES_TAG

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from include.config import ModelConfig

log = logging.getLogger(__name__)

VERSION_TAGS = (TOP_FEATURES_TAG, calibration.METHOD_TAG)  # run tags a version carries too
_MAX_METRICS = 1000  # MLflow's log_batch limit per call


def log_evidence(
    client: MlflowClient,
    config: ModelConfig,
    run_id: str,
    *,
    model: Any,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    proba: np.ndarray,
) -> dict[str, float]:
    """Compute and log the configured evidence for ``run_id``; returns the metrics logged ({} without ``evidence``).

    ``model``: the run's fitted pipeline; ``train``, ``holdout``: the run's split (all columns);
    ``proba``: ``model``'s positive-class probability on ``holdout`` ``[len(holdout)]``.
    Raises :class:`include.config.ConfigError` for a baseline estimator that cannot be built.
    """
    import numpy as np
    from mlflow.entities import Metric

    from include.evaluation.columns import group_frame
    from include.training.evaluate import classification_metrics
    from include.training.train import features_and_target

    evidence = config.evidence
    if evidence is None:
        return {}
    started = time.monotonic()
    target = config.dataset.target.name
    positive = list(model.classes_)[1]  # scikit-learn sorts classes_: predict_proba's column 1
    y = (holdout[target].to_numpy() == positive).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    metric = config.gates.primary_metric
    metrics: dict[str, float] = {}

    settings = evidence.calibration
    ece = calibration.expected_calibration_error(y, proba, settings.bins)
    metrics[calibration.ECE_METRIC] = ece
    method = client.get_run(run_id).data.tags.get(calibration.METHOD_TAG, "none")
    client.log_dict(run_id, {
        "ece": ece, "bins": settings.bins, "binning": calibration.BINNING, "rows": len(y), "method": method,
        "reliability": calibration.reliability_table(y, proba, settings.bins)}, calibration.CALIBRATION_ARTIFACT)
    _log_figure(client, run_id, calibration.plot_reliability(
        y, proba, settings.bins, f"Reliability (holdout, calibration: {method}), ECE {ece:.4f}"),
        calibration.RELIABILITY_PLOT)

    if evidence.slices is not None:
        groups = group_frame(holdout, evidence.slices.columns, evidence)
        report = slices.slice_report(groups, y, proba, metric)
        metrics.update(slices.report_metrics(report, metric))
        client.log_dict(run_id, {"metric": metric, "min_rows": evidence.slices.min_rows, "slices": report},
                        slices.SLICES_ARTIFACT)

    if evidence.fairness is not None:
        threshold = config.monitoring.decision_threshold
        decision = (proba >= threshold).astype(int)
        groups = group_frame(holdout, evidence.fairness.sensitive_features, evidence)
        reports = {c: fairness.fairness_report(y, decision, groups[c], min_group_rows=evidence.fairness.min_group_rows)
                   for c in groups.columns}
        for column, report in reports.items():
            metrics.update(fairness.report_metrics(column, report))
        client.log_dict(run_id, {"decision": f"score >= {threshold} (monitoring.decision_threshold)",
                                 "min_group_rows": evidence.fairness.min_group_rows, "features": reports},
                        fairness.FAIRNESS_ARTIFACT)

    x_train, _ = features_and_target(train, config)
    x_holdout, _ = features_and_target(holdout, config)
    if evidence.baseline is not None:
        y_train = (train[target].to_numpy() == positive).astype(int)
        base = baseline_mod.fit_baseline(config, evidence.baseline, x_train, y_train)
        values = classification_metrics(y, base.predict_proba(x_holdout)[:, 1])
        metrics.update({baseline_mod.metric_key(k): v for k, v in values.items()})
        client.log_dict(run_id, {"estimator": evidence.baseline.estimator, "params": evidence.baseline.params,
                                 "metrics": values, "candidate": classification_metrics(y, proba)},
                        baseline_mod.BASELINE_ARTIFACT)

    if evidence.explanations.enabled:
        _log_explanations(client, config, run_id, model, x_train, x_holdout, y)

    items = sorted(metrics.items())
    now = int(time.time() * 1000)
    for start in range(0, len(items), _MAX_METRICS):
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in items[start:start + _MAX_METRICS]])
    log.info("Evidence for run %s: %d metrics in %.1f s", run_id, len(metrics), time.monotonic() - started)
    return metrics


def _log_explanations(client: MlflowClient, config: ModelConfig, run_id: str, model: Any,
                      x_train: pd.DataFrame, x_holdout: pd.DataFrame, y: np.ndarray) -> None:
    import numpy as np

    from include.evaluation import explanations

    settings = config.evidence.explanations
    rng = np.random.default_rng(config.model.random_state)
    rows = np.sort(rng.choice(len(x_holdout), size=min(settings.sample_rows, len(x_holdout)), replace=False))
    background = x_train.sample(n=min(explanations.BACKGROUND_ROWS, len(x_train)), random_state=config.model.random_state)
    result = explanations.global_importance(model, x_holdout.iloc[rows], background,
                                            agnostic_rows=settings.agnostic_rows, y_sample=y[rows],
                                            seed=config.model.random_state)
    result["top_features"] = explanations.top(result["importance"], settings.top_k)
    client.log_dict(run_id, result, IMPORTANCE_ARTIFACT)
    _log_figure(client, run_id, explanations.plot_importance(result["importance"], f"Feature importance ({result['method']})"),
                IMPORTANCE_PLOT)
    client.set_tag(run_id, TOP_FEATURES_TAG, ",".join(result["top_features"]))


def _log_figure(client: MlflowClient, run_id: str, fig: Any, path: str) -> None:
    import matplotlib.pyplot as plt

    try:
        client.log_figure(run_id, fig, path)
    finally:
        plt.close(fig)


def version_tags(run_tags: dict[str, str]) -> dict[str, str]:
    """The evidence tags of a training run that its registered version carries too (:data:`VERSION_TAGS`)."""
    return {k: run_tags[k] for k in VERSION_TAGS if k in run_tags}


def tag_version(client: MlflowClient, model: str, version: str) -> dict[str, str]:
    """Copy the version's training-run evidence tags (:func:`version_tags`) onto it; returns the tags set.

    Idempotent: a tag the version already carries with the same value is not written again.
    """
    info = client.get_model_version(model, str(version))
    if not info.run_id:
        return {}
    wanted = version_tags(client.get_run(info.run_id).data.tags)
    changed = {k: v for k, v in wanted.items() if (info.tags or {}).get(k) != v}
    for key, value in changed.items():
        client.set_model_version_tag(model, str(version), key, value)
    return changed
