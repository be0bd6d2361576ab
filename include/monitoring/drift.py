"""Data drift tests: Evidently's per-feature decisions, computed fast against a reference profile.

The definition is Evidently 0.7.23's ``DataDriftPreset`` with its defaults (the per-column
``ValueDrift`` metrics it generates, which call the legacy ``get_one_column_drift``):

* nulls and +/-inf are dropped from both sides first; ``n`` is the reference's remaining rows and
  ``n_values`` the number of distinct values in reference and current together;
* reference ``n <= 1000`` ("small"): a numeric column with ``n_values > 5`` gets the two-sample
  Kolmogorov-Smirnov test (drift when p <= 0.05); any other column the chi-square test
  (``n_values > 2``) or the two-proportion Z test (``n_values <= 2``), drift when p < 0.05;
* reference ``n > 1000`` ("large"): a numeric column with ``n_values > 5`` gets the Wasserstein
  distance normed by the reference's standard deviation (drift when >= 0.1); any other column the
  Jensen-Shannon distance of the value frequencies (drift when >= 0.1);
* dataset drift when the share of drifted features is ``>= drift_share``.

For a two-valued column numeric and categorical types get the same tests. A category never seen
in the reference makes the chi-square p-value 0 (an infinite statistic), as in Evidently.

:func:`detect_drift` sorts each current column once and merges it with the distinct values the
reference profile (:mod:`include.monitoring.reference_profile`) stores: no training data is read
and nothing is sampled. The HTML report (:func:`evidently_report`) is Evidently's own, on samples
of both sides, so its figures may differ slightly from the decision; :func:`evidently_drift` runs
Evidently on full frames (the cross-check of tests and benchmark).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from include.monitoring.reference_profile import (
    CATEGORICAL_TYPES,
    NUMERIC_TYPES,
    CategoricalReference,
    NumericReference,
    ReferenceProfile,
    check_frame,
    check_types,
    clean,
    sorted_keys,
)

log = logging.getLogger(__name__)

# Evidently 0.7.23: the reference size up to which the "small sample" tests are used, the number of
# distinct values up to which a numeric column is treated like a categorical one, and the default
# threshold of each test (its StatTest.default_threshold).
SMALL_REFERENCE_ROWS = 1000
FEW_VALUES = 5
KS, CHISQUARE, Z, WASSERSTEIN, JENSENSHANNON = "ks", "chisquare", "z", "wasserstein", "jensenshannon"
THRESHOLDS: dict[str, float] = {KS: 0.05, CHISQUARE: 0.05, Z: 0.05, WASSERSTEIN: 0.1, JENSENSHANNON: 0.1}
_STD_FLOOR = 0.001  # Evidently's lower bound on the Wasserstein norm


@dataclass(frozen=True)
class FeatureDrift:
    column: str
    column_type: str  # the project's type keyword
    stattest: str  # Evidently's test name: ks, chisquare, z, wasserstein, jensenshannon
    threshold: float
    score: float  # p-value (ks, chisquare, z) or distance (wasserstein, jensenshannon)
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    features: dict[str, FeatureDrift]  # in feature order
    share_drifted: float
    dataset_drift: bool
    drift_share: float
    n_reference: int
    n_current: int
    drifted_columns: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # feature -> why it could not be checked

    @property
    def n_features(self) -> int:
        """The profile's features: the checked ones and the skipped ones."""
        return len(self.features) + len(self.skipped)

    @property
    def n_drifted(self) -> int:
        return len(self.drifted_columns)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the counts, the dataset decision and each feature's test, score and decision."""
        return {
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "drift_share": self.drift_share,
            "share_drifted": self.share_drifted,
            "n_drifted": self.n_drifted,
            "dataset_drift": self.dataset_drift,
            "drifted_columns": list(self.drifted_columns),
            "features": {name: _json_feature(f) for name, f in self.features.items()},
            "skipped": dict(self.skipped),
        }


def detect_drift(
    profile: ReferenceProfile, current: pd.DataFrame, *, drift_share: float = 0.5, max_workers: int | None = None
) -> DriftReport:
    """Evidently's ``DataDriftPreset`` decisions for ``current`` against the profile, on all rows.

    A feature that cannot be checked (missing from ``current``, no finite non-null value, text
    where the profile has numbers) is left out of ``features`` and named in ``skipped`` with the
    reason; the drifted share still counts it (as not drifted), so it is a lower bound, and the other
    features are checked as usual. Columns are checked in parallel threads (numpy's sorts release
    the GIL); ``max_workers`` defaults to the CPU count.

    Raises ``ValueError`` for a bad ``drift_share`` or a ``current`` frame without rows.
    """
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    if current.empty:
        raise ValueError("current data has no rows")
    present = [name for name in profile.column_types if name in current.columns]
    workers = max(1, min(max_workers or os.cpu_count() or 1, len(present)))

    def check(name: str) -> FeatureDrift | str:
        try:
            return _check_column(name, profile.column_types[name], profile.columns[name], current[name])
        except (ValueError, TypeError, ArithmeticError) as exc:  # this column's data; the others go on
            return str(exc)

    if workers == 1:
        outcomes = [check(name) for name in present]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift") as pool:
            outcomes = list(pool.map(check, present))
    skipped = {name: "missing from the current data" for name in profile.column_types if name not in current.columns}
    skipped.update({name: why for name, why in zip(present, outcomes, strict=True) if isinstance(why, str)})
    results = [r for r in outcomes if isinstance(r, FeatureDrift)]
    if skipped:
        log.warning("drift not checked for %s", "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return _report(results, drift_share, profile.n_rows, len(current),
                   {name: skipped[name] for name in profile.column_types if name in skipped})


def wasserstein_distance(reference: NumericReference, current: np.ndarray) -> float:
    """The first Wasserstein distance between the reference's distribution and the values ``current``.

    ``current``: sorted finite float64 values (at least one). Not normed (:func:`detect_drift`
    divides it by the reference's standard deviation). Equal to
    ``scipy.stats.wasserstein_distance(reference.values, current, u_weights=reference.counts)``,
    a few times faster, because both sides are already sorted (see bench/drift.py).
    """
    merged = np.concatenate([reference.values, current])
    order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
    return _wasserstein(reference, current.size, order, np.diff(merged[order]))


def _wasserstein(reference: NumericReference, m: int, order: np.ndarray, steps: np.ndarray) -> float:
    """The integral of |F_ref - F_cur| between consecutive merged points (``order``: the merge of the
    reference's distinct values and the ``m`` current values; ``steps``: the gaps between them), each
    CDF the count of values <= the point over its sample size."""
    ref_weight = np.concatenate([reference.counts, np.zeros(m, dtype=np.int64)])[order[:-1]]
    ref_cdf = np.cumsum(ref_weight) / reference.n
    cur_cdf = np.cumsum(order[:-1] >= reference.values.size) / m
    return float(np.dot(np.abs(ref_cdf - cur_cdf), steps))


def _report(results: list[FeatureDrift], drift_share: float, n_reference: int, n_current: int,
            skipped: dict[str, str] | None = None) -> DriftReport:
    drifted = [f.column for f in results if f.drifted]
    share = len(drifted) / (len(results) + len(skipped or {}))
    return DriftReport(
        features={f.column: f for f in results},
        share_drifted=share,
        dataset_drift=bool(share >= drift_share),
        drift_share=drift_share,
        n_reference=n_reference,
        n_current=n_current,
        drifted_columns=drifted,
        skipped=dict(skipped or {}),
    )


def _check_column(name: str, kind: str, ref: NumericReference | CategoricalReference, series: pd.Series) -> FeatureDrift:
    if isinstance(ref, NumericReference):
        stattest, score = _numeric_test(name, ref, series)
    else:
        current = clean(series)
        if current.empty:
            raise ValueError(f"column {name!r} has no non-null values in the current data")
        counts = current.value_counts()
        stattest, score = _count_test(ref.counts, {k: int(v) for k, v in counts.items() if v > 0}, ref.n)
    threshold = THRESHOLDS[stattest]
    if stattest == KS:
        drifted = score <= threshold
    elif stattest in (CHISQUARE, Z):
        drifted = score < threshold
    else:
        drifted = score >= threshold
    return FeatureDrift(name, kind, stattest, threshold, float(score), bool(drifted))


def _numeric_test(name: str, ref: NumericReference, series: pd.Series) -> tuple[str, float]:
    if not pd.api.types.is_numeric_dtype(series.dtype):
        raise ValueError(f"column {name!r} in the current data should be numeric, got dtype {series.dtype}")
    if series.dtype == np.float64:
        values = series.to_numpy()
    else:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    if values.size == 0:
        raise ValueError(f"column {name!r} has no non-null values in the current data")
    current = np.sort(values)
    n = ref.n

    if n <= SMALL_REFERENCE_ROWS:
        n_values = ref.values.size + _new_values(ref.values, current)
        if n_values <= FEW_VALUES:
            return _count_test(_as_counts(ref.values, ref.counts), _as_counts(*_runs(current)), n)
        from scipy.stats import ks_2samp

        return KS, float(ks_2samp(np.repeat(ref.values, ref.counts), current)[1])

    # Large reference: merge the stored distinct values with the sorted current values once.
    merged = np.concatenate([ref.values, current])
    order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
    steps = np.diff(merged[order])
    n_values = int(np.count_nonzero(steps)) + 1
    if n_values <= FEW_VALUES:
        return _count_test(_as_counts(ref.values, ref.counts), _as_counts(*_runs(current)), n)
    return WASSERSTEIN, _wasserstein(ref, current.size, order, steps) / max(ref.std, _STD_FLOOR)


def _count_test(ref: Mapping[Any, int], cur: Mapping[Any, int], n: int) -> tuple[str, float]:
    """Chi-square, Z or Jensen-Shannon on value counts, as Evidently picks and computes them."""
    keys = sorted_keys({**dict.fromkeys(ref, 0), **dict.fromkeys(cur, 0)})
    m = sum(cur.values())
    ref_counts = np.array([ref.get(k, 0) for k in keys], dtype=np.int64)
    cur_counts = np.array([cur.get(k, 0) for k in keys], dtype=np.int64)
    if n > SMALL_REFERENCE_ROWS:
        from scipy.spatial.distance import jensenshannon

        return JENSENSHANNON, float(jensenshannon(ref_counts / n, cur_counts / m))
    if len(keys) > 2:
        from scipy.stats import chisquare

        with np.errstate(divide="ignore", invalid="ignore"):  # an unseen category: infinite statistic, p = 0
            return CHISQUARE, float(chisquare(cur_counts, ref_counts * (m / n))[1])
    if len(ref) == 1 and len(cur) == 1 and next(iter(ref)) == next(iter(cur)):
        return Z, 1.0
    from scipy.stats import norm

    # Evidently's proportions_diff_z_stat_ind with "value != first key" as the event.
    p1 = float(n - ref.get(keys[0], 0)) / n
    p2 = float(m - cur.get(keys[0], 0)) / m
    pooled = float(p1 * n + p2 * m) / (n + m)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n + 1.0 / m))
    return Z, float(2 * (1 - norm.cdf(np.abs(z))))


def _new_values(reference: np.ndarray, current: np.ndarray) -> int:
    """How many distinct values of sorted ``current`` are not in sorted distinct ``reference``."""
    distinct = _runs(current)[0]
    at = np.minimum(np.searchsorted(reference, distinct), reference.size - 1)
    return int(np.count_nonzero(reference[at] != distinct))


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and counts of a sorted array."""
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    return values[starts], np.diff(np.append(starts, values.size))


def _as_counts(values: np.ndarray, counts: np.ndarray) -> dict[float, int]:
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def _json_feature(feature: FeatureDrift) -> dict[str, Any]:
    out = asdict(feature)
    if not np.isfinite(out["score"]):
        out["score"] = None
    return out


# --- Evidently itself ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HtmlReport:
    """An Evidently HTML report written by :func:`evidently_report`, and the features it leaves out (and why)."""

    path: Path
    skipped: dict[str, str] = field(default_factory=dict)


def evidently_report(
    profile: ReferenceProfile, current: pd.DataFrame, path: Path, *, sample_rows: int = 5000, drift_share: float = 0.5
) -> HtmlReport:
    """Evidently's ``DataDriftPreset`` HTML report of a sample of ``current`` against the profile's sample.

    For people to look at: the decision is :func:`detect_drift`'s, on all rows. Features Evidently
    cannot draw (missing from ``current``, no finite non-null value in its sample, text where the
    profile has numbers) are left out of the report and named in :attr:`HtmlReport.skipped`.
    Raises ``ValueError`` when ``current`` has no rows or no feature can be shown.
    """
    from evidently import Report
    from evidently.presets import DataDriftPreset

    if current.empty:
        raise ValueError("current data has no rows")
    present = [c for c in profile.features if c in current.columns]
    sample = current[present]
    if len(sample) > sample_rows:
        sample = sample.sample(n=sample_rows, random_state=0)
    skipped = {c: "missing from the current data" for c in profile.features if c not in current.columns}
    for name in present:
        why = _unusable(sample[name], profile.column_types[name], "sample")
        if why:
            skipped[name] = why
    skipped = {c: skipped[c] for c in profile.features if c in skipped}  # in feature order
    shown = {c: t for c, t in profile.column_types.items() if c not in skipped}
    if not shown:
        raise ValueError("no feature can be shown in the Evidently report: "
                         + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    if skipped:
        log.warning("Evidently report leaves out %s", "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    definition = _data_definition(shown)
    snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(
        _dataset(sample[list(shown)], definition), _dataset(profile.sample[list(shown)], definition)
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return HtmlReport(path, skipped)


def _unusable(series: pd.Series, kind: str, where: str) -> str | None:
    """Why a column cannot be drawn or tested (None when it can)."""
    if kind in NUMERIC_TYPES and not pd.api.types.is_numeric_dtype(series.dtype):
        return f"should be numeric, got dtype {series.dtype}"
    if clean(series).empty:
        return f"no finite non-null value in the {where}"
    return None


def evidently_drift(
    reference: pd.DataFrame, current: pd.DataFrame, column_types: Mapping[str, str], *, drift_share: float = 0.5
) -> DriftReport:
    """Evidently's ``DataDriftPreset`` on the full frames, as a :class:`DriftReport` (its ``ValueDrift`` per column).

    The share and dataset decision are computed from those per-column decisions. Evidently's own
    ``DriftedColumnsCount`` agrees except when a column holds +/-inf but no null (it then keeps the
    infinities, ``ValueDrift`` drops them): a warning is logged then.
    """
    from evidently import Report
    from evidently.legacy.calculations import stattests
    from evidently.presets import DataDriftPreset

    types = check_types(column_types)
    check_frame(reference, types, "reference")
    check_frame(current, types, "current")
    definition = _data_definition(types)
    features = list(types)
    snapshot = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True).run(
        _dataset(current[features], definition), _dataset(reference[features], definition)
    )
    result = snapshot.dict()
    names = {
        t.display_name: t.name
        for t in (stattests.ks_stat_test, stattests.chi_stat_test, stattests.z_stat_test,
                  stattests.wasserstein_stat_test, stattests.jensenshannon_stat_test)
    }
    status = {t["metric_config"]["metric_id"]: t["status"] for t in result["tests"]}
    found: dict[str, FeatureDrift] = {}
    share = None
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config["type"].endswith(":ValueDrift"):
            name = config["column"]
            found[name] = FeatureDrift(name, types[name], names.get(config["method"], config["method"]),
                                       float(config["threshold"]), float(metric["value"]),
                                       status[metric["id"]] == "FAIL")
    report = _report([found[name] for name in features], drift_share, len(reference), len(current))
    if share is not None and abs(share - report.share_drifted) > 1e-12:
        # Evidently's dataset-level metric keeps +/-inf in a column without nulls; ValueDrift drops them.
        log.warning("Evidently's DriftedColumnsCount share %s differs from its ValueDrift decisions (%s drifted)",
                    share, report.drifted_columns)
    return report


def _data_definition(types: Mapping[str, str]):
    from evidently import DataDefinition

    return DataDefinition(
        numerical_columns=[c for c, t in types.items() if t in NUMERIC_TYPES],
        categorical_columns=[c for c, t in types.items() if t in CATEGORICAL_TYPES],
        text_columns=[],
        datetime_columns=[],
    )


def _dataset(frame: pd.DataFrame, definition):
    from evidently import Dataset

    return Dataset.from_pandas(frame, data_definition=definition)
