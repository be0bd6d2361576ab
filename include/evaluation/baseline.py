"""A simpler baseline trained on the candidate's training split, through the same preprocessing.

The baseline (``evidence.baseline``, default ``sklearn.linear_model.LogisticRegression``) goes through
:func:`include.training.train.build_estimator` with only the estimator and its parameters changed: the same
scaling, one-hot encoding and missing-value handling (an imputer for estimators without native NaN
support). It is scored on the same holdout with :func:`include.training.evaluate.classification_metrics`
and logged as ``baseline.<metric>``; the ``baseline`` gate asks the candidate to beat it by ``margin``.
The baseline is never logged as a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from include.config import BaselineConfig, ModelConfig

PREFIX = "baseline."
BASELINE_ARTIFACT = "evidence/baseline.json"


def metric_key(metric: str) -> str:
    """``baseline.<metric>``."""
    return f"{PREFIX}{metric}"


def baseline_config(config: ModelConfig, baseline: BaselineConfig) -> ModelConfig:
    """``config`` with its model's estimator and parameters replaced by the baseline's (split, seed unchanged)."""
    return config.model_copy(update={"model": config.model.model_copy(
        update={"estimator": baseline.estimator, "params": dict(baseline.params)})})


def fit_baseline(config: ModelConfig, baseline: BaselineConfig, x: pd.DataFrame, y: pd.Series) -> Any:
    """The baseline pipeline fitted on ``x``, ``y``. Raises :class:`include.config.ConfigError` naming a bad estimator."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from include.config import ConfigError
    from include.training.train import build_estimator

    try:
        model = build_estimator(baseline_config(config, baseline))
    except ConfigError as exc:  # it names model.estimator / model.params: the baseline's keys are these
        raise ConfigError(str(exc).replace(": model.", ": evidence.baseline.", 1)) from None
    with warnings.catch_warnings():  # a baseline that stops at max_iter is still a baseline; its metrics say how good
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)
