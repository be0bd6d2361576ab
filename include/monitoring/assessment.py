"""The assessment of one hour: is the live model still healthy, and how bad is it?

One hour (a window, :mod:`include.monitoring.windows`) of one model is assessed at a time:

* **data drift** of the hour's inputs against the reference profile stored with the serving
  version at training time (:mod:`include.monitoring.drift`, Evidently's tests and thresholds);
* **business KPIs** of the hour's predictions joined to the delayed labels (ground truth) that have
  arrived (:mod:`include.monitoring.kpis`, :mod:`include.monitoring.delayed_labels`), against the
  version's baseline (:func:`include.monitoring.history.kpi_baseline`): the mean of its first
  healthy days after the cold start, frozen on the version once those days have passed, and until
  then the KPIs it scored on its training holdout;
* **data quality** (:mod:`include.monitoring.data_quality`);
* **estimated performance** without labels (``monitoring.estimated_performance``): CBPE's estimates of
  the hour's ROC AUC / precision / recall / accuracy against the version's holdout values
  (:mod:`include.monitoring.performance_estimation`).

:func:`assess` decides the tier (thresholds in the model's ``monitoring`` config):

* ``warning``: the share of drifted features reaches ``drift.warning``, or a KPI fell by at least
  its ``max_drop``, or an estimated metric fell by its ``max_drop`` beyond its band (``estimated.<metric>``),
  or a data-quality finding (below);
* ``critical``: the drifted share reaches ``drift.critical`` **and** a KPI fell by its ``max_drop``,
  or invalid predictions reach ``invalid_predictions_critical``, or an estimated metric fell by its
  ``critical_drop``: the model is rolled back and retrained;
* during the first ``cold_start_days`` after a deployment no drift finding is raised (so nothing
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
  writer), read as null; also for the delayed-label files' columns. Warns at ``data_quality_warning``.
* ``all_null``: a feature without a single value in the hour (not explained by the kinds above):
  drift not checked. Always warns.
* ``non_finite``: +/-inf in a numeric feature, left out of drift. Warns at ``data_quality_warning``.
* ``constant``: one value in every row where the reference makes that less likely than
  :data:`include.monitoring.data_quality.CONSTANT_CHANCE` (``p(value) ** rows``): a default filled
  in upstream. Always warns.
* ``invalid_predictions``: a prediction missing, NaN, infinite or outside [0, 1]; such a row counts
  in no KPI. Warns at ``data_quality_warning``.
* ``no_reference_profile``: the served version is not registered or has no reference profile:
  drift not checked. Always warns.
* ``outcomes_unreadable``: a delayed-label file that cannot be read or lacks a column; left out.
  Always warns (value: files).
* ``unchecked_feature``: a feature the drift check could not test for another reason. Always warns.
* ``unassessed_hours``: hours before this one that no monitoring run assessed
  (:func:`include.monitoring.windows.find_gap`). Always warns (value: hours), whatever the hour's
  own rows.

Personal data: an hour whose inputs hold more than ``compliance.screening.max_flagged_rows`` rows with
an e-mail address, IBAN, card number, national identifier or phone number
(:mod:`include.governance.screening`, run by :func:`include.monitoring.hourly.assess_window`) has the
finding ``personal_data`` (value: the flagged rows, threshold: ``max_flagged_rows + 1``; the detail
names columns, detectors and counts, never values), whatever its rows (below ``min_rows`` too) and
cold start or not. It is a warning, or with ``inference_tier: critical`` makes the hour ``critical``
(a critical alert) without a ``critical`` finding: nothing is rolled back or retrained, because the
data comes from upstream and another version would receive the same inputs.

What escalates: invalid predictions in at least ``invalid_predictions_critical`` of the hour's rows
make it ``critical`` (the served version is broken: it is rolled back), cold start or not. Other
data-quality findings are warnings: the fault is upstream of the model, a rollback cannot fix it.
A feature that could not be checked counts as not drifted in the drifted share (a lower bound).
Below ``min_rows`` (but with rows) nothing is decided from the values, so only ``no_rows``,
``unreadable_file`` and ``unassessed_hours`` count then; every finding is recorded all the same.
An hour with a finding other than ``unassessed_hours`` (which is about other hours) is not healthy:
no baseline is made of it.

What is sent, and when again: :mod:`include.monitoring.cooldown`. Where it is all recorded (one
MLflow metric point per hour on the model's monitoring run): :mod:`include.monitoring.history`.
:func:`include.monitoring.hourly.assess_window` runs it all for one hour.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import pandas as pd

from include.config import ModelConfig
from include.monitoring.data_quality import (
    GAP,
    INVALID_PREDICTIONS,
    NO_ROWS,
    UNASSESSED_HOURS,
    UNREADABLE_FILE,
    DataQualityIssue,
)
from include.monitoring.findings import Finding
from include.monitoring.kpis import KPI_PREFIX, compute_kpis, drops
from include.monitoring.performance_estimation import findings as estimated_findings

if TYPE_CHECKING:
    from include.governance.screening import ScreeningReport

LEVELS = ("ok", "warning", "critical")
DRIFT = "data_drift"
CRITICAL = "critical"
PERSONAL_DATA = "personal_data"
HOUR_KINDS = frozenset({NO_ROWS, UNREADABLE_FILE, UNASSESSED_HOURS})  # count toward the tier even below min_rows


@dataclass
class HourAssessment:
    """What :func:`assess` decided about one hour (the XCom of the monitoring DAG's ``assess`` task).

    ``findings``: the ones that count toward ``level`` (a ``critical`` one first when critical);
    ``data_quality``: every data-quality issue found, whether it counts or not; ``drift``: the
    :class:`include.monitoring.drift.DriftReport` as a dict (None when not checked); ``kpis``,
    ``baseline`` and ``drops``: per KPI name.
    """

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
    estimated: dict[str, dict] = field(default_factory=dict)  # per metric: CBPE's estimate (performance_estimation)

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
    personal_data: Finding | None = None,
    estimated: Mapping[str, Mapping] | None = None,
) -> HourAssessment:
    """Decide the tier of one hour from its predictions (joined to the delayed labels), its drift report
    and its data-quality issues (the rules: the module docstring).

    ``drift_report``: a :class:`include.monitoring.drift.DriftReport`, or None when drift could not be checked
    (a ``no_reference_profile`` issue says why). ``frame``: one row per prediction with
    ``prediction`` and the columns the KPIs need; it may be empty. ``personal_data``: the hour's
    :func:`personal_data_finding`, if any. ``estimated``: the hour's estimated performance
    (:func:`include.monitoring.performance_estimation.hour_estimates`), if any.
    """
    mon = config.monitoring
    rows = len(frame)
    issues = list(data_quality)
    personal = [personal_data] if personal_data is not None else []
    pii_level = config.compliance.screening.inference_tier if personal else "ok"
    if rows < mon.min_rows:
        counted = [i.finding() for i in issues if i.fires and i.kind in HOUR_KINDS] + personal
        reason = "; ".join(f"{f.name}: {f.detail}" for f in counted) or (
            f"{rows} predictions in the hour, fewer than monitoring.min_rows={mon.min_rows}"
            + "".join(f"; {i.name} recorded, not alerted: {i.detail}" for i in issues)
        )
        level = "critical" if pii_level == "critical" else "warning" if counted else "skipped"
        return HourAssessment(config.name, version, hour.isoformat(), rows, level, reason,
                              healthy=all(f.name == GAP for f in counted), findings=counted,
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
    est_findings, est_critical = estimated_findings(mon.estimated_performance, estimated or {})
    quality_findings = [i.finding() for i in issues if i.fires]
    drift_warns = share >= mon.drift.warning
    findings = (([drift_finding] if drift_warns and not cold else []) + kpi_findings + est_findings + quality_findings
                + personal)
    drift_critical = not cold and share >= mon.drift.critical and bool(kpi_findings)
    invalid = next((i for i in issues if i.kind == INVALID_PREDICTIONS), None)
    broken = (invalid is not None and mon.invalid_predictions_critical is not None
              and invalid.value >= mon.invalid_predictions_critical)
    if drift_critical or broken or est_critical:
        parts = []
        if drift_critical:
            parts.append(f"drift {share:.2f} >= {mon.drift.critical} and "
                         + ", ".join(f.name for f in kpi_findings) + " beyond max_drop")
        if broken:
            parts.append(f"{invalid.value:.0%} of the predictions are invalid, >= invalid_predictions_critical="
                         f"{mon.invalid_predictions_critical}: the served version is broken")
        parts += [f.detail for f in est_critical]
        value, threshold = ((share, mon.drift.critical) if drift_critical
                            else (invalid.value, mon.invalid_predictions_critical) if broken
                            else (est_critical[0].value, est_critical[0].threshold))
        findings.insert(0, Finding(CRITICAL, value, threshold, "; ".join(parts)))
    level = ("critical" if drift_critical or broken or est_critical or pii_level == "critical"
             else "warning" if findings else "ok")
    reason = "; ".join(f"{f.name}: {f.detail}" for f in findings) or (
        f"healthy: {drift_finding.detail}" + (" (cold start: drift not alerted)" if cold and drift_warns else "")
    )
    return HourAssessment(
        config.name, version, hour.isoformat(), rows, level, reason, cold_start=cold,
        healthy=(not drift_warns and not kpi_findings and not est_findings and not personal
                 and all(f.name == GAP for f in quality_findings)),
        drift=drift_report.as_dict() if drift_report is not None else None,
        kpis={k: v.as_dict() for k, v in kpis.items()}, baseline=dict(baseline), baseline_source=baseline_source,
        drops=fell, findings=findings, data_quality=issues, notes=list(notes), estimated=dict(estimated or {}),
    )


def personal_data_finding(config: ModelConfig, report: ScreeningReport) -> Finding | None:
    """The ``personal_data`` finding of an hour whose screened inputs (``report``, from
    :func:`include.governance.screening.screen_frame`) have more than ``compliance.screening.max_flagged_rows``
    flagged rows; None otherwise. Value: the flagged rows; threshold: ``max_flagged_rows + 1``; the detail
    names the columns, detectors and counts, never a value.
    """
    limit = config.compliance.screening.max_flagged_rows
    if not report.exceeds(limit):
        return None
    columns = "; ".join(f"{c.column}: " + ", ".join(f"{d} {n}" for d, n in c.counts.items())
                        for c in report.columns if c.counts)
    return Finding(PERSONAL_DATA, report.flagged_rows, limit + 1,
                   f"{report.flagged_rows} of {report.rows} rows hold personal data (rows per column and detector: "
                   f"{columns}; compliance.screening, values not recorded)")
