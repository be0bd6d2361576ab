"""Business KPIs from predictions and their delayed outcomes, and how far they fell from a baseline.

Each KPI in a model's ``monitoring.kpis`` maps a technical quantity to a business one (see
:class:`include.config.KpiConfig`). The same function computes them on an hour of live
predictions joined to the outcomes that have arrived, and on the training holdout (every row
labelled), which gives each version a first baseline before it has served healthy days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from include.config import KpiConfig, ModelConfig

PREDICTION = "prediction"
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
    features, and the target / outcome columns where the outcome has arrived (NaN elsewhere)."""
    threshold = config.monitoring.decision_threshold
    target = config.dataset.target.name
    outcome = config.dataset.outcome.name if config.dataset.outcome else None
    if PREDICTION not in frame.columns:
        raise ValueError(f"KPIs need a {PREDICTION!r} column")
    scores = frame[PREDICTION].to_numpy(dtype=float)
    declined = scores >= threshold
    labelled = frame[target].notna().to_numpy() if target in frame.columns else np.zeros(len(frame), bool)

    out = {}
    for kpi in kpis:
        if kpi.metric == "approval_rate":
            rows, value = len(frame), float(np.mean(~declined)) if len(frame) else None
        else:
            if kpi.metric == "outcome_per_unit":
                _require(frame, [outcome, kpi.per], kpi)
            elif target not in frame.columns:
                _require(frame, [target], kpi)
            rows = int(labelled.sum())
            truth = frame[target].to_numpy()[labelled].astype(float) if rows else np.zeros(0)
            value = _labelled_value(kpi, frame[labelled], truth, declined[labelled], outcome)
        out[kpi.name] = KpiValue(kpi.name, value if rows >= kpi.min_rows else None, rows)
    return out


def _labelled_value(
    kpi: KpiConfig, rows: pd.DataFrame, truth: np.ndarray, declined: np.ndarray, outcome: str | None
) -> float | None:
    if kpi.metric == "precision":
        return float(truth[declined].mean()) if declined.any() else None
    if kpi.metric == "recall":
        positives = truth == 1
        return float(declined[positives].mean()) if positives.any() else None
    approved = ~declined
    per = rows[kpi.per].to_numpy(dtype=float)[approved]
    if not approved.any() or per.sum() == 0:
        return None
    return float(rows[outcome].to_numpy(dtype=float)[approved].sum() / per.sum())


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
