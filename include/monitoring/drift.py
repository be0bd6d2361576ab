"""Data drift: Evidently's per-feature decisions, computed fast from a reference profile made at training time.

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

Numeric columns are the project's ``int`` and ``float`` types; ``category``, ``string`` and
``bool`` are categorical (for a two-valued column both kinds get the same tests). A category
never seen in the reference makes the chi-square p-value 0 (an infinite statistic), as in
Evidently.

:func:`build_profile` keeps what those tests need, once, from the training features: per numeric
column its distinct finite values with their counts (the exact empirical distribution) and its
standard deviation computed as Evidently does; per categorical column its value counts; plus a row
sample for the human-facing HTML report. :func:`detect_drift` then sorts each current column once
and merges it with the stored values: no training data is read and nothing is sampled. The HTML
report (:func:`evidently_report`) is Evidently's own, on samples of both sides, so its figures may
differ slightly from the decision; :func:`evidently_drift` runs Evidently on full frames (tests and
benchmark).

A profile is a folder: ``profile.json`` (columns, types, counts, standard deviations),
``numeric.parquet`` (``value``/``count`` of every numeric column, one after the other in the
order of ``profile.json``) and ``sample.parquet``. It is logged under ``reference_profile/`` in the
training run (:func:`log_profile`) and read back with :func:`load_profile`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

PROFILE_ARTIFACT = "reference_profile"
PROFILE_FILE = "profile.json"
NUMERIC_FILE = "numeric.parquet"
SAMPLE_FILE = "sample.parquet"
FORMAT_VERSION = 1

NUMERIC_TYPES = frozenset({"int", "float"})
CATEGORICAL_TYPES = frozenset({"category", "string", "bool"})

# Evidently 0.7.23: the reference size up to which the "small sample" tests are used, the number of
# distinct values up to which a numeric column is treated like a categorical one, and the default
# threshold of each test (its StatTest.default_threshold).
SMALL_REFERENCE_ROWS = 1000
FEW_VALUES = 5
KS, CHISQUARE, Z, WASSERSTEIN, JENSENSHANNON = "ks", "chisquare", "z", "wasserstein", "jensenshannon"
THRESHOLDS: dict[str, float] = {KS: 0.05, CHISQUARE: 0.05, Z: 0.05, WASSERSTEIN: 0.1, JENSENSHANNON: 0.1}
_STD_FLOOR = 0.001  # Evidently's lower bound on the Wasserstein norm


# --- the profile -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumericReference:
    """The exact empirical distribution of a numeric reference column (nulls and infinities dropped)."""

    values: np.ndarray  # sorted distinct values, float64
    counts: np.ndarray  # occurrences of each value, int64
    std: float  # population standard deviation, as Evidently computes it (np.std of the pandas Series)

    @property
    def n(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class CategoricalReference:
    """Value counts of a categorical reference column (nulls dropped)."""

    counts: dict[Any, int]

    @property
    def n(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class ReferenceProfile:
    """What the hourly drift check needs from the training features; see the module docstring."""

    column_types: dict[str, str]  # feature -> project type keyword, in feature order
    columns: dict[str, NumericReference | CategoricalReference]
    sample: pd.DataFrame  # reference rows for the human-facing report
    n_rows: int
    evidently_version: str = ""

    @property
    def features(self) -> list[str]:
        return list(self.column_types)

    def save(self, directory: Path) -> Path:
        """Write the profile's files into ``directory`` (created); the same profile gives the same bytes."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: list[dict[str, Any]] = []
        values, counts = [], []
        for name, kind in self.column_types.items():
            ref = self.columns[name]
            entry: dict[str, Any] = {"name": name, "type": kind, "n": ref.n}
            if isinstance(ref, NumericReference):
                entry.update(n_unique=int(ref.values.size), std=ref.std)
                values.append(ref.values)
                counts.append(ref.counts)
            else:
                keys = _sorted_keys(ref.counts)
                entry.update(values=[_json_value(name, k) for k in keys], counts=[int(ref.counts[k]) for k in keys])
            columns.append(entry)
        meta = {
            "format_version": FORMAT_VERSION,
            "evidently_version": self.evidently_version,
            "n_rows": self.n_rows,
            "columns": columns,
        }
        (directory / PROFILE_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False) + "\n")
        table = pa.table(
            {
                "value": pa.array(np.concatenate(values) if values else np.empty(0), type=pa.float64()),
                "count": pa.array(np.concatenate(counts) if counts else np.empty(0, np.int64), type=pa.int64()),
            }
        )
        pq.write_table(table, directory / NUMERIC_FILE)
        pq.write_table(pa.Table.from_pandas(self.sample, preserve_index=False), directory / SAMPLE_FILE)
        return directory

    @classmethod
    def load(cls, directory: Path) -> ReferenceProfile:
        """Read a profile written by :meth:`save`."""
        import pyarrow.parquet as pq

        directory = Path(directory)
        missing = [f for f in (PROFILE_FILE, NUMERIC_FILE, SAMPLE_FILE) if not (directory / f).is_file()]
        if missing:
            raise FileNotFoundError(f"reference profile {directory} is missing {', '.join(missing)}")
        meta = json.loads((directory / PROFILE_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"reference profile {directory}: format_version {meta.get('format_version')!r} "
                             f"is not {FORMAT_VERSION}")
        table = pq.read_table(directory / NUMERIC_FILE)
        all_values = table.column("value").to_numpy()
        all_counts = table.column("count").to_numpy()
        column_types: dict[str, str] = {}
        columns: dict[str, NumericReference | CategoricalReference] = {}
        offset = 0
        for entry in meta["columns"]:
            name = entry["name"]
            column_types[name] = entry["type"]
            if entry["type"] in NUMERIC_TYPES:
                end = offset + entry["n_unique"]
                columns[name] = NumericReference(all_values[offset:end], all_counts[offset:end], float(entry["std"]))
                offset = end
            else:
                columns[name] = CategoricalReference(dict(zip(entry["values"], entry["counts"], strict=True)))
        if offset != len(all_values):
            raise ValueError(f"reference profile {directory}: {NUMERIC_FILE} holds {len(all_values)} values, "
                             f"{PROFILE_FILE} describes {offset}")
        sample = pq.read_table(directory / SAMPLE_FILE).to_pandas()
        return cls(column_types, columns, sample, int(meta["n_rows"]), meta.get("evidently_version", ""))


def build_profile(
    frame: pd.DataFrame, column_types: Mapping[str, str], *, sample_rows: int = 5000, seed: int = 0
) -> ReferenceProfile:
    """The reference profile of ``frame``'s columns named in ``column_types`` (feature -> type keyword)."""
    types = _check_types(column_types)
    _check_frame(frame, types, "reference")
    columns: dict[str, NumericReference | CategoricalReference] = {}
    for name, kind in types.items():
        column = _clean(frame[name])
        if column.empty:
            raise ValueError(f"column {name!r} has no non-null values in the reference data")
        if kind in NUMERIC_TYPES:
            _check_numeric(column, name, "reference")
            values, counts = np.unique(column.to_numpy(dtype=np.float64), return_counts=True)
            columns[name] = NumericReference(values, counts.astype(np.int64), float(np.std(column)))
        else:
            counts = column.value_counts()
            columns[name] = CategoricalReference({_native(k): int(v) for k, v in counts.items() if v > 0})
    sample = frame[list(types)]
    if len(sample) > sample_rows:
        sample = sample.sample(n=sample_rows, random_state=seed)
    return ReferenceProfile(types, columns, sample.reset_index(drop=True), len(frame), _evidently_version())


# --- the decision ------------------------------------------------------------------------------


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
        current = _clean(series)
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
    n, m = ref.n, current.size

    if n <= SMALL_REFERENCE_ROWS:
        n_values = ref.values.size + _new_values(ref.values, current)
        if n_values <= FEW_VALUES:
            return _count_test(_as_counts(ref.values, ref.counts), _as_counts(*_runs(current)), n)
        from scipy.stats import ks_2samp

        return KS, float(ks_2samp(np.repeat(ref.values, ref.counts), current)[1])

    # Large reference: merge the stored distinct values with the sorted current values once.
    merged = np.concatenate([ref.values, current])
    order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
    points = merged[order]
    steps = np.diff(points)
    n_values = int(np.count_nonzero(steps)) + 1
    if n_values <= FEW_VALUES:
        return _count_test(_as_counts(ref.values, ref.counts), _as_counts(*_runs(current)), n)
    # scipy.stats.wasserstein_distance: the integral of |F_ref - F_cur| between consecutive points,
    # each CDF the count of values <= the point over the sample size.
    ref_weight = np.concatenate([ref.counts, np.zeros(m, dtype=np.int64)])[order[:-1]]
    ref_cdf = np.cumsum(ref_weight) / n
    cur_cdf = np.cumsum(order[:-1] >= ref.values.size) / m
    distance = float(np.dot(np.abs(ref_cdf - cur_cdf), steps))
    return WASSERSTEIN, distance / max(ref.std, _STD_FLOOR)


def _count_test(ref: Mapping[Any, int], cur: Mapping[Any, int], n: int) -> tuple[str, float]:
    """Chi-square, Z or Jensen-Shannon on value counts, as Evidently picks and computes them."""
    keys = _sorted_keys({**dict.fromkeys(ref, 0), **dict.fromkeys(cur, 0)})
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
    if _clean(series).empty:
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

    types = _check_types(column_types)
    _check_frame(reference, types, "reference")
    _check_frame(current, types, "current")
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


def evidently_decisions(
    reference: pd.DataFrame, current: pd.DataFrame, column_types: Mapping[str, str], *, drift_share: float = 0.5
) -> dict[str, bool]:
    """Evidently's per-feature drift decisions on the full frames."""
    report = evidently_drift(reference, current, column_types, drift_share=drift_share)
    return {name: f.drifted for name, f in report.features.items()}


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


# --- MLflow ----------------------------------------------------------------------------------------


def log_profile(profile: ReferenceProfile) -> None:
    """Log the profile's files under ``reference_profile/`` of the active MLflow run."""
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_profile needs an active MLflow run")
    with tempfile.TemporaryDirectory(prefix="reference-profile-") as tmp:
        mlflow.log_artifacts(str(profile.save(Path(tmp))), artifact_path=PROFILE_ARTIFACT)


def load_profile(client: MlflowClient, run_id: str) -> ReferenceProfile:
    """The profile logged with run ``run_id`` (the run of a registered version's training)."""
    names = {Path(a.path).name for a in client.list_artifacts(run_id, PROFILE_ARTIFACT)}
    if PROFILE_FILE not in names:
        raise FileNotFoundError(f"run {run_id} has no {PROFILE_ARTIFACT}/{PROFILE_FILE} artifact")
    with tempfile.TemporaryDirectory(prefix="reference-profile-") as tmp:
        return ReferenceProfile.load(Path(client.download_artifacts(run_id, PROFILE_ARTIFACT, tmp)))


# --- helpers ---------------------------------------------------------------------------------------


def _check_types(column_types: Mapping[str, str]) -> dict[str, str]:
    if not column_types:
        raise ValueError("column_types is empty: no features to check for drift")
    allowed = NUMERIC_TYPES | CATEGORICAL_TYPES
    for name, kind in column_types.items():
        if kind not in allowed:
            raise ValueError(f"column {name!r}: type {kind!r} cannot be checked for drift (allowed: {sorted(allowed)})")
    return dict(column_types)


def _check_frame(frame: pd.DataFrame, types: Mapping[str, str], side: str) -> None:
    missing = [c for c in types if c not in frame.columns]
    if missing:
        raise ValueError(f"{side} data is missing column(s): {', '.join(missing)}")
    if frame.empty:
        raise ValueError(f"{side} data has no rows")


def _clean(series: pd.Series) -> pd.Series:
    """Evidently's cleaning: +/-inf become null, nulls are dropped."""
    return series.replace([-np.inf, np.inf], np.nan).dropna()


def _check_numeric(series: pd.Series, name: str, side: str) -> None:
    if not pd.api.types.is_numeric_dtype(series.dtype):
        raise ValueError(f"column {name!r} in the {side} data should be numeric, got dtype {series.dtype}")


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _json_value(column: str, value: Any) -> Any:
    if isinstance(value, bool | int | str) or (isinstance(value, float) and np.isfinite(value)):
        return value
    raise ValueError(f"column {column!r}: category value {value!r} ({type(value).__name__}) cannot be stored "
                     "in a profile (str, int, float or bool only)")


def _sorted_keys(keys) -> list:
    try:
        return sorted(keys)
    except TypeError:  # mixed types
        return sorted(keys, key=lambda k: (type(k).__name__, str(k)))


def _json_feature(feature: FeatureDrift) -> dict[str, Any]:
    out = asdict(feature)
    if not np.isfinite(out["score"]):
        out["score"] = None
    return out


def _evidently_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evidently")
    except PackageNotFoundError:
        return ""
