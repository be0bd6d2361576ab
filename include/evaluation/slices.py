"""The primary metric per slice: per value of each configured column (a feature, or a band derived from one).

Logged as run metrics ``slice.<column>.<value>.<metric>`` (the metric, when the slice holds both classes)
and ``slice.<column>.<value>.rows`` (its holdout rows, always), plus the artifact ``evidence/slices.json``
(rows, positives and the metric per slice). Values are :func:`include.evaluation.columns.value_token` tokens.
:func:`read_slices` reads them back from a run's metrics, which is all the ``slices`` gate needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

PREFIX = "slice."
ROWS = "rows"
SLICES_ARTIFACT = "evidence/slices.json"
MAX_VALUES = 100  # slices per column: more is an identifier or a number, not a population segment


def metric_key(column: str, value: str, metric: str) -> str:
    """``slice.<column>.<value>.<metric>`` (``metric`` ``rows``: the slice's row count)."""
    return f"{PREFIX}{column}.{value}.{metric}"


def slice_report(groups: pd.DataFrame, y_true: Any, proba: Any, metric: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{column: {value: {"rows", "positives", metric: value | None}}}`` for every column of ``groups``.

    ``groups``: one column of group tokens per sliced column (:func:`include.evaluation.columns.group_frame`),
    aligned with ``y_true`` (0/1) and ``proba`` (positive-class probability). ``metric``: one of
    :func:`include.training.evaluate.classification_metrics`' names, computed as it computes it (threshold
    0.5); None for a slice with a single class, where ROC AUC is undefined. Raises ValueError for a column
    with more than :data:`MAX_VALUES` values.
    """
    import numpy as np

    from include.training.evaluate import classification_metrics

    y = np.asarray(y_true).astype(int)
    p = np.asarray(proba, dtype=np.float64)
    report: dict[str, dict[str, dict[str, Any]]] = {}
    for column in groups.columns:
        values = groups[column].to_numpy()
        if len(set(values)) > MAX_VALUES:
            raise ValueError(f"slice column {column!r} has {len(set(values))} values on the holdout (at most "
                             f"{MAX_VALUES}): slice bands of it instead (evidence.derived_columns)")
        per_value = {}
        for value in sorted(set(values)):
            mask = values == value
            ys = y[mask]
            both = 0 < ys.sum() < ys.size
            per_value[str(value)] = {
                ROWS: int(mask.sum()),
                "positives": int(ys.sum()),
                metric: classification_metrics(ys, p[mask])[metric] if both else None,
            }
        report[str(column)] = per_value
    return report


def report_metrics(report: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str) -> dict[str, float]:
    """The run metrics of a :func:`slice_report`: ``slice.<column>.<value>.<metric>`` and ``....rows``."""
    out: dict[str, float] = {}
    for column, values in report.items():
        for value, entry in values.items():
            out[metric_key(column, value, ROWS)] = float(entry[ROWS])
            if entry.get(metric) is not None:
                out[metric_key(column, value, metric)] = float(entry[metric])
    return out


def read_slices(metrics: Mapping[str, float], column: str, metric: str) -> dict[str, dict[str, float | None]]:
    """``{value: {"rows": n | None, metric: value | None}}`` for ``column``, from a run's metrics.

    Keys are matched by the known ``slice.<column>.`` prefix and ``.<metric>`` / ``.rows`` suffix, so a
    value token holding dots reads back whole. Empty when the run has no slice metrics for ``column``.
    """
    prefix = f"{PREFIX}{column}."
    out: dict[str, dict[str, float | None]] = {}
    for key, value in metrics.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        for name in (metric, ROWS):
            if rest.endswith(f".{name}") and len(rest) > len(name) + 1:
                out.setdefault(rest[: -len(name) - 1], {ROWS: None, metric: None})[name] = float(value)
    return out


def compare(
    candidate: Mapping[str, float],
    champion: Mapping[str, float],
    columns: Sequence[str],
    metric: str,
    *,
    higher_is_better: bool,
    min_rows: int,
) -> dict[str, Any]:
    """Slice-by-slice comparison of two runs' metrics: what the ``slices`` gate decides on.

    A slice is compared when both runs logged the metric for it and both hold at least ``min_rows`` rows.
    ``drop``: how much worse the candidate is (champion - candidate, sign-flipped for lower-is-better
    metrics). Returns ``{"compared": [(column, value, candidate, champion, drop)], "skipped": n,
    "missing_columns": [columns the candidate logged no slice of]}``.
    """
    sign = 1 if higher_is_better else -1
    compared, skipped, missing = [], 0, []
    for column in columns:
        mine, theirs = read_slices(candidate, column, metric), read_slices(champion, column, metric)
        if not mine:
            missing.append(column)
            continue
        for value, entry in sorted(mine.items()):
            other = theirs.get(value)
            ok_rows = other is not None and min(entry[ROWS] or 0, other[ROWS] or 0) >= min_rows
            if not ok_rows or entry[metric] is None or other[metric] is None:
                skipped += 1
                continue
            compared.append((column, value, entry[metric], other[metric], sign * (other[metric] - entry[metric])))
    return {"compared": compared, "skipped": skipped, "missing_columns": missing}
