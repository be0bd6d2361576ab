"""Hourly monitoring: is the live model still healthy, and who must hear about it?

One hour of one model is assessed at a time (which hour: :func:`run_window`):

* **data drift** of the hour's inputs against the reference profile stored with the serving
  version at training time (:mod:`include.monitoring.drift`, Evidently's tests and thresholds);
* **business KPIs** of the hour's predictions joined to the delayed outcomes that have arrived
  (:mod:`include.monitoring.kpis`), against the version's baseline: the mean of its first healthy days after
  the cold start, frozen on the version once those days have passed, and until then the KPIs it
  scored on its training holdout.

Tiers (thresholds in the model's ``monitoring`` config):

* ``warning``: the share of drifted features reaches ``drift.warning``, or a KPI fell by at least
  its ``max_drop``, or a data-quality finding (below);
* ``critical``: the drifted share reaches ``drift.critical`` **and** a KPI fell by its ``max_drop``,
  or invalid predictions reach ``invalid_predictions_critical``: the model is rolled back and retrained;
* during the first ``cold_start_days`` after a deployment no drift condition is raised (so nothing
  is critical from drift either); KPI drops and data-quality findings still warn.

Data quality: the hour is always assessed. What would otherwise stop it or silently lose it is a
finding named ``data_quality.<kind>`` (``data_quality.<kind>.<column>`` for a column) with its
count, and the rest of the assessment (drift on the other features, KPIs) goes on:

* ``no_rows``: no prediction in the hour. Warns when traffic was expected: the median ``rows`` of
  the hours assessed in the ``traffic_lookback_hours`` before reached ``min_rows`` (value: that
  median, threshold: ``min_rows``); otherwise recorded only.
* ``unreadable_file``: a log file that is not Parquet, is corrupt or has no ``ts``; left out. Always
  warns (value: files).
* ``missing_feature``: a feature absent from log files (null in their rows); ``missing_column``: the
  same for ``request_id`` / ``model_version`` / ``model_name``. Warn at ``data_quality_warning``
  (a share of the hour's rows).
* ``wrong_type``: values not of the declared type (text where a number is declared, from another
  writer), read as null; also for the outcome files' columns. Warns at ``data_quality_warning``.
* ``all_null``: a feature without a single value in the hour (not explained by the kinds above):
  drift not checked. Always warns.
* ``non_finite``: +/-inf in a numeric feature, left out of drift. Warns at ``data_quality_warning``.
* ``constant``: one value in every row where the reference makes that less likely than
  :data:`CONSTANT_CHANCE` (``p(value) ** rows``): a default filled in upstream. Always warns.
* ``invalid_predictions``: a prediction missing, NaN, infinite or outside [0, 1]; such a row counts
  in no KPI. Warns at ``data_quality_warning``.
* ``no_reference_profile``: the served version is not registered or has no reference profile:
  drift not checked. Always warns.
* ``outcomes_unreadable``: an outcome file that cannot be read or lacks a column; left out. Always
  warns (value: files).
* ``unchecked_feature``: a feature the drift check could not test for another reason. Always warns.
* ``unassessed_hours``: hours before this one that no monitoring run assessed (see below). Always
  warns (value: hours), whatever the hour's own rows.

What escalates: invalid predictions in at least ``invalid_predictions_critical`` of the hour's rows
make it ``critical`` (the served version is broken: it is rolled back), cold start or not. Other
data-quality findings are warnings: the fault is upstream of the model, a rollback cannot fix it.
A feature that could not be checked counts as not drifted in the drifted share (a lower bound).
Below ``min_rows`` (but with rows) nothing is decided from the values, so only ``no_rows`` and
``unreadable_file`` count then; every finding is recorded all the same. Data-quality findings go
through the same cooldown; one re-fires within it when its value grew by half (of the larger of
its threshold and its last value). An hour with a data-quality finding is not healthy (no baseline
is made of it).

Cooldown: a condition that fired is not repeated within ``cooldown_hours`` of the hour it fired
for, unless it got worse (a higher tier, or a value at least half its threshold beyond the one that
fired) or another version serves now (a fresh deployment that goes bad is rolled back too). What fired is kept as tags on the model's monitoring run, so re-running an hour sends
nothing twice.

Which hour a run assesses (:func:`run_window`): a scheduled or back-fill run its data interval; a
manual run the hour its ``hour`` param names, else its data interval when it was given a logical
date, else the last hour that ended before it was triggered. A manual run may assess an hour a
scheduled run already assessed (the cooldown keeps it from alerting twice).

Unassessed hours (:func:`find_gap`): every run but a back-fill looks at the hours between the last
hour assessed before its own and its own (at most :data:`GAP_LOOKBACK_HOURS` of them). Hours no
run assessed (the scheduler was down or paused, a run failed for good, or a manual run took the
logical date a scheduled run needed) are the ``unassessed_hours`` finding and metric. The record:
the ``rows`` metric of the monitoring run, which :func:`log_hour` writes for every assessed window
once its assessment is complete (with ``window_hours`` for windows longer than an hour), at the step
of the window's first hour. A gap is reported by the run after it, so one reported for another hour
is another gap: the cooldown does not hide it; a re-run of the same hour does not repeat it.

Everything measured per hour goes to that monitoring run as MLflow metrics (step = hours since the
epoch, timestamp = the hour), so their history plots in the MLflow UI: among them
``data_quality.<kind>`` (rows, values or files concerned, 0 when none) for every kind each hour and
``data_quality.<kind>.<column>`` where a column had some.

:func:`assess_window` runs it all for one hour: read the log (:func:`include.monitoring.inference_log.read_checked`),
check the data, join the outcomes, drift, KPIs, tier, metrics and the Evidently HTML report.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import ModelConfig
from include.governance import audit
from include.monitoring import drift, inference_log
from include.monitoring.kpis import KPI_PREFIX, PREDICTION, compute_kpis, drops, valid_predictions

log = logging.getLogger(__name__)

KIND_TAG = "modelops.kind"
MODEL_TAG = "modelops.model"
ALERT_STATE_PREFIX = "alert_state."
BASELINE_TAG = "monitoring.kpi_baseline"
LEVELS = ("ok", "warning", "critical")
DRIFT = "data_drift"
CRITICAL = "critical"
WORSE_FRACTION = 0.5  # re-fire within the cooldown when the value moved this share of its threshold further

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
OUTCOMES_UNREADABLE = "outcomes_unreadable"
UNCHECKED_FEATURE = "unchecked_feature"
UNASSESSED_HOURS = "unassessed_hours"
DATA_QUALITY_KINDS = (NO_ROWS, UNREADABLE_FILE, MISSING_FEATURE, MISSING_COLUMN, WRONG_TYPE, ALL_NULL, NON_FINITE,
                      CONSTANT, INVALID_PREDICTIONS, NO_REFERENCE_PROFILE, OUTCOMES_UNREADABLE, UNCHECKED_FEATURE,
                      UNASSESSED_HOURS)
HOUR_KINDS = frozenset({NO_ROWS, UNREADABLE_FILE, UNASSESSED_HOURS})  # count toward the tier even below min_rows
GAP = f"{DATA_QUALITY}.{UNASSESSED_HOURS}"  # the finding about other hours: no reason to think this one unhealthy
ONE_HOUR = pd.Timedelta(hours=1)
TIMETABLE_RUNS = frozenset({"scheduled", "backfill"})  # runs the schedule made: keyed by their data interval
GAP_LOOKBACK_HOURS = 7 * 24  # the most unassessed hours one run reports (a long outage: the latest ones)
WINDOW_METRIC = "window_hours"
MAX_NAMED_RANGES = 5  # spans of unassessed hours named in the finding; the rest are counted
CONSTANT_CHANCE = 1e-3  # a single-valued feature is a finding when the reference makes it this unlikely
MAX_NAMED_FILES = 3  # files named in a finding's detail; the rest are counted


@dataclass(frozen=True)
class Finding:
    """One condition that crossed its threshold (the shape of :class:`include.monitoring.alerts.Condition`)."""

    name: str  # "data_drift", "kpi.<name>" or "critical"
    value: float
    threshold: float
    detail: str = ""


@dataclass(frozen=True)
class DataQualityIssue:
    """Something wrong with the hour's data (see the module docstring's table of kinds).

    ``count``: the rows, values or files concerned (1 for ``no_rows`` and ``no_reference_profile``).
    ``value`` is compared with ``threshold``: a share of the hour's rows for the per-row kinds, a
    file count for files, the expected rows per hour for ``no_rows``. It becomes a :class:`Finding`
    (counts toward the tier) when ``value >= threshold``.
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


@dataclass
class HourAssessment:
    model: str
    version: str | None
    hour: str  # ISO start of the hour
    rows: int
    level: str  # "skipped" (too few rows, nothing that counts), "ok", "warning", "critical"
    reason: str
    cold_start: bool = False
    healthy: bool = True  # no drift, KPI or data-quality condition, cold start or not: what a baseline may use
    drift: dict | None = None
    kpis: dict[str, dict] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    baseline_source: str = "none"
    drops: dict[str, float] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    data_quality: list[DataQualityIssue] = field(default_factory=list)  # all, whether they count or not
    notes: list[str] = field(default_factory=list)  # for people: e.g. what the Evidently report leaves out

    def as_dict(self) -> dict:
        """JSON-ready (an XCom): findings and data-quality issues as dicts."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> HourAssessment:
        """The inverse of :meth:`as_dict`."""
        return cls(**{
            **data,
            "findings": [Finding(**f) for f in data.get("findings", [])],
            "data_quality": [DataQualityIssue(**{**i, "files": tuple(i.get("files", ()))})
                             for i in data.get("data_quality", [])],
            "notes": list(data.get("notes", [])),
        })


def hour_step(hour: pd.Timestamp) -> int:
    """The MLflow metric step of an hour: hours since the Unix epoch."""
    return int(pd.Timestamp(hour).timestamp() // 3600)


def assess(
    config: ModelConfig,
    *,
    hour: pd.Timestamp,
    frame: pd.DataFrame,
    version: str | None,
    drift_report,
    deployed_at: pd.Timestamp | None,
    baseline: Mapping[str, float],
    baseline_source: str,
    data_quality: Sequence[DataQualityIssue] = (),
    notes: Sequence[str] = (),
) -> HourAssessment:
    """Decide the tier of one hour from its predictions (joined to outcomes), its drift report and its
    data-quality issues (the rules: the module docstring).

    ``drift_report``: a :class:`include.monitoring.drift.DriftReport`, or None when drift could not be checked
    (a ``no_reference_profile`` issue says why). ``frame``: one row per prediction with
    ``prediction`` and the columns the KPIs need; it may be empty.
    """
    mon = config.monitoring
    rows = len(frame)
    issues = list(data_quality)
    if rows < mon.min_rows:
        counted = [i.finding() for i in issues if i.fires and i.kind in HOUR_KINDS]
        reason = "; ".join(f"{f.name}: {f.detail}" for f in counted) or (
            f"{rows} predictions in the hour, fewer than monitoring.min_rows={mon.min_rows}"
            + "".join(f"; {i.name} recorded, not alerted: {i.detail}" for i in issues)
        )
        return HourAssessment(config.name, version, hour.isoformat(), rows, "warning" if counted else "skipped",
                              reason, healthy=all(f.name == GAP for f in counted), findings=counted,
                              data_quality=issues, notes=list(notes))
    kpis = compute_kpis(config, mon.kpis, frame)
    fell = drops(mon.kpis, kpis, baseline)
    # An hour is in the cold start when it ends within it (a deployment mid-hour is judged on that hour).
    cold = deployed_at is not None and hour + timedelta(hours=1) <= deployed_at + timedelta(days=mon.cold_start_days)

    if drift_report is not None:
        share = float(drift_report.share_drifted)
        drifted = sorted(f.column for f in drift_report.features.values() if f.drifted)
        skipped = sorted(getattr(drift_report, "skipped", {}) or {})
        detail = (f"{len(drifted)} of {len(drift_report.features) + len(skipped)} features drifted"
                  + (f": {', '.join(drifted)}" if drifted else "")
                  + (f" ({', '.join(skipped)} not checked)" if skipped else ""))
    else:
        share, detail = 0.0, "drift not checked (no reference profile)"
    drift_finding = Finding(DRIFT, share, mon.drift.warning, detail)
    kpi_findings = [
        Finding(f"{KPI_PREFIX}{k.name}", fell[k.name], k.max_drop,
                f"{k.name} {kpis[k.name].value:.4f} vs baseline {baseline[k.name]:.4f} ({baseline_source})")
        for k in mon.kpis if fell.get(k.name, float("-inf")) >= k.max_drop
    ]
    quality_findings = [i.finding() for i in issues if i.fires]
    drift_warns = share >= mon.drift.warning
    findings = ([drift_finding] if drift_warns and not cold else []) + kpi_findings + quality_findings
    drift_critical = not cold and share >= mon.drift.critical and bool(kpi_findings)
    invalid = next((i for i in issues if i.kind == INVALID_PREDICTIONS), None)
    broken = (invalid is not None and mon.invalid_predictions_critical is not None
              and invalid.value >= mon.invalid_predictions_critical)
    if drift_critical or broken:
        parts = []
        if drift_critical:
            parts.append(f"drift {share:.2f} >= {mon.drift.critical} and "
                         + ", ".join(f.name for f in kpi_findings) + " beyond max_drop")
        if broken:
            parts.append(f"{invalid.value:.0%} of the predictions are invalid, >= invalid_predictions_critical="
                         f"{mon.invalid_predictions_critical}: the served version is broken")
        value, threshold = ((share, mon.drift.critical) if drift_critical
                            else (invalid.value, mon.invalid_predictions_critical))
        findings.insert(0, Finding(CRITICAL, value, threshold, "; ".join(parts)))
    level = "critical" if drift_critical or broken else "warning" if findings else "ok"
    reason = "; ".join(f"{f.name}: {f.detail}" for f in findings) or (
        f"healthy: {drift_finding.detail}" + (" (cold start: drift not alerted)" if cold and drift_warns else "")
    )
    return HourAssessment(
        config.name, version, hour.isoformat(), rows, level, reason, cold_start=cold,
        healthy=not drift_warns and not kpi_findings and all(f.name == GAP for f in quality_findings),
        drift=drift_report.as_dict() if drift_report is not None else None,
        kpis={k: v.as_dict() for k, v in kpis.items()}, baseline=dict(baseline), baseline_source=baseline_source,
        drops=fell, findings=findings, data_quality=issues, notes=list(notes),
    )


# --- data quality ----------------------------------------------------------------------------


def read_quality(config: ModelConfig, read: inference_log.LogRead) -> list[DataQualityIssue]:
    """What the log read could not read as declared, as issues (per kind and column, files named).

    Problems with ``prediction`` are left to :func:`frame_quality` (they show as invalid predictions).
    """
    warn = config.monitoring.data_quality_warning
    features = set(config.dataset.feature_names)
    total = max(len(read.frame), 1)
    out: list[DataQualityIssue] = []
    unreadable = [i for i in read.issues if i.kind == inference_log.UNREADABLE_FILE]
    if unreadable:
        rows = sum(i.rows for i in unreadable)
        out.append(DataQualityIssue(
            UNREADABLE_FILE, None, len(unreadable), float(len(unreadable)), 1.0,
            f"{len(unreadable)} inference log file(s) could not be read and were left out"
            + (f" ({rows} row(s) by their footers)" if rows else "") + ": " + _files_text(unreadable),
            tuple(i.file for i in unreadable)))
    groups: dict[tuple[str, str], list[inference_log.ReadIssue]] = {}
    for issue in read.issues:
        if issue.kind != inference_log.UNREADABLE_FILE and issue.column != PREDICTION:
            groups.setdefault((issue.kind, issue.column), []).append(issue)
    for (kind, column), issues in groups.items():
        count = sum(i.rows for i in issues)
        if kind == inference_log.MISSING_COLUMN:
            what = "feature" if column in features else "column"
            kind = MISSING_FEATURE if column in features else MISSING_COLUMN
            everywhere = count >= len(read.frame)
            detail = (f"{what} {column!r} is missing from the inference log: none of the hour's {count} row(s) has it"
                      if everywhere else
                      f"{what} {column!r} is missing from {len(issues)} log file(s) ({count} of {len(read.frame)} "
                      f"rows, null there)") + ": " + _files_text(issues, reasons=False)
        else:
            kind = WRONG_TYPE
            detail = f"{count} value(s) of {column!r} in {len(issues)} log file(s) are not of its declared type " \
                     f"and were read as null: " + _files_text(issues)
        out.append(DataQualityIssue(kind, column, count, min(count / total, 1.0), warn, detail,
                                    tuple(i.file for i in issues)))
    return out


def frame_quality(
    config: ModelConfig,
    frame: pd.DataFrame,
    profile: drift.ReferenceProfile | None = None,
    read_issues: Sequence[inference_log.ReadIssue] = (),
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
        if issue.kind in (inference_log.MISSING_COLUMN, inference_log.WRONG_TYPE) and issue.column:
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
        if kind in drift.NUMERIC_TYPES and pd.api.types.is_numeric_dtype(series.dtype):
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
            "left out of the KPIs" + (": " + _files_text(files) if files else ""),
            tuple(i.file for i in files)))
    return out


def _constant(name: str, values: pd.Series, ref, warn: float) -> DataQualityIssue | None:
    """A ``constant`` issue when every value is one value the reference makes that unlikely."""
    distinct = pd.unique(values)
    if len(distinct) != 1:
        return None
    value = distinct[0].item() if isinstance(distinct[0], np.generic) else distinct[0]
    if isinstance(ref, drift.NumericReference):
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


def expected_rows(client: MlflowClient, run_id: str, hour: pd.Timestamp, lookback_hours: int) -> float:
    """The median ``rows`` metric of the hours assessed in the ``lookback_hours`` before ``hour`` (0 when none)."""
    step = hour_step(hour)
    points = [v for s, v in _history(client, run_id, "rows").items() if step - lookback_hours <= s < step]
    return float(np.median(points)) if points else 0.0


def drift_quality(report, issues: Sequence[DataQualityIssue], warn: float) -> list[DataQualityIssue]:
    """``unchecked_feature`` for each feature the drift check skipped that no other issue explains."""
    covered = {i.column for i in issues if i.column}
    return [DataQualityIssue(UNCHECKED_FEATURE, name, 1, 1.0, warn, f"drift of {name!r} not checked: {why}")
            for name, why in report.skipped.items() if name not in covered]


def reference_profile(
    client: MlflowClient, config: ModelConfig, version: str
) -> tuple[drift.ReferenceProfile | None, DataQualityIssue | None]:
    """The served version's reference profile, or None and the ``no_reference_profile`` issue saying why."""
    why = None
    try:
        run_id = client.get_model_version(config.name, version).run_id
    except MlflowException as exc:
        run_id, why = None, f"version {version!r} (served, per the inference log) is not registered ({exc.message})"
    if why is None and not run_id:
        why = f"version {version} has no training run"
    if why is None:
        try:
            return drift.load_profile(client, run_id), None
        except (FileNotFoundError, MlflowException, OSError, ValueError, KeyError) as exc:
            why = f"version {version}'s training run {run_id} has no readable reference profile ({exc})"
    return None, DataQualityIssue(NO_REFERENCE_PROFILE, None, 1, 1.0, 1.0, f"{why}: drift not checked")


def join_outcomes(
    config: ModelConfig, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, *,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, list[DataQualityIssue]]:
    """The hour's predictions with the target and outcome columns of the outcomes that have arrived.

    Reads ``monitoring.outcomes_uri`` from the hour's day to ``outcome_delay_days`` after it (or
    ``now``). A file that cannot be read or lacks a column is left out (``outcomes_unreadable``);
    values of the target / outcome that are not numbers count as ``wrong_type`` and are null. No
    ``outcomes_uri``: the columns are NaN (outcome KPIs have no value).
    """
    from include.config import resolve_uri
    from include.monitoring import delayed_labels

    mon = config.monitoring
    columns = [config.dataset.target.name, *([config.dataset.outcome.name] if config.dataset.outcome else [])]
    if mon.outcomes_uri is None:
        return frame.assign(**{c: np.nan for c in columns}), []
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    until = min(now, end + pd.Timedelta(days=mon.outcome_delay_days))
    skipped: list[tuple[Path, str]] = []
    arrived = delayed_labels.read_outcomes(resolve_uri(mon.outcomes_uri), start, max(until, start), columns=columns,
                                     skipped=skipped)
    issues = []
    if skipped:
        issues.append(DataQualityIssue(
            OUTCOMES_UNREADABLE, None, len(skipped), float(len(skipped)), 1.0,
            f"{len(skipped)} outcome file(s) were left out: "
            + _files_text([inference_log.ReadIssue("", str(f), None, 0, why) for f, why in skipped]),
            tuple(str(f) for f, _ in skipped)))
    arrived = arrived.assign(**{delayed_labels.REQUEST_ID: arrived[delayed_labels.REQUEST_ID].astype(str)})
    for column in columns:
        raw = arrived[column]
        if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_numeric_dtype(raw.dtype):
            numbers = raw.astype("float64")
        else:
            numbers = pd.to_numeric(raw.astype(object), errors="coerce")
        bad = int((raw.notna() & numbers.isna()).sum())
        if bad:
            issues.append(DataQualityIssue(
                WRONG_TYPE, column, bad, bad / max(len(arrived), 1), mon.data_quality_warning,
                f"{bad} of {len(arrived)} arrived outcome value(s) of {column!r} are not numbers and were read as "
                f"null (e.g. {', '.join(map(repr, raw[raw.notna() & numbers.isna()].unique()[:3]))})"))
        arrived[column] = numbers.astype("float64")
    joined = frame.merge(arrived[[delayed_labels.REQUEST_ID, *columns]], on=delayed_labels.REQUEST_ID, how="left")
    log.info("%d of %d predictions have their outcome", int(joined[columns[0]].notna().sum()), len(joined))
    return joined, issues


def _files_text(issues: Sequence[inference_log.ReadIssue], *, reasons: bool = True) -> str:
    """The first files (with what was wrong) and how many more."""
    shown = [str(i) if reasons else i.file for i in issues[:MAX_NAMED_FILES]]
    more = len(issues) - len(shown)
    return "; ".join(shown) + (f"; and {more} more file(s)" if more > 0 else "")


# --- which hour a run assesses, and the hours no run assessed ------------------------------------


@dataclass(frozen=True)
class Window:
    """What one monitoring run assesses: predictions with ``start <= ts < end`` (UTC).

    ``source``: ``hour`` (the run's ``hour`` param), ``data_interval`` (the run's data interval) or
    ``last_complete_hour`` (the last hour that ended before the run was triggered). ``check_gaps``:
    whether the run reports the hours before ``start`` that no run assessed (not a back-fill).
    ``warnings``: what is wrong with the run's dates, for the log.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    source: str
    check_gaps: bool = True
    warnings: tuple[str, ...] = ()


def parse_hour(value: object) -> pd.Timestamp:
    """The start of the UTC hour that ``value`` falls in.

    ``value``: an ISO 8601 date-time, as text (``2026-11-05T10:00:00Z``; without an offset it is
    UTC; any time within an hour names that hour) or a ``datetime``. Raises ``ValueError`` naming
    the ``hour`` param when it is neither.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"param 'hour': {value!r} is not an ISO 8601 date-time "
                             "such as 2026-11-05T10:00:00Z") from None
    if not isinstance(value, datetime):
        raise ValueError(f"param 'hour': {value!r} ({type(value).__name__}) is not a date-time "
                         "such as 2026-11-05T10:00:00Z")
    return _utc(value).floor("h")


def _utc(value) -> pd.Timestamp:
    """``value`` as a UTC timestamp; without a zone it is UTC."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def run_window(
    *,
    run_type: str,
    run_after,
    hour: object = None,
    data_interval: tuple | None = None,
    logical_date=None,
    now: pd.Timestamp | None = None,
) -> Window:
    """The hour (or interval) a monitoring run assesses, from what Airflow knows of the run.

    ``run_type``: Airflow's (``scheduled``, ``backfill``, ``manual``, ``asset_triggered``,
    ``operator_triggered``); ``run_after``: when the run was due (a manual run: when it was
    triggered); ``hour``: the run's ``hour`` param (None or ``""``: not given); ``data_interval``:
    ``(start, end)`` or None (a manual run without a logical date has none); ``logical_date``: the
    run's, or None; ``now``: the current time (default: now). Datetimes without a zone are UTC.

    * A scheduled or back-fill run assesses its data interval; an ``hour`` is ignored (a warning).
    * Any other run (manual) assesses the hour ``hour`` names (:func:`parse_hour`), else its data
      interval when it has one (given a logical date, Airflow makes it the last interval that ended
      at or before that date), else the last hour that ended at or before ``run_after``.
    * A zero-length interval (a run of an unscheduled DAG given a logical date) means the last hour
      that ended at or before it.

    A manual run given a logical date on a schedule boundary (its data interval ends at its logical
    date) took the logical date of the scheduled run of the interval starting there: that run cannot
    be created, and its hour will be reported as unassessed; this is a warning of the window.

    Raises ``ValueError`` (naming the ``hour`` param) when ``hour`` is not a date-time or names an
    hour that has not ended by ``now``, and when a scheduled or back-fill run has no data interval.
    """
    now = _utc(now if now is not None else pd.Timestamp.now(tz="UTC"))
    interval = None
    if data_interval is not None and data_interval[0] is not None and data_interval[1] is not None:
        interval = (_utc(data_interval[0]), _utc(data_interval[1]))
    given = hour is not None and not (isinstance(hour, str) and not hour.strip())
    warnings: list[str] = []
    if run_type in TIMETABLE_RUNS:
        if interval is None:
            raise ValueError(f"a {run_type} run has no data interval: nothing to assess")
        if given:
            warnings.append(f"a {run_type} run assesses its data interval {interval[0]} to {interval[1]}; "
                            f"its param 'hour' ({hour!r}) is ignored")
        start, end = interval
        source = "data_interval"
    else:
        if logical_date is not None and interval is not None and interval[1] == _utc(logical_date):
            warnings.append(
                f"this {run_type} run took the logical date {_utc(logical_date)}, the one the scheduled run of the "
                "interval starting then needs: the scheduler cannot create that run, and its hour will be reported "
                "as unassessed by the next run. Trigger manual runs with \"logical_date\": null and the hour to "
                "assess in the conf (\"hour\")")
        if given:
            start = parse_hour(hour)
            end, source = start + ONE_HOUR, "hour"
            if end > now:
                raise ValueError(f"param 'hour': {hour!r} names the hour {start:%Y-%m-%d %H}:00 UTC, which has not "
                                 f"ended yet (now {now:%Y-%m-%d %H:%M} UTC): name an hour that has ended")
        elif interval is not None:
            (start, end), source = interval, "data_interval"
        else:
            end = _utc(run_after).floor("h")
            start, source = end - ONE_HOUR, "last_complete_hour"
    if end <= start:  # a zero-length interval: the last hour that ended by then
        end = end.floor("h")
        start = end - ONE_HOUR
    return Window(start, end, source, check_gaps=run_type != "backfill", warnings=tuple(warnings))


def covered_hours(start: pd.Timestamp, end: pd.Timestamp) -> int:
    """How many hours (steps) the window ``start <= ts < end`` touches (at least 1)."""
    first = pd.Timestamp(start).floor("h")
    return max(1, int(np.ceil((pd.Timestamp(end) - first) / ONE_HOUR)))


@dataclass(frozen=True)
class Gap:
    """Hours before an assessed one that no run assessed, oldest first.

    ``hours``: their starts (at most the lookback's); ``last_assessed``: the start of the last hour
    assessed before them; ``lookback_hours``: how far back was looked.
    """

    hours: tuple[pd.Timestamp, ...]
    last_assessed: pd.Timestamp
    lookback_hours: int

    @property
    def beyond_lookback(self) -> bool:
        """More unassessed hours before the ones listed (the last assessed hour is older than the lookback)."""
        return self.last_assessed + ONE_HOUR < self.hours[0]


def find_gap(assessed: Mapping[int, float], start: pd.Timestamp,
             lookback_hours: int = GAP_LOOKBACK_HOURS) -> Gap | None:
    """The hours between the last hour assessed before ``start`` and ``start`` (None when there are none).

    ``assessed``: ``{step: hours covered}`` of every assessed window (:func:`assessed_windows`;
    step: :func:`hour_step` of its first hour). Hours only windows at or after ``start`` covered
    do not count; none assessed before ``start`` at all (the model's first run): None. At most
    ``lookback_hours`` hours are listed: the latest.
    """
    first = hour_step(start)
    ends = [min(step + max(1, int(np.ceil(span))), first) for step, span in assessed.items() if step < first]
    if not ends:
        return None
    last = max(ends) - 1  # the last hour assessed before start
    missing = range(max(last + 1, first - lookback_hours), first)
    if not missing:
        return None
    return Gap(tuple(pd.Timestamp(s * 3600, unit="s", tz="UTC") for s in missing),
               pd.Timestamp(last * 3600, unit="s", tz="UTC"), lookback_hours)


def assessed_windows(client: MlflowClient, run_id: str) -> dict[int, float]:
    """``{step: hours covered}`` of every window assessed on the monitoring run ``run_id``.

    From its ``rows`` metric, which :func:`log_hour` writes for every assessed window, and
    ``window_hours`` (1 where absent).
    """
    spans = _history(client, run_id, WINDOW_METRIC)
    return {step: spans.get(step, 1.0) for step in _history(client, run_id, "rows")}


def gap_issue(config: ModelConfig, gap: Gap) -> DataQualityIssue:
    """The ``unassessed_hours`` issue of ``gap`` (value: its hours; always a finding), naming the hours
    and the manual run that assesses one."""
    spans: list[list[pd.Timestamp]] = []
    for hour in gap.hours:
        if spans and hour - spans[-1][-1] == ONE_HOUR:
            spans[-1].append(hour)
        else:
            spans.append([hour])
    named = [f"{s[0]:%Y-%m-%d %H}:00" + (f" to {s[-1]:%Y-%m-%d %H}:00 ({len(s)} h)" if len(s) > 1 else "")
             for s in spans[-MAX_NAMED_RANGES:]]
    if len(spans) > MAX_NAMED_RANGES:
        named.insert(0, f"{len(spans) - MAX_NAMED_RANGES} earlier span(s)")
    n = len(gap.hours)
    before = (f"none was assessed in the {gap.lookback_hours} h looked back; the last assessed hour started "
              if gap.beyond_lookback else "the last assessed hour before them started ")
    detail = (f"{n} hour(s) before this one were not assessed by any monitoring run (hours starting, UTC): "
              f"{', '.join(named)}; {before}{gap.last_assessed:%Y-%m-%d %H}:00 UTC. Assess one with a manual run "
              f"of monitor_{config.name}: logical_date null, conf {{\"hour\": \"{gap.hours[-1]:%Y-%m-%dT%H}:00:00Z\"}}")
    return DataQualityIssue(UNASSESSED_HOURS, None, n, float(n), 1.0, detail)


# --- cooldown ------------------------------------------------------------------------------


def due(assessment: HourAssessment, state: Mapping[str, dict], cooldown_hours: float) -> list[Finding]:
    """The findings to send now: new, past the cooldown since they last fired, or worse than then.

    Worse: a higher tier, or a value at least ``WORSE_FRACTION`` of the threshold beyond the one
    that fired (for ``data_quality.*`` findings: of the larger of the threshold and that value).
    ``data_quality.unassessed_hours`` reported for another hour than the one it fired for is another
    gap (see the module docstring): due whatever the cooldown.
    """
    hour = pd.Timestamp(assessment.hour)
    out = []
    for finding in assessment.findings:
        last = state.get(finding.name)
        if last is None or last.get("version") != assessment.version:  # a version deployed since is a new case
            out.append(finding)
            continue
        if finding.name == GAP and last.get("hour") != assessment.hour:  # other hours than the ones told
            out.append(finding)
            continue
        since = abs(hour - pd.Timestamp(last["hour"]))
        # a data-quality value (a share, a file count) is worse when it grew by half of itself too
        step = max(finding.threshold, last["value"]) if finding.name.startswith(f"{DATA_QUALITY}.") \
            else finding.threshold
        worse = LEVELS.index(assessment.level) > LEVELS.index(last["level"]) or (
            finding.value >= last["value"] + WORSE_FRACTION * step
        )
        if since >= timedelta(hours=cooldown_hours) or worse:
            out.append(finding)
        else:
            log.info("%s: %s last fired for %s (value %.4f); within the %sh cooldown and not worse: not repeated",
                     assessment.model, finding.name, last["hour"], last["value"], cooldown_hours)
    return out


def alert_state(client: MlflowClient, run_id: str) -> dict[str, dict]:
    """What fired last per condition, from the monitoring run's tags."""
    tags = client.get_run(run_id).data.tags
    return {k.removeprefix(ALERT_STATE_PREFIX): json.loads(v) for k, v in tags.items()
            if k.startswith(ALERT_STATE_PREFIX)}


def record_fired(client: MlflowClient, run_id: str, assessment: HourAssessment, fired: list[Finding]) -> None:
    for finding in fired:
        value = {"hour": assessment.hour, "level": assessment.level, "value": finding.value,
                 "version": assessment.version}
        client.set_tag(run_id, f"{ALERT_STATE_PREFIX}{finding.name}", json.dumps(value, sort_keys=True))


# --- MLflow: the monitoring run, deployment time, baselines ---------------------------------


def monitoring_run(client: MlflowClient, config: ModelConfig) -> str:
    """The model's one monitoring run (created on first use) in its experiment."""
    return tracking.upsert_run(client, config.experiment_name, {KIND_TAG: "monitoring", MODEL_TAG: config.name},
                               run_name=f"monitoring-{config.name}")


def deployed_at(client: MlflowClient, model: str, version: str) -> pd.Timestamp | None:
    """When ``version`` last went live (its latest ``deploy`` audit record); None if never recorded."""
    times = [r["at"] for r in audit.read(client, model, version) if r.get("action") == "deploy"]
    return pd.Timestamp(max(times)) if times else None


def kpi_baseline(
    client: MlflowClient, config: ModelConfig, version: str, deployed: pd.Timestamp | None, hour: pd.Timestamp,
    monitoring_run_id: str,
) -> tuple[dict[str, float], str]:
    """The KPI baseline of ``version`` and where it came from (``healthy_days``, ``holdout`` or ``none``).

    Once ``baseline_days`` after the cold start have passed, the mean of the version's healthy hours
    in that window is frozen as a version tag; before that the holdout KPIs of its training run serve.
    """
    mv = client.get_model_version(config.name, version)
    if BASELINE_TAG in mv.tags:
        return json.loads(mv.tags[BASELINE_TAG])["kpis"], "healthy_days"
    mon = config.monitoring
    if deployed is not None:
        start = deployed + timedelta(days=mon.cold_start_days)
        end = start + timedelta(days=mon.baseline_days)
        if hour >= end:
            frozen = _healthy_means(client, monitoring_run_id, config, version, start, end)
            if frozen:
                record = {"kpis": frozen, "from": start.isoformat(), "to": end.isoformat()}
                client.set_model_version_tag(config.name, version, BASELINE_TAG, json.dumps(record, sort_keys=True))
                log.info("%s v%s: KPI baseline frozen from its healthy hours %s..%s: %s",
                         config.name, version, start, end, frozen)
                return frozen, "healthy_days"
    metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    holdout = {k.name: metrics[f"{KPI_PREFIX}{k.name}"] for k in mon.kpis if f"{KPI_PREFIX}{k.name}" in metrics}
    return holdout, "holdout" if holdout else "none"


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    try:
        points = client.get_metric_history(run_id, key)
    except MlflowException:
        return {}
    return {p.step: p.value for p in sorted(points, key=lambda p: p.timestamp)}  # the last write of a step wins


def _healthy_means(
    client: MlflowClient, run_id: str, config: ModelConfig, version: str, start: pd.Timestamp, end: pd.Timestamp
) -> dict[str, float]:
    served = _history(client, run_id, "model_version")
    healthy = _history(client, run_id, "healthy")
    steps = {s for s, v in served.items() if str(int(v)) == str(version) and healthy.get(s) == 1.0
             and hour_step(start) <= s < hour_step(end)}
    out = {}
    for kpi in config.monitoring.kpis:
        values = [v for s, v in _history(client, run_id, f"{KPI_PREFIX}{kpi.name}").items() if s in steps]
        if values:
            out[kpi.name] = float(np.mean(values))
    return out


def log_hour(client: MlflowClient, run_id: str, assessment: HourAssessment, latency_ms: pd.Series,
             window_hours: int = 1) -> None:
    """The hour's measurements as metrics on the monitoring run (re-running an hour overwrites its point).

    ``rows`` is written for every assessed window: it is the record of which hours were assessed
    (:func:`assessed_windows`); ``window_hours`` (the hours the window covers) with it when more than one.
    """
    hour = pd.Timestamp(assessment.hour)
    ts, step = int(hour.timestamp() * 1000), hour_step(hour)
    values: dict[str, float] = {"rows": assessment.rows}
    if window_hours != 1:
        values[WINDOW_METRIC] = float(window_hours)
    if str(assessment.version).isdigit():
        values["model_version"] = float(assessment.version)
    if assessment.level != "skipped":
        values["alert_level"] = float(LEVELS.index(assessment.level))
        values["healthy"] = float(assessment.healthy)
        values["cold_start"] = float(assessment.cold_start)
    if assessment.drift:
        values["drift.share_drifted"] = assessment.drift["share_drifted"]
        for name, feature in assessment.drift["features"].items():
            values[f"drift.{name}"] = feature["score"]
    for name, kpi in assessment.kpis.items():
        if kpi["value"] is not None:
            values[f"{KPI_PREFIX}{name}"] = kpi["value"]
    for name, drop in assessment.drops.items():
        values[f"kpi_drop.{name}"] = drop
    for kind in DATA_QUALITY_KINDS:
        values[f"{DATA_QUALITY}.{kind}"] = float(sum(i.count for i in assessment.data_quality if i.kind == kind))
    for issue in assessment.data_quality:
        if issue.column:
            key = _metric_key(issue.name)
            values[key] = values.get(key, 0.0) + issue.count
    latency = latency_ms.dropna()
    if len(latency):
        values["latency_ms.p50"] = float(latency.quantile(0.5))
        values["latency_ms.p99"] = float(latency.quantile(0.99))
    metrics = [Metric(k, float(v), ts, step) for k, v in values.items() if np.isfinite(v)]
    client.log_batch(run_id, metrics=metrics)


def _metric_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in a metric key replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def audit_alert(client: MlflowClient, assessment: HourAssessment, fired: list[Finding], actions: list[str],
                actor: str, dag_id: str | None, run_id: str | None) -> None:
    """An audit record for a sent alert (on the version it concerns), with what was done about it.

    When that version is not registered (the log named a version the registry does not know) or
    there is none, the record goes on the registered model, with the version in its details.
    """
    version = assessment.version
    if version is not None:
        try:
            client.get_model_version(assessment.model, version)
        except MlflowException:
            version = None
    audit.write(client, audit.AuditRecord(
        action=f"alert.{assessment.level}", model=assessment.model, version=version, actor=actor,
        reason=assessment.reason, dag_id=dag_id, run_id=run_id,
        details={"hour": assessment.hour, "findings": [asdict(f) for f in fired], "actions": actions,
                 **({"served_version": assessment.version} if version != assessment.version else {})},
    ))


# --- one hour, end to end ------------------------------------------------------------------------


@dataclass
class HourResult:
    """What :func:`assess_window` did: the assessment, the monitoring run, the HTML report's place (if written)."""

    assessment: HourAssessment
    monitoring_run_id: str
    report_path: str | None = None  # artifact path on the monitoring run
    report_uri: str | None = None


def assess_window(
    client: MlflowClient,
    config: ModelConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    champion: str | None,
    root: str | None = None,
    now: pd.Timestamp | None = None,
    check_gaps: bool = True,
) -> HourResult:
    """Assess the predictions of ``config``'s model with ``start <= ts < end`` and record it on the monitoring run.

    Reads the inference log (``root``: see :func:`include.monitoring.inference_log.log_root`) with the declared
    feature types, checks the data, and, with ``min_rows`` rows and a version (the one most rows were
    served by, else ``champion``), joins the outcomes, checks drift against the version's reference
    profile and computes the KPIs against its baseline; then the tier (:func:`assess`), the metrics
    (:func:`log_hour`) and Evidently's HTML report under ``reports/YYYY-MM-DD/HH00/`` of the monitoring
    run. What is wrong with the data becomes a data-quality issue, never an exception; a failing
    HTML report becomes a note. Errors of MLflow itself (the store unreachable) are raised.
    ``check_gaps``: also report the hours before ``start`` that no run assessed (:func:`find_gap`;
    not for a back-fill, which fills them).
    """
    mon = config.monitoring
    types = {c.name: c.type for c in config.dataset.features}
    read = inference_log.read_checked(config.name, start, end, features=types, root=root)
    frame = read.frame
    served = frame["model_version"].dropna().mode()
    version = str(served.iloc[0]) if len(served) else champion
    run_id = monitoring_run(client, config)
    issues = read_quality(config, read)
    for issue in read.issues:
        log.warning("%s inference log, %s..%s: %s", config.name, start, end, issue)
    if frame.empty:
        issues.append(no_rows(config, start, end, expected_rows(client, run_id, start, mon.traffic_lookback_hours)))
    decide = len(frame) >= mon.min_rows and version is not None
    profile = report = deployed = None
    baseline: dict[str, float] = {}
    source = "none"
    if decide:
        profile, missing = reference_profile(client, config, version)
        issues += [missing] if missing else []
    issues += frame_quality(config, frame, profile, read.issues)
    if decide:
        frame, outcome_issues = join_outcomes(config, frame, start, end, now=now)
        issues += outcome_issues
        if profile is not None:
            report = drift.detect_drift(profile, frame, drift_share=mon.drift.drift_share)
            issues += drift_quality(report, issues, mon.data_quality_warning)
        try:
            deployed = deployed_at(client, config.name, version)
            baseline, source = kpi_baseline(client, config, version, deployed, start, run_id)
        except MlflowException as exc:  # the version is not registered: reported as no_reference_profile
            log.warning("%s v%s: no deployment time or KPI baseline: %s", config.name, version, exc.message)
    if check_gaps:
        gap = find_gap(assessed_windows(client, run_id), start)
        if gap is not None:
            issues.append(gap_issue(config, gap))
            log.warning("%s: %s", config.name, issues[-1].detail)
    assessment = assess(config, hour=start, frame=frame, version=version, drift_report=report, deployed_at=deployed,
                        baseline=baseline, baseline_source=source, data_quality=issues)
    log_hour(client, run_id, assessment, frame["latency_ms"], window_hours=covered_hours(start, end))
    result = HourResult(assessment, run_id)
    if profile is not None:
        result.report_path, note = write_report(client, run_id, profile, frame, start, config)
        if note:
            assessment.notes.append(note)
        if result.report_path:
            result.report_uri = f"{client.get_run(run_id).info.artifact_uri}/{result.report_path}"
    return result


def write_report(
    client: MlflowClient, run_id: str, profile: drift.ReferenceProfile, frame: pd.DataFrame, hour: pd.Timestamp,
    config: ModelConfig,
) -> tuple[str | None, str | None]:
    """Evidently's HTML report of the hour, logged under ``reports/YYYY-MM-DD/HH00/data_drift.html`` of the run.

    Returns (its artifact path, or None when it could not be made; a note for people, or None).
    Columns Evidently cannot draw are left out and named in the note; any failure of Evidently is
    logged and noted, never raised: the report is for people, the decision does not depend on it.
    """
    mon = config.monitoring
    folder = f"reports/{hour:%Y-%m-%d}/{hour:%H}00"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            html = drift.evidently_report(profile, frame, Path(tmp) / "data_drift.html",
                                          sample_rows=mon.report_sample_rows, drift_share=mon.drift.drift_share)
            client.log_artifact(run_id, str(html.path), folder)
    except MlflowException:
        raise
    except Exception as exc:  # Evidently's own failure: the hour's assessment stands without its picture
        log.exception("%s %s: the Evidently report could not be made", config.name, hour)
        return None, f"Evidently report not written: {type(exc).__name__}: {exc}"
    note = None
    if html.skipped:
        note = "Evidently report leaves out " + "; ".join(f"{k} ({v})" for k, v in html.skipped.items())
    return f"{folder}/{html.path.name}", note
