"""Label-free performance estimation: what a binary classifier's ROC AUC, precision, recall and accuracy
probably are in an hour whose labels have not arrived, from its predicted probabilities alone.

The method is NannyML's Confidence-based Performance Estimation (CBPE; NannyML documentation, "How it
works: Performance Estimation — Confidence-based Performance Estimation (CBPE)",
https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html, and the source of
``nannyml`` 0.13.1, Apache License 2.0: ``performance_estimation/confidence_based/{cbpe,metrics}.py``,
``calibration.py``, ``sampling_error/binary_classification.py``, ``thresholds.py``). NannyML publishes
no paper for it; this module re-implements it with numpy and scikit-learn and is checked against
NannyML's own output (``bench/cbpe_reference/make_expected.py``,
``tests/include/monitoring/test_performance_estimation.py``). NannyML itself is not a dependency:
it does not resolve with the project's lock (it needs older botocore through s3fs).

The idea: when a score ``p`` is a calibrated probability of the positive class, a row decided
positive (``p >= threshold``) is a true positive with probability ``p`` and a false positive with
probability ``1 - p``; a row decided negative is a false negative with probability ``p`` and a true
negative with ``1 - p``. Summing these expectations over the hour gives an expected confusion
matrix, hence expected precision, recall and accuracy; the ROC AUC is estimated from the ROC curve
of those expected counts (:func:`estimate_roc_auc`). What CBPE does, step by step:

1. **Fit** (:meth:`Cbpe.fit`) on a *reference* set with labels — here the version's training holdout
   (:func:`log_holdout_predictions`). If isotonic regression lowers the expected calibration error
   of the scores in cross-validation (:func:`needs_calibration`), an isotonic calibrator
   (``IsotonicRegression(out_of_bounds="clip")``) is fitted on the whole reference and applied to
   every later score. The reference also gives each metric's *sampling-error components*
   (a standard deviation and a fraction; below).
2. **Estimate** (:meth:`Cbpe.estimate`) on an hour's scores (no labels): decisions from the raw scores
   (``score >= threshold``), expectations from the calibrated ones.
3. **Confidence band**: the estimate ± ``SAMPLING_ERROR_RANGE`` (3) × its sampling error, clipped to
   [0, 1]. The sampling error is the reference's per-observation standard deviation over the square
   root of the hour's relevant rows (standard error of the mean): accuracy ``std(correct) / sqrt(n)``;
   precision ``std(1 for TP, 0 for FP) / sqrt(n * share decided positive)``; recall
   ``std(1 for TP, 0 for FN) / sqrt(n * share of positives)``; ROC AUC, written as a Mann-Whitney U
   statistic, ``std(per-positive share of negatives ranked below it) / sqrt(n * share of positives)``
   (all shares from the reference). It is the band of sampling noise only, not of estimation error.
   Measured (``tests/include/monitoring/test_performance_estimation.py``, 300 hours of 400 rows): the
   sampling errors of accuracy, precision and recall match the spread of the realised values between
   hours within about 10 %; the ROC AUC one is about 0.8 of it (it keeps only the positives' term of the
   Mann-Whitney variance), so its band is narrower than it should be. The error of the calibrator
   fitted on the reference (about 0.01 with 20,000 reference rows) is not in the band either.
4. NannyML's **alert thresholds** (:func:`reference_thresholds`): the metric realised on chunks of
   the reference, mean ± 3 standard deviations, clipped to [0, 1]. Hourly monitoring uses the
   configured drops instead (below); the function is kept for parity and for callers who want NannyML's rule.

Ties: NannyML orders scores with numpy's default (unstable) ``argsort``; so does this module, so
both give the same numbers on the same machine. With tied scores, that order (and so the ROC AUC
estimate, its sampling-error component and the calibration check) may differ between CPUs.

Limitations (NannyML's, documented there): the estimate is only as good as the calibration. It
assumes that the relation between inputs and labels does not change (no concept drift): under
concept drift the scores stay as confident as before while the model is wrong more often, and CBPE
does not see it — only the delayed labels do (:mod:`include.monitoring.kpis`). It also needs the
calibration learned on the reference to hold where the hour's inputs went (covariate shift into
regions the reference barely covered weakens it), and enough rows (the band says how many).

Hourly monitoring (``monitoring.estimated_performance``, :class:`include.config.EstimatedPerformanceConfig`):
:func:`estimate_hour` fits CBPE on the served version's holdout predictions and estimates the hour's
valid predictions; :func:`findings` turns a metric whose estimate fell at least ``max_drop`` below
the version's holdout value — with the holdout value above the estimate's band, so not sampling
noise — into the finding ``estimated.<metric>`` (a warning); a fall of ``critical_drop`` makes the
hour critical. Once the hour's delayed labels arrived, the realised value and the estimate's
absolute error (both over the labelled rows) are recorded beside the estimate.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from include.monitoring.findings import Finding

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from sklearn.isotonic import IsotonicRegression

    from include.config import EstimatedPerformanceConfig, ModelConfig

log = logging.getLogger(__name__)

METRICS = ("roc_auc", "precision", "recall", "accuracy")
SAMPLING_ERROR_RANGE = 3  # nannyml.sampling_error.SAMPLING_ERROR_RANGE: the band is the estimate +/- 3 sampling errors
THRESHOLD_STD_MULTIPLIER = 3  # nannyml.thresholds.StandardDeviationThreshold's default
LIMITS = (0.0, 1.0)  # every metric here lies in [0, 1]: bands and thresholds are clipped to it
CALIBRATION_BINS = 10  # nannyml.calibration.needs_calibration(bin_count=10, split_count=10)
CALIBRATION_SPLITS = 10

PREFIX = "estimated."  # finding names and MLflow metric names: estimated.<metric>[.<part>]
HOLDOUT_DIR = "evidence"
HOLDOUT_FILE = "holdout_predictions.parquet"
HOLDOUT_ARTIFACT = f"{HOLDOUT_DIR}/{HOLDOUT_FILE}"
SCORE, LABEL = "prediction", "label"


# --- the estimator --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One metric estimated on one set of scores: ``value`` and its band ``[lower, upper]``
    (``value`` ± 3 ``sampling_error``, clipped to [0, 1]); None where it cannot be computed
    (no rows, or a degenerate set). ``rows``: the scores it was computed on."""

    metric: str
    value: float | None
    sampling_error: float | None
    lower: float | None
    upper: float | None
    rows: int


@dataclass(frozen=True)
class Cbpe:
    """CBPE fitted on a reference set (:meth:`fit`): what :meth:`estimate` needs, nothing else.

    ``threshold``: a row is decided positive when its (uncalibrated) score is ``>= threshold``.
    ``components``: per metric, the reference's sampling-error components (NannyML's
    ``*_sampling_error_components``). ``reference``: per metric, its value realised on the reference
    (None where undefined), with NannyML's rules (:func:`realised`). ``calibrator``: the isotonic
    calibrator, or None when calibration did not help (or was switched off).
    """

    threshold: float
    metrics: tuple[str, ...]
    components: Mapping[str, tuple[float, ...]]
    reference: Mapping[str, float | None]
    reference_rows: int
    calibrator: IsotonicRegression | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(
        cls, scores: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray, threshold: float,
        metrics: Iterable[str] = METRICS, *, calibrate: bool = True,
    ) -> Cbpe:
        """Fit on reference ``scores`` (shape (n,), probabilities of the positive class) and their
        ``labels`` (shape (n,), 1 = positive, 0 = negative), as NannyML's ``CBPE.fit`` does for
        ``problem_type="classification_binary"``.

        ``calibrate``: NannyML's isotonic step when :func:`needs_calibration` says it helps (False:
        never calibrate, a departure from NannyML for scores calibrated beforehand).
        Raises ``ValueError`` for an unknown metric, empty or mismatched inputs, a missing or
        non-finite score or label, or a label other than 0 and 1.
        """
        metrics = tuple(metrics)
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"metrics: {unknown or 'none given'}; CBPE estimates {list(METRICS)}")
        p, y = _as_float(scores, "scores"), _as_float(labels, "labels")
        if len(p) != len(y):
            raise ValueError(f"scores ({len(p)}) and labels ({len(y)}) differ in length")
        if len(p) == 0:
            raise ValueError("the reference has no rows")
        if not (np.isfinite(p).all() and np.isfinite(y).all()):
            raise ValueError("the reference has a missing or non-finite score or label")
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(f"reference labels must be 0 or 1, got {sorted(set(np.unique(y)) - {0.0, 1.0})[:5]}")
        y = y.astype(int)
        decided = (p >= threshold).astype(int)
        components = {m: _COMPONENTS[m](y, p, decided) for m in metrics}
        reference = {m: realised(m, y, p, threshold) for m in metrics}
        calibrator = None
        if calibrate and needs_calibration(y, p):
            from sklearn.isotonic import IsotonicRegression

            calibrator = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(p, y)
        return cls(threshold, metrics, components, reference, len(p), calibrator)

    def calibrated(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """``scores`` (shape (n,)) through the fitted calibrator (unchanged, as float64, without one)."""
        p = _as_float(scores, "scores")
        return self.calibrator.predict(p) if self.calibrator is not None else p

    def estimate(self, scores: Sequence[float] | np.ndarray, metrics: Iterable[str] | None = None) -> dict[str, Estimate]:
        """Estimate ``metrics`` (default: the fitted ones) on ``scores`` (shape (n,); NaN scores are left
        out, as NannyML does). Returns ``{metric: Estimate}``; every value is None without rows.
        Raises ``ValueError`` for a metric it was not fitted for.
        """
        metrics = tuple(self.metrics if metrics is None else metrics)
        missing = [m for m in metrics if m not in self.components]
        if missing:
            raise ValueError(f"not fitted for {missing}; fitted: {list(self.metrics)}")
        raw = _as_float(scores, "scores")
        raw = raw[~np.isnan(raw)]
        calibrated = self.calibrated(raw)
        decided = (raw >= self.threshold).astype(int)
        out = {}
        for metric in metrics:
            if len(raw) == 0:
                out[metric] = Estimate(metric, None, None, None, None, 0)
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                value = _ESTIMATORS[metric](raw, calibrated, decided)
                error = _sampling_error(metric, self.components[metric], len(raw))
            lower = max(LIMITS[0], value - SAMPLING_ERROR_RANGE * error)
            upper = min(LIMITS[1], value + SAMPLING_ERROR_RANGE * error)
            out[metric] = Estimate(metric, _finite(value), _finite(error), _finite(lower), _finite(upper), len(raw))
        return out


def _as_float(values: Sequence[float] | np.ndarray | pd.Series, name: str) -> np.ndarray:
    array = np.asarray(values, dtype="float64")
    if array.ndim != 1:
        raise ValueError(f"{name}: expected shape (n,), got {array.shape}")
    return array


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# Estimates (nannyml.performance_estimation.confidence_based.metrics.estimate_*): raw scores decide,
# calibrated ones give the expected confusion matrix.

def _estimate_precision(raw: np.ndarray, calibrated: np.ndarray, decided: np.ndarray) -> float:
    tp = np.sum(np.where(decided == 1, calibrated, 0))
    fp = np.sum(np.where(decided == 1, 1 - calibrated, 0))
    return float(tp / (tp + fp)) if tp + fp != 0 else 0.0


def _estimate_recall(raw: np.ndarray, calibrated: np.ndarray, decided: np.ndarray) -> float:
    tp = np.sum(np.where(decided == 1, calibrated, 0))
    fn = np.sum(np.where(decided == 0, calibrated, 0))
    return float(tp / (tp + fn)) if tp + fn != 0 else 0.0


def _estimate_accuracy(raw: np.ndarray, calibrated: np.ndarray, decided: np.ndarray) -> float:
    tp = np.sum(np.where(decided == 1, calibrated, 0))
    tn = np.sum(np.where(decided == 0, 1 - calibrated, 0))
    return float((tp + tn) / len(decided))


def estimate_roc_auc(calibrated: np.ndarray, raw: np.ndarray) -> float:
    """The ROC AUC expected from ``calibrated`` probabilities when rows are ranked by their ``raw``
    scores (both shape (n,)): NannyML's ``estimate_roc_auc``.

    Ranked by descending raw score, each row adds its calibrated probability to the expected true
    positives and one minus it to the expected false positives; the curve of the normalised
    cumulative sums (rounded to 5 decimals, as NannyML does) is integrated with the trapezoidal
    rule. NaN when the expected positives or negatives sum to zero.
    """
    from sklearn.metrics import auc

    order = np.argsort(raw)[::-1]  # NannyML's order, numpy's default sort: see the module docstring on ties
    p = np.asarray(calibrated, dtype="float64")[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        tps = np.cumsum(p)
        fps = 1 + np.arange(len(p)) - tps
        tps = np.round(np.r_[0, tps], 5)
        fps = np.round(np.r_[0, fps], 5)
        tpr, fpr = tps / tps[-1], fps / fps[-1]
        if not (np.isfinite(tpr).all() and np.isfinite(fpr).all()):
            return float("nan")
        return float(auc(fpr, tpr))


_ESTIMATORS = {
    "roc_auc": lambda raw, calibrated, decided: estimate_roc_auc(calibrated, raw),
    "precision": _estimate_precision,
    "recall": _estimate_recall,
    "accuracy": _estimate_accuracy,
}


# Sampling-error components from the reference (nannyml.sampling_error.binary_classification).

def _roc_auc_components(y: np.ndarray, p: np.ndarray, decided: np.ndarray) -> tuple[float, float]:
    """(std of each positive's share of negatives ranked below it, share of positives); the minority
    class is taken as positive (labels and scores flipped when positives are the majority)."""
    if np.mean(y) > 0.5:
        y, p = np.abs(y - 1), 1 - p
    order = np.argsort(p)
    y = y[order]
    positive_ranks = y * np.arange(len(y))
    ranks = np.unique(positive_ranks)[1:]  # NannyML drops rank 0 with the negatives' zeros
    below = ranks - np.arange(len(ranks))
    positives = np.sum(y)
    negatives = len(y) - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.true_divide(below, negatives)
        return float(np.std(shares)) if len(shares) else float("nan"), float(positives / len(y))


def _precision_components(y: np.ndarray, p: np.ndarray, decided: np.ndarray) -> tuple[float, float]:
    """(std of 1 per true positive and 0 per false positive, share decided positive)."""
    hits = np.concatenate([np.ones(np.sum((y == decided) & (decided == 1))),
                           np.zeros(np.sum((y != decided) & (decided == 1)))])
    return float(np.std(hits)) if len(hits) else float("nan"), float(np.sum(decided) / len(decided))


def _recall_components(y: np.ndarray, p: np.ndarray, decided: np.ndarray) -> tuple[float, float]:
    """(std of 1 per true positive and 0 per false negative, share of positives)."""
    hits = np.concatenate([np.ones(np.sum((y == decided) & (decided == 1))),
                           np.zeros(np.sum((y != decided) & (decided == 0)))])
    return float(np.std(hits)) if len(hits) else float("nan"), float(np.sum(y) / len(decided))


def _accuracy_components(y: np.ndarray, p: np.ndarray, decided: np.ndarray) -> tuple[float]:
    """(std of 1 per correct decision and 0 per wrong one,)."""
    return (float(np.std((y == decided).astype(int))),)


_COMPONENTS = {
    "roc_auc": _roc_auc_components,
    "precision": _precision_components,
    "recall": _recall_components,
    "accuracy": _accuracy_components,
}


def _sampling_error(metric: str, components: tuple[float, ...], rows: int) -> float:
    """The sampling error of ``metric`` on ``rows`` rows: ``std / sqrt(rows * fraction)`` (accuracy: ``std / sqrt(rows)``)."""
    if metric == "accuracy":
        (std,) = components
        return std / np.sqrt(rows)
    std, fraction = components
    return std / np.sqrt(rows * fraction)


# --- calibration (nannyml.calibration) ----------------------------------------------------------


def needs_calibration(labels: np.ndarray, scores: np.ndarray, bin_count: int = CALIBRATION_BINS,
                      split_count: int = CALIBRATION_SPLITS) -> bool:
    """Whether isotonic calibration makes ``scores`` (shape (n,)) better calibrated for ``labels``
    (shape (n,), 0/1): NannyML's ``needs_calibration`` with its ``IsotonicCalibrator``.

    False for a single class or a ROC AUC above 0.999. Otherwise ``split_count`` stratified 90/10
    shuffles (``StratifiedShuffleSplit(random_state=42)``) fit isotonic regression on the 90 % and
    calibrate the 10 %; True when the expected calibration error (``bin_count`` equal-count bins over
    the pooled test parts) is lower after calibration than before.
    Raises ``ValueError`` for NaN scores or labels (NannyML raises too).
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit

    y, p = np.asarray(labels), np.asarray(scores, dtype="float64")
    if np.isnan(y.astype("float64")).any() or np.isnan(p).any():
        raise ValueError("needs_calibration: NaN in the labels or scores")
    if len(np.unique(y)) == 1:
        return False
    if roc_auc_score(y, p) > 0.999:
        return False
    truth, before, after = [], [], []
    for train, test in StratifiedShuffleSplit(n_splits=split_count, test_size=0.1, random_state=42).split(p, y):
        regressor = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(p[train], y[train])
        truth.append(y[test])
        before.append(p[test])
        after.append(regressor.predict(p[test]))
    y_test, p_before, p_after = np.concatenate(truth), np.concatenate(before), np.concatenate(after)
    edges = _bin_edges(len(p_before), bin_count)
    return _calibration_error(y_test, p_before, edges) > _calibration_error(y_test, p_after, edges)


def _bin_edges(length: int, bins: int) -> list[tuple[int, int]]:
    """NannyML's ``_get_bin_index_edges``: ``bins`` adjacent index ranges over ``length`` sorted rows."""
    if length <= 2 * bins:
        bins = length // 2
        if bins < 2:
            raise ValueError(f"cannot split {length} rows into at least 2 calibration bins")
    width = length // bins
    edges = np.asarray(range(0, length + 1, width))
    edges[-1] = length
    return list(zip(edges[:-1], edges[1:], strict=True))


def _calibration_error(y: np.ndarray, p: np.ndarray, edges: list[tuple[int, int]]) -> float:
    """Expected calibration error over equal-count bins of rows sorted by ``p`` (NannyML's definition)."""
    order = p.argsort()
    p, y = p[order], y[order]
    return float(np.sum([(right - left) / len(p) * abs(np.mean(p[left:right]) - np.mean(y[left:right]))
                         for left, right in edges]))


# --- realised values and NannyML's thresholds ----------------------------------------------------


def realised(metric: str, labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray,
             threshold: float) -> float | None:
    """``metric`` realised on ``labels`` (shape (n,), 1 positive, 0 negative) and the decisions
    ``scores >= threshold``, with NannyML's rules (``_realized_performance``): rows with a NaN label or
    score are left out; None without rows, and for ROC AUC, precision and recall when the labels hold
    one class, and for precision and recall when the decisions do.
    """
    from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

    y, p = _as_float(labels, "labels"), _as_float(scores, "scores")
    keep = ~(np.isnan(y) | np.isnan(p))
    y, p = y[keep].astype(int), p[keep]
    if len(y) == 0:
        return None
    decided = (p >= threshold).astype(int)
    if metric == "accuracy":
        return float(accuracy_score(y, decided))
    if len(np.unique(y)) <= 1:
        return None
    if metric == "roc_auc":
        return float(roc_auc_score(y, p))
    if len(np.unique(decided)) <= 1:
        return None
    if metric == "precision":
        return float(precision_score(y, decided, zero_division=0))
    if metric == "recall":
        return float(recall_score(y, decided, zero_division=0))
    raise ValueError(f"unknown metric {metric!r}; one of {list(METRICS)}")


def reference_thresholds(
    scores: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray, threshold: float,
    chunks: Iterable[np.ndarray], metrics: Iterable[str] = METRICS,
) -> dict[str, tuple[float | None, float | None]]:
    """NannyML's alert thresholds (``StandardDeviationThreshold``, ``calculate_threshold_values``):
    per metric, the mean ± 3 standard deviations of its values realised on the reference ``chunks``
    (arrays of row positions into ``scores`` / ``labels``), ignoring chunks where it is undefined; a
    lower threshold at or below 0 becomes 0, an upper one at or above 1 becomes 1. An estimate outside
    ``(lower, upper)`` is NannyML's alert. None where no chunk had a value.
    """
    p, y = _as_float(scores, "scores"), _as_float(labels, "labels")
    chunks = [np.asarray(c) for c in chunks]
    out = {}
    for metric in metrics:
        values = np.asarray([np.nan if (v := realised(metric, y[c], p[c], threshold)) is None else v
                             for c in chunks], dtype="float64")
        if np.isnan(values).all():
            out[metric] = (None, None)
            continue
        mean, std = np.nanmean(values), np.nanstd(values)
        lower = mean - THRESHOLD_STD_MULTIPLIER * std
        upper = mean + THRESHOLD_STD_MULTIPLIER * std
        out[metric] = (float(lower) if lower > LIMITS[0] else LIMITS[0], float(upper) if upper < LIMITS[1] else LIMITS[1])
    return out


# --- hourly monitoring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HourEstimate:
    """One metric of one hour as recorded (:func:`hour_estimates`; a dict of it sits in the
    assessment's ``estimated``). ``drop``: ``reference - value`` (positive = worse). ``realised`` and
    ``abs_error`` (|estimate - realised|, both over the ``labelled_rows``): once enough labels arrived."""

    value: float | None
    lower: float | None
    upper: float | None
    sampling_error: float | None
    rows: int
    reference: float | None
    drop: float | None
    labelled_rows: int = 0
    realised: float | None = None
    abs_error: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def hour_estimates(config: ModelConfig, cbpe: Cbpe, frame: pd.DataFrame) -> dict[str, dict]:
    """The configured metrics (``monitoring.estimated_performance.metrics``) estimated on ``frame``'s valid
    predictions (``prediction``: a finite score in [0, 1]; :func:`include.monitoring.kpis.valid_predictions`),
    as ``{metric: HourEstimate.as_dict()}``.

    Where the target column holds at least ``min_labelled_rows`` labels (1 = positive) among those rows,
    the value realised on them and the absolute error of the estimate on the same rows are added.
    """
    from include.monitoring.kpis import valid_predictions
    from include.monitoring.log_schema import PREDICTION

    settings = config.monitoring.estimated_performance
    metrics = [m.metric for m in settings.metrics]
    valid = valid_predictions(frame[PREDICTION]).to_numpy()
    scores = _numbers(frame[PREDICTION])[valid]
    target = config.dataset.target.name
    truth = _numbers(frame[target])[valid] if target in frame.columns else np.full(len(scores), np.nan)
    labelled = ~np.isnan(truth)
    labels = (truth[labelled] == 1).astype(float)
    checked = cbpe.estimate(scores[labelled], metrics) if labelled.sum() >= settings.min_labelled_rows else {}
    out = {}
    for metric, est in cbpe.estimate(scores, metrics).items():
        reference = cbpe.reference.get(metric)
        drop = reference - est.value if reference is not None and est.value is not None else None
        record = HourEstimate(est.value, est.lower, est.upper, est.sampling_error, est.rows, reference, drop,
                              labelled_rows=int(labelled.sum()))
        if metric in checked:
            real = realised(metric, labels, scores[labelled], cbpe.threshold)
            if real is not None and checked[metric].value is not None:
                record = HourEstimate(**{**record.as_dict(), "realised": real,
                                         "abs_error": abs(checked[metric].value - real)})
        out[metric] = record.as_dict()
    return out


def _numbers(series: pd.Series) -> np.ndarray:
    """``series`` as float64; what is not a number (text from another writer, None) becomes NaN."""
    return pd.to_numeric(series.astype(object), errors="coerce").to_numpy(dtype="float64")


def findings(settings: EstimatedPerformanceConfig,
             estimated: Mapping[str, Mapping]) -> tuple[list[Finding], list[Finding]]:
    """The hour's ``estimated.<metric>`` findings and the ones that make it critical, from ``estimated``
    (:func:`hour_estimates`) and the thresholds in ``settings``.

    A metric counts when its estimate fell at least ``max_drop`` below the version's holdout value
    and that value lies above the estimate's band (the fall is beyond sampling noise): a finding
    (value: the drop, threshold: ``max_drop``). When it also fell by ``critical_drop`` (if set), the
    second list has it again with ``critical_drop`` as threshold.
    """
    found, critical = [], []
    for item in settings.metrics:
        rec = estimated.get(item.metric)
        if not rec or rec.get("drop") is None or rec.get("upper") is None:
            continue
        drop, reference = rec["drop"], rec["reference"]
        if drop < item.max_drop or reference <= rec["upper"]:
            continue
        detail = (f"{item.metric} estimated {rec['value']:.4f} (band {rec['lower']:.4f}..{rec['upper']:.4f}, CBPE "
                  f"on {rec['rows']} rows, without labels) vs {reference:.4f} on the holdout")
        found.append(Finding(f"{PREFIX}{item.metric}", drop, item.max_drop, detail))
        if item.critical_drop is not None and drop >= item.critical_drop:
            critical.append(Finding(f"{PREFIX}{item.metric}", drop, item.critical_drop,
                                    f"estimated {item.metric} fell {drop:.4f} >= critical_drop {item.critical_drop}"))
    return found, critical


LOGGED_PARTS = ("value", "lower", "upper", "reference", "drop", "realised", "abs_error")


def metric_values(estimated: Mapping[str, Mapping]) -> dict[str, float]:
    """The hour's estimated performance as MLflow metrics: ``estimated.<metric>`` (the estimate) and
    ``estimated.<metric>.<part>`` for its band (``lower``, ``upper``), the holdout value (``reference``),
    the ``drop`` below it, and, once labels arrived, ``realised`` and ``abs_error``; parts without a value are left out."""
    out = {}
    for metric, record in estimated.items():
        for part in LOGGED_PARTS:
            value = record.get(part)
            if value is not None and np.isfinite(value):
                out[f"{PREFIX}{metric}" + ("" if part == "value" else f".{part}")] = float(value)
    return out


def log_holdout_predictions(
    client: MlflowClient, run_id: str, config: ModelConfig, target: pd.Series, scores: np.ndarray
) -> str:
    """Log the holdout's scores and labels (CBPE's reference) as ``evidence/holdout_predictions.parquet``
    of the training run: columns ``prediction`` (float64, the positive-class probability) and ``label``
    (int8: 1 where ``target`` is the positive class, ``dataset.checks.classes[1]``). Returns the artifact path.
    Raises ``ValueError`` when ``target`` and ``scores`` differ in length.
    """
    if len(target) != len(scores):
        raise ValueError(f"holdout target ({len(target)}) and scores ({len(scores)}) differ in length")
    positive = config.dataset.checks.classes[1]
    frame = pd.DataFrame({SCORE: np.asarray(scores, dtype="float64"),
                          LABEL: (pd.Series(target).to_numpy() == positive).astype("int8")})
    with tempfile.TemporaryDirectory(prefix="holdout-predictions-") as tmp:
        path = Path(tmp) / HOLDOUT_FILE
        frame.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), HOLDOUT_DIR)
    return HOLDOUT_ARTIFACT


def load_holdout_predictions(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """The holdout scores and labels logged with run ``run_id`` (:func:`log_holdout_predictions`).

    Raises ``FileNotFoundError`` when the run has none (a version trained before they were logged).
    """
    if HOLDOUT_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, HOLDOUT_DIR)}:
        raise FileNotFoundError(f"run {run_id} has no {HOLDOUT_ARTIFACT} artifact")
    with tempfile.TemporaryDirectory(prefix="holdout-predictions-") as tmp:
        return pd.read_parquet(client.download_artifacts(run_id, HOLDOUT_ARTIFACT, tmp))


def estimate_hour(client: MlflowClient, config: ModelConfig, version: str | None,
                  frame: pd.DataFrame) -> dict[str, dict] | None:
    """The hour's estimated performance (:func:`hour_estimates`) for the served ``version``, with CBPE
    fitted on that version's holdout predictions; None when no metric is configured, or when the
    version, its training run or its holdout predictions cannot be found or used (logged as a warning:
    the hour is assessed without estimates). Errors of MLflow itself (the store unreachable) are raised.
    """
    from mlflow.exceptions import MlflowException

    settings = config.monitoring.estimated_performance
    if not settings.metrics or version is None:
        return None
    try:
        run_id = client.get_model_version(config.name, version).run_id
        if not run_id:
            raise FileNotFoundError(f"version {version} has no training run")
        holdout = load_holdout_predictions(client, run_id)
        cbpe = Cbpe.fit(holdout[SCORE], holdout[LABEL], config.monitoring.decision_threshold,
                        [m.metric for m in settings.metrics], calibrate=settings.calibrate)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        log.warning("%s v%s: no estimated performance: %s", config.name, version, exc.message)
        return None
    except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
        log.warning("%s v%s: no estimated performance: %s", config.name, version, exc)
        return None
    return hour_estimates(config, cbpe, frame)
