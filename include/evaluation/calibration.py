"""Probability calibration: measured on the holdout (ECE, reliability curve), applied in training on request.

**Expected calibration error** (Naeini, Cooper & Hauskrecht, AAAI 2015; Guo et al., ICML 2017): the
predicted probabilities of the positive class are put in ``bins`` equal-width bins on [0, 1], assigned as
:func:`sklearn.calibration.calibration_curve` (``strategy="uniform"``) assigns them (right-closed bins:
``(0.1, 0.2]``; the first is ``[0, 0.1]``), and

    ECE = sum over non-empty bins b of (n_b / N) * |mean(y in b) - mean(p in b)|

in probability units (0 = perfectly calibrated on this sample). The reliability curve plots the same bins.

**Calibration** (:func:`fit_model`): scikit-learn's ``CalibratedClassifierCV`` wraps the pipeline's
estimator step (``Pipeline([preprocess, CalibratedClassifierCV(estimator)])``), with ``ensemble=False``: one
estimator fitted on the whole training split, its calibrator (Platt's sigmoid or isotonic regression)
fitted on ``cv``-fold out-of-fold scores. The pipeline keeps its shape, so the ONNX export converts it:
skl2onnx converts a sigmoid-calibrated HistGradientBoosting, RandomForest or LogisticRegression within
the parity tolerance (measured ~1e-8); it converts isotonic calibration as a nearest-threshold lookup
instead of scikit-learn's linear interpolation (up to 0.03 apart on the demo), which the export's parity
check refuses. When ``max_ece`` is set, training first measures the uncalibrated model's ECE on
out-of-fold predictions of the training split (the holdout stays unseen) and calibrates only above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from include.config import CalibrationConfig

ECE_METRIC = "calibration.ece"  # holdout ECE of the logged model
OOF_ECE_METRIC = "calibration.oof_ece_uncalibrated"  # training split, out-of-fold, before calibration
METHOD_TAG = "calibration.method"  # the calibration applied to the logged model: sigmoid | isotonic | none
RELIABILITY_PLOT = "evidence/reliability_curve.png"
CALIBRATION_ARTIFACT = "evidence/calibration.json"
BINNING = "equal-width bins on [0, 1], right-closed, as sklearn.calibration.calibration_curve(strategy='uniform')"


def _bins(y_true: Any, proba: Any, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import numpy as np

    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(proba, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels for {p.size} probabilities")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if p.size and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        raise ValueError("probabilities must be finite and in [0, 1]")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    edges = np.linspace(0.0, 1.0, bins + 1)
    return y, p, np.searchsorted(edges[1:-1], p)


def expected_calibration_error(y_true: Any, proba: Any, bins: int = 10) -> float:
    """ECE of positive-class probabilities ``proba`` (shape ``[N]``, in [0, 1]) against 0/1 labels ``y_true``.

    Probability units, in [0, 1]; 0.0 for no rows. Binning: see the module docstring. Raises ValueError
    for mismatched shapes, labels other than 0/1, or probabilities outside [0, 1].
    """
    import numpy as np

    y, p, ids = _bins(y_true, proba, bins)
    if not y.size:
        return 0.0
    counts = np.bincount(ids, minlength=bins)
    gap = np.abs(np.bincount(ids, weights=y, minlength=bins) - np.bincount(ids, weights=p, minlength=bins))
    return float(gap[counts > 0].sum() / y.size)  # sum_b n_b/N * |sum(y)/n_b - sum(p)/n_b|


def reliability_table(y_true: Any, proba: Any, bins: int = 10) -> list[dict[str, float | int | None]]:
    """One row per bin: ``lower``, ``upper``, ``rows``, ``mean_predicted``, ``fraction_positive`` (None when empty)."""
    import numpy as np

    y, p, ids = _bins(y_true, proba, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = []
    for b in range(bins):
        mask = ids == b
        n = int(mask.sum())
        table.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "rows": n,
                      "mean_predicted": float(p[mask].mean()) if n else None,
                      "fraction_positive": float(y[mask].mean()) if n else None})
    return table


def _folds(settings: CalibrationConfig, random_state: int):
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=settings.cv, shuffle=True, random_state=random_state)


def calibrated_pipeline(pipeline: Any, settings: CalibrationConfig, random_state: int) -> Any:
    """An unfitted copy of ``pipeline`` whose last step is ``CalibratedClassifierCV(<that step>, method, cv, ensemble=False)``."""
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline

    if settings.method == "none":
        raise ValueError("calibration method is none")
    steps = list(clone(pipeline).steps)
    name, estimator = steps[-1]
    steps[-1] = (name, CalibratedClassifierCV(estimator, method=settings.method, cv=_folds(settings, random_state),
                                              ensemble=False))
    return Pipeline(steps)


def fit_model(pipeline: Any, x: pd.DataFrame, y: pd.Series, settings: CalibrationConfig | None,
              random_state: int) -> tuple[Any, dict[str, Any]]:
    """Fit ``pipeline`` (an unfitted scikit-learn Pipeline) on ``x``, ``y``, calibrated as ``settings`` asks.

    Returns ``(fitted model, info)``; ``info``: ``method`` (what was applied: sigmoid, isotonic or none),
    ``reason`` (words), and ``oof_ece`` (the uncalibrated model's out-of-fold ECE on ``x``, when it was
    measured: only when ``max_ece`` is set). ``settings`` None or method ``none``: the plain pipeline, fitted.
    Cost: one fit, plus ``cv`` fits to measure, plus ``cv + 1`` fits to calibrate.
    """
    import numpy as np
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    if settings is None or settings.method == "none":
        return pipeline.fit(x, y), {"method": "none", "reason": "calibration not requested"}
    info: dict[str, Any] = {}
    if settings.max_ece is not None:
        oof = cross_val_predict(clone(pipeline), x, y, cv=_folds(settings, random_state), method="predict_proba")
        positive = np.unique(np.asarray(y))[-1]  # scikit-learn sorts classes_: predict_proba's column 1
        info["oof_ece"] = expected_calibration_error((np.asarray(y) == positive).astype(int), oof[:, 1], settings.bins)
        if info["oof_ece"] <= settings.max_ece:
            return pipeline.fit(x, y), {**info, "method": "none", "reason": (
                f"out-of-fold ECE {info['oof_ece']:.4f} <= max_ece {settings.max_ece}: not calibrated")}
        reason = f"out-of-fold ECE {info['oof_ece']:.4f} > max_ece {settings.max_ece}: calibrated ({settings.method})"
    else:
        reason = f"calibrated ({settings.method}), as configured"
    model = calibrated_pipeline(pipeline, settings, random_state).fit(x, y)
    return model, {**info, "method": settings.method, "reason": reason}


def plot_reliability(y_true: Any, proba: Any, bins: int, title: str):
    """A matplotlib Figure: scikit-learn's CalibrationDisplay (uniform bins) with the ECE in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay

    fig, ax = plt.subplots(figsize=(5, 5))
    CalibrationDisplay.from_predictions(y_true, proba, n_bins=bins, strategy="uniform", ax=ax, name="model")
    ax.set_title(title)
    return fig
