"""Global feature importance per version with SHAP (Lundberg & Lee, "A Unified Approach to Interpreting Model
Predictions", NeurIPS 2017; https://shap.readthedocs.io), and the reader monitoring uses.

The pipeline's estimator is explained on the preprocessed columns of a holdout sample, and each
original feature's SHAP value per row is the sum over its columns (a category's one-hot columns;
SHAP values are additive), so importance is per configured feature:

    importance(feature) = mean over rows of |sum of the feature's columns' SHAP values|

in the explainer's output units (below); only the ranking compares across estimators. The explainer:

* ``shap.TreeExplainer`` for tree models shap supports (HistGradientBoosting, GradientBoosting, RandomForest,
  ExtraTrees, decision trees): exact TreeSHAP, or Saabas' approximation (``approximate=True``) when the
  forest is too large to explain exactly in seconds (more than :data:`EXACT_TREE_BUDGET` leaves x rows);
* ``shap.LinearExplainer`` for linear models (``coef_``), against a training background;
* otherwise ``shap.PermutationExplainer`` over the estimator's positive-class probability, on
  ``agnostic_rows`` rows against :data:`AGNOSTIC_BACKGROUND_ROWS` training rows, two antithetic
  permutations per row (model-agnostic, the slowest: ``agnostic_rows`` x 2 x (2 x columns + 1) x 50 rows scored,
  and shap's numba helpers compile on the first call in a process: ~10 s measured on a busy 2-core machine);
* a pipeline whose preprocessing cannot be mapped back to features (not the one
  :func:`include.training.train.build_estimator` builds) gets scikit-learn's permutation importance of the
  whole pipeline on the raw features instead (drop in ROC AUC).

A calibrated estimator (``CalibratedClassifierCV``, ``ensemble=False``) is explained through its one
underlying estimator: Platt's sigmoid is monotone and affine in log-odds, so the ranking is the calibrated
model's (isotonic: approximately). Measured on the demo (2 cores): TreeExplainer on the
HistGradientBoosting model, 300 rows, 0.2 s (plus ~3 s to import shap).

A version carries ``evidence/shap_importance.json``, ``evidence/shap_importance.png`` and the tag
:data:`TOP_FEATURES_TAG` (top ``top_k``, comma separated, most important first); :func:`top_features` reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.tracking import MlflowClient

TOP_FEATURES_TAG = "shap.top_features"
IMPORTANCE_ARTIFACT = "evidence/shap_importance.json"
IMPORTANCE_PLOT = "evidence/shap_importance.png"
EXACT_TREE_BUDGET = 2_000_000  # leaves x rows explained exactly; measured ~1.4 M in 0.2 s (boosting), 12.5 M in 9 s (forest)
BACKGROUND_ROWS = 100
AGNOSTIC_BACKGROUND_ROWS = 50  # the permutation explainer calls the model on every background row per evaluation


def _unwrap(estimator: Any) -> Any:
    """The estimator a CalibratedClassifierCV(ensemble=False) wraps; any other estimator as it is."""
    calibrated = getattr(estimator, "calibrated_classifiers_", None)
    if calibrated:
        return calibrated[0].estimator
    return estimator


def column_features(preprocess: Any, n_columns: int) -> list[str] | None:
    """The original feature behind each of the ``n_columns`` preprocessed columns, or None when unknown.

    ``preprocess``: the pipeline without its estimator: one ColumnTransformer whose transformers keep one
    column per feature (scaling, imputation) or end in a OneHotEncoder (one column per category).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    steps = preprocess.steps if isinstance(preprocess, Pipeline) else [("preprocess", preprocess)]
    if len(steps) != 1 or not isinstance(steps[0][1], ColumnTransformer):
        return None
    ct = steps[0][1]
    owners: list[str | None] = [None] * n_columns
    for name, transformer, columns in ct.transformers_:
        if transformer == "drop" or name not in ct.output_indices_:
            continue
        where = ct.output_indices_[name]
        width = where.stop - where.start
        if width == 0:
            continue
        columns = [str(c) for c in (columns if isinstance(columns, list | tuple) else list(columns))]
        last = transformer.steps[-1][1] if isinstance(transformer, Pipeline) else transformer
        categories = getattr(last, "categories_", None)
        if width == len(columns):
            mapping = columns
        elif categories is not None and getattr(last, "drop", None) is None and sum(map(len, categories)) == width:
            mapping = [c for c, cats in zip(columns, categories, strict=True) for _ in cats]
        else:
            return None
        owners[where] = mapping
    return None if any(o is None for o in owners) else owners  # type: ignore[return-value]


def _tree_leaves(estimator: Any) -> int | None:
    trees = getattr(estimator, "estimators_", None)
    if trees is None and hasattr(estimator, "tree_"):
        trees = [estimator]
    if trees is None:
        return None
    import numpy as np

    return int(sum(t.tree_.n_leaves for t in np.ravel(np.asarray(trees, dtype=object)) if hasattr(t, "tree_")))


def _positive(values: Any) -> np.ndarray:
    """SHAP values ``[rows, columns]`` of the positive class (shap returns ``[rows, columns, classes]`` for forests)."""
    import numpy as np

    if isinstance(values, list):  # older shap: one array per class
        values = values[1]
    values = np.asarray(values, dtype=np.float64)
    return values[..., 1] if values.ndim == 3 else values


def global_importance(model: Any, sample: pd.DataFrame, background: pd.DataFrame, *, agnostic_rows: int = 40,
                      y_sample: Any = None, seed: int = 0) -> dict[str, Any]:
    """Mean |SHAP value| per feature of the fitted ``model`` (a scikit-learn Pipeline) on the ``sample`` rows.

    ``sample``, ``background``: feature frames (holdout rows explained; training rows the linear and
    permutation explainers compare against, at most :data:`BACKGROUND_ROWS` used). ``y_sample``: 0/1 labels
    of ``sample``, used only by the permutation-importance fallback. Returns ``{"method", "output",
    "rows", "importance": {feature: value, most important first}}``; see the module docstring for the methods.
    """
    import warnings

    import numpy as np
    import shap
    from sklearn.pipeline import Pipeline

    features = list(sample.columns)
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        preprocess, estimator = model[:-1], _unwrap(model.steps[-1][1])
        columns = preprocess.transform(sample)
        owners = column_features(preprocess, np.shape(columns)[1])
    else:
        owners = None
    if owners is None:
        return _permutation_importance(model, sample, y_sample, seed)
    z = np.asarray(columns, dtype=np.float64)
    z_background = np.asarray(preprocess.transform(background.head(BACKGROUND_ROWS)), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap's deprecation and numba notes; they say nothing about the model
        values, method, output = None, None, None
        try:
            explainer = shap.TreeExplainer(estimator)
        except Exception:  # noqa: BLE001 - shap raises InvalidModelError (or anything) for models it cannot walk
            explainer = None
        if explainer is not None:
            leaves = _tree_leaves(estimator)
            approximate = leaves is not None and leaves * len(z) > EXACT_TREE_BUDGET
            values = _positive(explainer.shap_values(z, check_additivity=False, approximate=approximate))
            method = "shap.TreeExplainer" + (" (approximate: Saabas)" if approximate else "")
            output = str(getattr(getattr(explainer, "model", None), "model_output", "raw"))
        elif hasattr(estimator, "coef_"):
            explainer = shap.LinearExplainer(estimator, shap.maskers.Independent(z_background))
            values, method, output = _positive(explainer.shap_values(z)), "shap.LinearExplainer", "log-odds"
        else:
            z = z[:agnostic_rows]

            def positive_proba(rows: np.ndarray) -> np.ndarray:
                return estimator.predict_proba(rows)[:, 1]

            masker = shap.maskers.Independent(z_background[:AGNOSTIC_BACKGROUND_ROWS])
            explainer = shap.PermutationExplainer(positive_proba, masker, seed=seed)
            # two antithetic permutations per row: 2 x (2 x columns + 1) model calls on the background each
            values = _positive(explainer(z, max_evals=4 * z.shape[1] + 2, silent=True).values)
            method, output = "shap.PermutationExplainer", "probability"
    per_feature = {f: np.zeros(len(z)) for f in features}
    for j, owner in enumerate(owners):
        per_feature.setdefault(owner, np.zeros(len(z)))
        per_feature[owner] = per_feature[owner] + values[:, j]
    importance = {f: float(np.abs(v).mean()) if len(v) else 0.0 for f, v in per_feature.items()}
    return {"method": method, "output": output, "rows": int(len(z)), "importance": _ranked(importance)}


def _ranked(importance: dict[str, float]) -> dict[str, float]:
    return dict(sorted(importance.items(), key=lambda kv: (-kv[1], kv[0])))


def _permutation_importance(model: Any, sample: pd.DataFrame, y_sample: Any, seed: int) -> dict[str, Any]:
    import numpy as np
    from sklearn.inspection import permutation_importance

    if y_sample is None or len(np.unique(np.asarray(y_sample))) < 2:
        raise ValueError("cannot explain this model: its preprocessing does not map back to features, and the "
                         "permutation-importance fallback needs labels of both classes")
    result = permutation_importance(model, sample, np.asarray(y_sample), scoring="roc_auc", n_repeats=3,
                                    random_state=seed)
    importance = {f: max(0.0, float(v)) for f, v in zip(sample.columns, result.importances_mean, strict=True)}
    return {"method": "sklearn.inspection.permutation_importance (drop in ROC AUC)", "output": "roc_auc",
            "rows": int(len(sample)), "importance": _ranked(importance)}


def top(importance: dict[str, float], k: int) -> list[str]:
    """The ``k`` most important features with a non-zero importance, most important first (ties: by name)."""
    return [f for f, v in _ranked(importance).items() if v > 0][:k]


def plot_importance(importance: dict[str, float], title: str, limit: int = 15):
    """A matplotlib Figure: horizontal bars of the ``limit`` most important features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(_ranked(importance).items())[:limit][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xlabel("mean |SHAP value|")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def top_features(client: MlflowClient, model: str, version: str | int, k: int | None = None) -> list[str]:
    """The version's most important features, most important first (at most ``k``); [] when it has none.

    Reads the version tag :data:`TOP_FEATURES_TAG`, else the same tag on its training run (a version
    registered before the tag was copied to versions). For monitoring: e.g. watch drift on these first.
    """
    version_info = client.get_model_version(model, str(version))
    text = (version_info.tags or {}).get(TOP_FEATURES_TAG)
    if text is None and version_info.run_id:
        text = client.get_run(version_info.run_id).data.tags.get(TOP_FEATURES_TAG)
    names = [n for n in (text or "").split(",") if n]
    return names if k is None else names[:k]


def load_importance(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The run's ``evidence/shap_importance.json`` (what :func:`global_importance` returned, plus ``top_features``).

    Raises FileNotFoundError when the run has none.
    """
    import json
    import tempfile
    from pathlib import Path

    names = {a.path for a in client.list_artifacts(run_id, "evidence")}
    if IMPORTANCE_ARTIFACT not in names:
        raise FileNotFoundError(f"run {run_id} has no {IMPORTANCE_ARTIFACT} artifact")
    with tempfile.TemporaryDirectory(prefix="shap-importance-") as tmp:
        return json.loads(Path(client.download_artifacts(run_id, IMPORTANCE_ARTIFACT, tmp)).read_text())
