"""Business KPIs from predictions and their delayed labels, and how far they fell from a baseline.

Each KPI in a model's ``monitoring.kpis`` maps a technical quantity to a business one (see
:class:`include.config.KpiConfig`). The same function computes them on an hour of live
predictions joined to the delayed labels that have arrived (:mod:`include.monitoring.delayed_labels`),
and on the training holdout (every row labelled), which gives each version a first baseline before
it has served healthy days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from include.config import KpiConfig, ModelConfig
from include.monitoring.log_schema import PREDICTION

KPI_PREFIX = "kpi."  # MLflow metric names: the holdout KPIs on a training run, hourly ones on the monitoring run


@dataclass(frozen=True)
class KpiValue:
    name: str
    value: float | None  # None: too few rows to say
    rows: int  # rows it was computed on (labelled rows for outcome KPIs)

    def as_dict(self) -> dict:
        return asdict(self)


def compute_kpis(config: ModelConfig, kpis: Sequence[KpiConfig], frame: pd.DataFrame) -> dict[str, KpiValue]:
    """KPIs of ``frame``: one row per prediction with ``prediction`` (the positive-class score), the
    features, and the target / outcome columns where the delayed label has arrived (NaN elsewhere).

    Only rows with a valid prediction (a finite score in [0, 1]) count: a missing, NaN, infinite
    or out-of-range score is no decision (:func:`valid_predictions`; monitoring reports them as a
    data-quality finding). Likewise an ``outcome_per_unit`` row needs a finite outcome and a finite
    ``per`` value. Values that are not numbers (text from another writer) count as missing. A KPI
    whose rows are fewer than its ``min_rows`` has no value (None), never NaN.
    Raises ``ValueError`` naming a column a KPI needs that ``frame`` lacks.
    """
    threshold = config.monitoring.decision_threshold
    target = config.dataset.target.name
    outcome = config.dataset.outcome.name if config.dataset.outcome else None
    if PREDICTION not in frame.columns:
        raise ValueError(f"KPIs need a {PREDICTION!r} column")
    valid = valid_predictions(frame[PREDICTION])
    scores = _numbers(frame[PREDICTION])
    declined = valid & (scores >= threshold)
    approved = valid & ~(scores >= threshold)
    labelled = valid & (_numbers(frame[target]).notna() if target in frame.columns else False)

    out = {}
    for kpi in kpis:
        if kpi.metric == "approval_rate":
            rows = int(valid.sum())
            value = float(approved.sum() / rows) if rows else None
        else:
            _require(frame, [target, *([outcome, kpi.per] if kpi.metric == "outcome_per_unit" else [])], kpi)
            rows, value = _labelled_value(kpi, frame, labelled.to_numpy(), declined.to_numpy(), approved.to_numpy(),
                                          target, outcome)
        if value is not None and not np.isfinite(value):
            value = None
        out[kpi.name] = KpiValue(kpi.name, value if rows >= kpi.min_rows else None, rows)
    return out


def valid_predictions(scores: pd.Series) -> pd.Series:
    """Which predictions are usable: a finite probability in [0, 1] (bool per row)."""
    values = _numbers(scores)
    return values.notna() & np.isfinite(values) & (values >= 0) & (values <= 1)


def _numbers(series: pd.Series) -> pd.Series:
    """``series`` as float64; values that are not numbers become NaN."""
    if pd.api.types.is_bool_dtype(series.dtype) or not pd.api.types.is_numeric_dtype(series.dtype):
        series = pd.to_numeric(series.astype(object), errors="coerce")
    return series.astype("float64")


def _labelled_value(
    kpi: KpiConfig, frame: pd.DataFrame, labelled: np.ndarray, declined: np.ndarray, approved: np.ndarray,
    target: str, outcome: str | None,
) -> tuple[int, float | None]:
    """(rows in the KPI's denominator, value): declined for precision, defaults for recall, approved for
    outcome_per_unit; labelled rows only."""
    truth = _numbers(frame[target]).to_numpy()
    if kpi.metric == "precision":
        rows = labelled & declined
        return int(rows.sum()), float(truth[rows].mean()) if rows.any() else None
    if kpi.metric == "recall":
        rows = labelled & (truth == 1)
        return int(rows.sum()), float(declined[rows].mean()) if rows.any() else None
    per, paid = _numbers(frame[kpi.per]).to_numpy(), _numbers(frame[outcome]).to_numpy()
    rows = labelled & approved & np.isfinite(per) & np.isfinite(paid)
    total = per[rows].sum()
    return int(rows.sum()), float(paid[rows].sum() / total) if total else None


def _require(frame: pd.DataFrame, columns: list[str | None], kpi: KpiConfig) -> None:
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise ValueError(f"KPI {kpi.name!r} ({kpi.metric}) needs column(s) {missing}")


def drops(
    kpis: Sequence[KpiConfig], values: Mapping[str, KpiValue], baseline: Mapping[str, float]
) -> dict[str, float]:
    """How far each KPI fell below its baseline (positive = worse), where both are known."""
    out = {}
    for kpi in kpis:
        value, base = values.get(kpi.name), baseline.get(kpi.name)
        if value is not None and value.value is not None and base is not None:
            out[kpi.name] = float(base - value.value)
    return out
