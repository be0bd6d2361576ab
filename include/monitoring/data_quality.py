"""Data-quality findings: what is wrong with an hour's data, found instead of failing or losing the hour.

Each issue is named ``data_quality.<kind>`` (``data_quality.<kind>.<column>`` for a column), with
the rows, values or files concerned; the kinds and when each warns are in
:mod:`include.monitoring.assessment`'s docstring. This module finds them:
:func:`read_quality` from what the inference log read could not read as declared,
:func:`frame_quality` from the hour's values, :func:`no_rows` for an empty hour,
:func:`drift_quality` for features the drift tests skipped; :func:`include.monitoring.delayed_labels.join_labels`
reports the delayed-label files and :func:`include.monitoring.windows.gap_issue` the hours no run assessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from include.config import ModelConfig
from include.monitoring import log_schema
from include.monitoring.findings import Finding
from include.monitoring.inference_log import LogRead
from include.monitoring.kpis import valid_predictions
from include.monitoring.log_schema import PREDICTION, ReadIssue
from include.monitoring.reference_profile import NUMERIC_TYPES, NumericReference, ReferenceProfile

DATA_QUALITY = "data_quality"
NO_ROWS = "no_rows"
UNREADABLE_FILE = "unreadable_file"
MISSING_FEATURE = "missing_feature"
MISSING_COLUMN = "missing_column"
WRONG_TYPE = "wrong_type"
ALL_NULL = "all_null"
NON_FINITE = "non_finite"
CONSTANT = "constant"
INVALID_PREDICTIONS = "invalid_predictions"
NO_REFERENCE_PROFILE = "no_reference_profile"
OUTCOMES_UNREADABLE = "outcomes_unreadable"  # a delayed-label file left out (the name is kept: metric history)
UNCHECKED_FEATURE = "unchecked_feature"
UNASSESSED_HOURS = "unassessed_hours"
DATA_QUALITY_KINDS = (NO_ROWS, UNREADABLE_FILE, MISSING_FEATURE, MISSING_COLUMN, WRONG_TYPE, ALL_NULL, NON_FINITE,
                      CONSTANT, INVALID_PREDICTIONS, NO_REFERENCE_PROFILE, OUTCOMES_UNREADABLE, UNCHECKED_FEATURE,
                      UNASSESSED_HOURS)
GAP = f"{DATA_QUALITY}.{UNASSESSED_HOURS}"  # the finding about other hours: no reason to think this one unhealthy
CONSTANT_CHANCE = 1e-3  # a single-valued feature is a finding when the reference makes it this unlikely
MAX_NAMED_FILES = 3  # files named in a finding's detail; the rest are counted


@dataclass(frozen=True)
class DataQualityIssue:
    """Something wrong with the hour's data (the kinds: :mod:`include.monitoring.assessment`'s docstring).

    ``count``: the rows, values or files concerned (1 for ``no_rows`` and ``no_reference_profile``).
    ``value`` is compared with ``threshold``: a share of the hour's rows for the per-row kinds, a
    file count for files, the expected rows per hour for ``no_rows``. It becomes a :class:`Finding`
    (counts toward the tier) when ``value >= threshold``. ``files``: the files concerned.
    """

    kind: str
    column: str | None
    count: int
    value: float
    threshold: float
    detail: str
    files: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``data_quality.<kind>`` or ``data_quality.<kind>.<column>``: the finding's and the metric's name."""
        return f"{DATA_QUALITY}.{self.kind}" + (f".{self.column}" if self.column else "")

    @property
    def fires(self) -> bool:
        return self.value >= self.threshold

    def finding(self) -> Finding:
        return Finding(self.name, float(self.value), float(self.threshold), self.detail)


def read_quality(config: ModelConfig, read: LogRead) -> list[DataQualityIssue]:
    """What the log read could not read as declared, as issues (per kind and column, files named).

    Problems with ``prediction`` are left to :func:`frame_quality` (they show as invalid predictions).
    """
    warn = config.monitoring.data_quality_warning
    features = set(config.dataset.feature_names)
    total = max(len(read.frame), 1)
    out: list[DataQualityIssue] = []
    unreadable = [i for i in read.issues if i.kind == log_schema.UNREADABLE_FILE]
    if unreadable:
        rows = sum(i.rows for i in unreadable)
        out.append(DataQualityIssue(
            UNREADABLE_FILE, None, len(unreadable), float(len(unreadable)), 1.0,
            f"{len(unreadable)} inference log file(s) could not be read and were left out"
            + (f" ({rows} row(s) by their footers)" if rows else "") + ": " + files_text(unreadable),
            tuple(i.file for i in unreadable)))
    groups: dict[tuple[str, str], list[ReadIssue]] = {}
    for issue in read.issues:
        if issue.kind != log_schema.UNREADABLE_FILE and issue.column != PREDICTION:
            groups.setdefault((issue.kind, issue.column), []).append(issue)
    for (kind, column), issues in groups.items():
        count = sum(i.rows for i in issues)
        if kind == log_schema.MISSING_COLUMN:
            what = "feature" if column in features else "column"
            kind = MISSING_FEATURE if column in features else MISSING_COLUMN
            everywhere = count >= len(read.frame)
            detail = (f"{what} {column!r} is missing from the inference log: none of the hour's {count} row(s) has it"
                      if everywhere else
                      f"{what} {column!r} is missing from {len(issues)} log file(s) ({count} of {len(read.frame)} "
                      f"rows, null there)") + ": " + files_text(issues, reasons=False)
        else:
            kind = WRONG_TYPE
            detail = f"{count} value(s) of {column!r} in {len(issues)} log file(s) are not of its declared type " \
                     f"and were read as null: " + files_text(issues)
        out.append(DataQualityIssue(kind, column, count, min(count / total, 1.0), warn, detail,
                                    tuple(i.file for i in issues)))
    return out


def frame_quality(
    config: ModelConfig,
    frame: pd.DataFrame,
    profile: ReferenceProfile | None = None,
    read_issues: Sequence[ReadIssue] = (),
) -> list[DataQualityIssue]:
    """The values of the hour: features with no value, +/-inf, a single unlikely value, and invalid predictions.

    ``frame``: the hour read with the declared types (:func:`include.monitoring.inference_log.read_checked`);
    ``profile``: the served version's reference (its features are the ones checked, and the
    ``constant`` rule needs it; without one the config's features are checked, ``constant`` not);
    ``read_issues``: what the read reported, so a column already reported missing or wrongly typed
    in every row is not reported again as all-null.
    """
    mon = config.monitoring
    warn = mon.data_quality_warning
    rows = len(frame)
    if not rows:
        return []
    types = profile.column_types if profile is not None else {c.name: c.type for c in config.dataset.features}
    explained: dict[str, int] = {}
    for issue in read_issues:
        if issue.kind in (log_schema.MISSING_COLUMN, log_schema.WRONG_TYPE) and issue.column:
            explained[issue.column] = explained.get(issue.column, 0) + issue.rows
    out: list[DataQualityIssue] = []
    for name, kind in types.items():
        if name not in frame.columns:
            out.append(DataQualityIssue(MISSING_FEATURE, name, rows, 1.0, warn,
                                        f"feature {name!r} of the reference profile is not a configured feature: "
                                        "not read from the log, drift not checked"))
            continue
        series = frame[name]
        usable = series.notna()
        non_finite = 0
        if kind in NUMERIC_TYPES and pd.api.types.is_numeric_dtype(series.dtype):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            non_finite = int(np.isinf(values).sum())
            usable = pd.Series(np.isfinite(values), index=series.index)
        if non_finite:
            out.append(DataQualityIssue(NON_FINITE, name, non_finite, non_finite / rows, warn,
                                        f"{non_finite} of {rows} value(s) of {name!r} are +/-inf: left out of drift"))
        n_usable = int(usable.sum())
        if n_usable == 0:
            if explained.get(name, 0) + non_finite < rows:
                out.append(DataQualityIssue(ALL_NULL, name, rows, 1.0, warn,
                                            f"feature {name!r} has no value in any of the hour's {rows} row(s): "
                                            "drift not checked"))
        elif profile is not None and n_usable >= mon.min_rows:
            issue = _constant(name, series[usable], profile.columns[name], warn)
            if issue:
                out.append(issue)
    invalid = ~valid_predictions(frame[PREDICTION]).to_numpy()
    if invalid.any():
        scores = pd.to_numeric(frame[PREDICTION], errors="coerce").to_numpy(dtype=np.float64)
        missing = int(np.isnan(scores).sum())
        infinite = int(np.isinf(scores).sum())
        outside = int(invalid.sum()) - missing - infinite
        files = [i for i in read_issues if i.column == PREDICTION]
        parts = [f"{n} {what}" for n, what in ((missing, "missing or NaN"), (infinite, "infinite"),
                                               (outside, "outside [0, 1]")) if n]
        out.append(DataQualityIssue(
            INVALID_PREDICTIONS, None, int(invalid.sum()), float(invalid.mean()), warn,
            f"{int(invalid.sum())} of {rows} prediction(s) are not a probability ({', '.join(parts)}): "
            "left out of the KPIs" + (": " + files_text(files) if files else ""),
            tuple(i.file for i in files)))
    return out


def _constant(name: str, values: pd.Series, ref, warn: float) -> DataQualityIssue | None:
    """A ``constant`` issue when every value is one value the reference makes that unlikely."""
    distinct = pd.unique(values)
    if len(distinct) != 1:
        return None
    value = distinct[0].item() if isinstance(distinct[0], np.generic) else distinct[0]
    if isinstance(ref, NumericReference):
        if ref.values.size < 2:
            return None
        at = np.searchsorted(ref.values, float(value))
        hits = int(ref.counts[at]) if at < ref.values.size and ref.values[at] == float(value) else 0
    else:
        if len(ref.counts) < 2:
            return None
        hits = int(ref.counts.get(value, 0))
    share = hits / ref.n if ref.n else 0.0
    n = len(values)
    if share ** n >= CONSTANT_CHANCE:
        return None
    return DataQualityIssue(CONSTANT, name, n, 1.0, warn,
                            f"all {n} value(s) of {name!r} are {value!r}, which is {share:.1%} of the reference: "
                            "a default filled in upstream?")


def no_rows(config: ModelConfig, start: pd.Timestamp, end: pd.Timestamp, expected: float) -> DataQualityIssue:
    """The ``no_rows`` issue of an empty hour; ``expected``: the median rows of the hours before (0 if none)."""
    mon = config.monitoring
    known = f"the hours assessed in the {mon.traffic_lookback_hours}h before had a median of {expected:g} per hour"
    verdict = "traffic was expected" if expected >= mon.min_rows else f"below min_rows={mon.min_rows}: none expected"
    return DataQualityIssue(NO_ROWS, None, 1, float(expected), float(mon.min_rows),
                            f"no prediction in the inference log between {start} and {end}; {known} ({verdict})")


def drift_quality(report, issues: Sequence[DataQualityIssue], warn: float) -> list[DataQualityIssue]:
    """``unchecked_feature`` for each feature the drift check skipped that no other issue explains.

    ``report``: a :class:`include.monitoring.drift.DriftReport` (its ``skipped``).
    """
    covered = {i.column for i in issues if i.column}
    return [DataQualityIssue(UNCHECKED_FEATURE, name, 1, 1.0, warn, f"drift of {name!r} not checked: {why}")
            for name, why in report.skipped.items() if name not in covered]


def no_reference_profile(why: str) -> DataQualityIssue:
    """The ``no_reference_profile`` issue (always a finding): drift could not be checked, ``why``."""
    return DataQualityIssue(NO_REFERENCE_PROFILE, None, 1, 1.0, 1.0, f"{why}: drift not checked")


def files_text(issues: Sequence[ReadIssue], *, reasons: bool = True) -> str:
    """The first :data:`MAX_NAMED_FILES` files (with what was wrong, unless not ``reasons``) and how many more."""
    shown = [str(i) if reasons else i.file for i in issues[:MAX_NAMED_FILES]]
    more = len(issues) - len(shown)
    return "; ".join(shown) + (f"; and {more} more file(s)" if more > 0 else "")
