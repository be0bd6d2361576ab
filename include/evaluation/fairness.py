"""Group fairness of the model's decisions, with fairlearn (Bird et al., "Fairlearn: A toolkit for assessing and
improving fairness in AI", Microsoft 2020; https://fairlearn.org).

The decision is the business's: score >= ``monitoring.decision_threshold`` (for the demo: declined). Per
sensitive column (a feature, or a band derived from one such as ``age_band``):

* **demographic parity difference**: max - min over groups of the rate of positive decisions
  (:func:`fairlearn.metrics.demographic_parity_difference`);
* **equalized odds difference**: the larger of the max - min over groups of the true positive rate and
  of the false positive rate (:func:`fairlearn.metrics.equalized_odds_difference`, ``agg="worst_case"``).

Both are in [0, 1], 0 = equal across groups. Groups with fewer than ``min_group_rows`` holdout rows are left
out (their rates are noise); with fewer than two groups left, nothing is measured. Logged as run metrics
``fairness.<column>.demographic_parity_difference``, ``fairness.<column>.equalized_odds_difference`` and
``fairness.<column>.groups`` (groups measured), and per group in ``evidence/fairness.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PREFIX = "fairness."
DEMOGRAPHIC_PARITY = "demographic_parity_difference"
EQUALIZED_ODDS = "equalized_odds_difference"
GROUPS = "groups"
FAIRNESS_ARTIFACT = "evidence/fairness.json"


def metric_key(column: str, name: str) -> str:
    """``fairness.<column>.<name>``: ``name`` is :data:`DEMOGRAPHIC_PARITY`, :data:`EQUALIZED_ODDS` or :data:`GROUPS`."""
    return f"{PREFIX}{column}.{name}"


def fairness_report(y_true: Any, y_pred: Any, groups: Any, *, min_group_rows: int = 1) -> dict[str, Any]:
    """Both differences for one sensitive column, and each group's rates.

    ``y_true``, ``y_pred``: 0/1 labels and decisions ``[N]``; ``groups``: the group of each row ``[N]``.
    Returns ``{"groups": {group: {"rows", "selection_rate", "true_positive_rate", "false_positive_rate"}}``
    (measured groups), ``"excluded": {group: rows}`` (below ``min_group_rows``), ``"demographic_parity_difference"``,
    ``"equalized_odds_difference"`` (None when fewer than two groups are measured, or a rate is undefined:
    a group without positives or negatives has no TPR or FPR)}.
    """
    import numpy as np
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    y = np.asarray(y_true).astype(int).ravel()
    pred = np.asarray(y_pred).astype(int).ravel()
    g = np.asarray(groups, dtype=object).ravel()
    if not (y.size == pred.size == g.size):
        raise ValueError(f"{y.size} labels, {pred.size} decisions and {g.size} groups: sizes differ")
    names, counts = np.unique(g.astype(str), return_counts=True)
    kept = {str(n) for n, c in zip(names, counts, strict=True) if c >= min_group_rows}
    excluded = {str(n): int(c) for n, c in zip(names, counts, strict=True) if c < min_group_rows}
    mask = np.isin(g.astype(str), sorted(kept))
    report: dict[str, Any] = {"groups": {}, "excluded": excluded, DEMOGRAPHIC_PARITY: None, EQUALIZED_ODDS: None}
    if not mask.any():
        return report
    y, pred, g = y[mask], pred[mask], g[mask].astype(str)
    import warnings

    with warnings.catch_warnings():  # a group without positives (negatives) warns about an undefined TPR (FPR)
        warnings.simplefilter("ignore")
        frame = MetricFrame(
            metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                     "false_positive_rate": false_positive_rate},
            y_true=y, y_pred=pred, sensitive_features=g,
        )
        by_group = frame.by_group
        for group in by_group.index:
            row = by_group.loc[group]
            report["groups"][str(group)] = {"rows": int((g == group).sum()),
                                            **{k: _number(row[k]) for k in by_group.columns}}
        if len(kept) >= 2:
            report[DEMOGRAPHIC_PARITY] = _number(demographic_parity_difference(y, pred, sensitive_features=g))
            report[EQUALIZED_ODDS] = _number(equalized_odds_difference(y, pred, sensitive_features=g))
    return report


def _number(value: Any) -> float | None:
    import math

    value = float(value)
    return None if math.isnan(value) else value


def report_metrics(column: str, report: Mapping[str, Any]) -> dict[str, float]:
    """The run metrics of a :func:`fairness_report` for ``column`` (a difference only when it was measured)."""
    out = {metric_key(column, GROUPS): float(len(report["groups"]))}
    for name in (DEMOGRAPHIC_PARITY, EQUALIZED_ODDS):
        if report.get(name) is not None:
            out[metric_key(column, name)] = float(report[name])
    return out
