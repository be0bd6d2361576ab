"""One hour of one model, end to end: read, check, measure, decide, record.

:func:`assess_window` reads the hour's inference log, finds what is wrong with its data
(:mod:`include.monitoring.data_quality`), screens its text columns for personal data
(:mod:`include.governance.screening`, ``compliance.screening``), joins the delayed labels that have arrived
(:mod:`include.monitoring.delayed_labels`), tests drift against the served version's reference
profile (:mod:`include.monitoring.drift`), computes the KPIs against the version's baseline,
decides the tier (:func:`include.monitoring.assessment.assess`), writes the hour's metrics
(:func:`include.monitoring.history.log_hour`) and Evidently's HTML report to the model's
monitoring run. An hour whose inputs hold personal data gets the ``personal_data`` finding, the details of
its data-quality issues in those columns are withheld, and no Evidently report is written for it (the
report shows feature values).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from include.config import ModelConfig
from include.governance.screening import screen_frame
from include.monitoring import challenger, data_quality, drift, history, inference_log, windows
from include.monitoring.assessment import HourAssessment, assess, personal_data_finding
from include.monitoring.delayed_labels import join_labels
from include.monitoring.findings import Finding
from include.monitoring.performance_estimation import estimate_hour
from include.monitoring.reference_profile import ReferenceProfile, load_profile
from include.monitoring.response import served_version

log = logging.getLogger(__name__)


@dataclass
class HourResult:
    """What :func:`assess_window` did: the assessment, the monitoring run, the HTML report's place (if written)."""

    assessment: HourAssessment
    monitoring_run_id: str
    report_path: str | None = None  # artifact path on the monitoring run
    report_uri: str | None = None
    challenger: challenger.ChallengerHour | None = None  # the @challenger's rows of the hour (shadow / canary)


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

    Reads the inference log (``root``: see :func:`include.monitoring.inference_log.log_root`) with
    the declared feature types, checks the data, and, with ``min_rows`` rows and a version
    (:func:`include.monitoring.response.served_version`: the one most rows were served by, else
    ``champion``), joins the delayed labels, checks drift against the version's reference profile
    and computes the KPIs against its baseline, estimates the performance without labels (CBPE on the
    version's holdout predictions, :func:`include.monitoring.performance_estimation.estimate_hour`);
    then the tier (:func:`assess`), the metrics (:func:`include.monitoring.history.log_hour`) and Evidently's HTML report under
    ``reports/YYYY-MM-DD/HH00/`` of the monitoring run. What is wrong with the data becomes a
    data-quality issue, never an exception; a failing HTML report becomes a note. Errors of MLflow
    itself (the store unreachable) are raised. ``now``: the time up to which delayed labels have
    arrived (default: now). ``check_gaps``: also report the hours before ``start`` that no run
    assessed (:func:`include.monitoring.windows.find_gap`; not for a back-fill, which fills them).
    """
    mon = config.monitoring
    types = {c.name: c.type for c in config.dataset.features}
    read = inference_log.read_checked(config.name, start, end, features=types, root=root)
    frame, challenger_rows = inference_log.split_roles(read.frame)  # the champion's hour: the rows that answered
    personal, personal_columns = screen_hour(config, frame)
    version = served_version(frame["model_version"], champion)
    run_id = history.monitoring_run(client, config)
    issues = data_quality.read_quality(config, read)
    for issue in read.issues:
        log.warning("%s inference log, %s..%s: %s", config.name, start, end, issue)
    if frame.empty:
        expected = history.expected_rows(client, run_id, start, mon.traffic_lookback_hours)
        issues.append(data_quality.no_rows(config, start, end, expected))
    decide = len(frame) >= mon.min_rows and version is not None
    profile = report = deployed = estimated = None
    baseline: dict[str, float] = {}
    source = "none"
    if decide:
        profile, missing = load_reference(client, config, version)
        issues += [missing] if missing else []
    issues += data_quality.frame_quality(config, frame, profile, read.issues)
    if decide:
        frame, label_issues = join_labels(config, frame, start, end, now=now)
        issues += label_issues
    compared = None
    if not challenger_rows.empty:
        challenger_rows, _ = join_labels(config, challenger_rows, start, end, now=now)
        compared = challenger.assess_challenger(config, frame, challenger_rows)
    if decide:
        estimated = estimate_hour(client, config, version, frame)  # CBPE, without labels (monitoring.estimated_performance)
        if profile is not None:
            report = drift.detect_drift(profile, frame, drift_share=mon.drift.drift_share)
            issues += data_quality.drift_quality(report, issues, mon.data_quality_warning)
        try:
            deployed = history.deployed_at(client, config.name, version)
            baseline, source = history.kpi_baseline(client, config, version, deployed, start, run_id)
        except MlflowException as exc:  # the version is not registered: reported as no_reference_profile
            log.warning("%s v%s: no deployment time or KPI baseline: %s", config.name, version, exc.message)
    if check_gaps:
        gap = windows.find_gap(history.assessed_windows(client, run_id), start)
        if gap is not None:
            issues.append(windows.gap_issue(config, gap))
            log.warning("%s: %s", config.name, issues[-1].detail)
    if personal_columns:  # a constant's value, a wrongly typed example: not from a column holding personal data
        issues = [_withheld(i) if i.column in personal_columns else i for i in issues]
    assessment = assess(config, hour=start, frame=frame, version=version, drift_report=report, deployed_at=deployed,
                        baseline=baseline, baseline_source=source, data_quality=issues, personal_data=personal,
                        estimated=estimated)
    if report is not None and report.drifted_columns:
        note = important_drift_note(client, config, version, report.drifted_columns)
        if note:
            assessment.notes.append(note)
    history.log_hour(client, run_id, assessment, frame["latency_ms"], window_hours=windows.covered_hours(start, end))
    result = HourResult(assessment, run_id, challenger=compared)
    if compared is not None:
        challenger.log_challenger_hour(client, run_id, start, compared)
        assessment.notes.append(f"challenger: {compared.summary()}")
    if profile is not None and personal_columns:
        assessment.notes.append("Evidently report not written: the hour's inputs hold personal data "
                                f"({', '.join(personal_columns)}), and the report would show their values")
    elif profile is not None:
        result.report_path, note = write_report(client, run_id, profile, frame, start, config)
        if note:
            assessment.notes.append(note)
        if result.report_path:
            result.report_uri = f"{client.get_run(run_id).info.artifact_uri}/{result.report_path}"
    return result


def important_drift_note(client: MlflowClient, config: ModelConfig, version: str, drifted: list[str]) -> str | None:
    """A note when features that drifted are among the version's most important (SHAP, tag ``shap.top_features``).

    Drift on a feature the model hardly uses changes little; drift on its top features is where its
    predictions move. None when none of the drifted features is in the top list (or the version has none).
    """
    from include.evaluation.explanations import top_features

    try:
        ranked = top_features(client, config.name, version)
    except MlflowException:
        return None
    hit = [f"{name} (#{rank})" for rank, name in enumerate(ranked, start=1) if name in set(drifted)]
    if not hit:
        return None
    return (f"drift on the model's most important features (SHAP rank of version {version}): {', '.join(hit)}; "
            "its predictions move most with these")


def screen_hour(config: ModelConfig, frame: pd.DataFrame) -> tuple[Finding | None, list[str]]:
    """The hour's inference log screened for personal data (``compliance.screening``; its text columns:
    the request ids and the string/category features, or the configured columns).

    Returns the ``personal_data`` finding (:func:`include.monitoring.assessment.personal_data_finding`; None
    when nothing beyond ``max_flagged_rows`` was found or screening is disabled) and the columns with any
    flagged row. Counts only: no value is logged.
    """
    settings = config.compliance.screening
    if not settings.enabled:
        return None, []
    screened = screen_frame(frame, settings)
    if screened.flagged_rows:
        log.warning("%s: personal data in the hour's inputs: %s", config.name, screened.summary())
    return personal_data_finding(config, screened), screened.flagged_columns


def _withheld(issue: data_quality.DataQualityIssue) -> data_quality.DataQualityIssue:
    """``issue`` with its detail (which may quote values) replaced: its column holds personal data."""
    return replace(issue, detail=f"{issue.count} value(s) of {issue.column!r} concerned; details withheld: "
                                 "the column holds personal data (compliance.screening)")


def write_report(
    client: MlflowClient, run_id: str, profile: ReferenceProfile, frame: pd.DataFrame, hour: pd.Timestamp,
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


def load_reference(
    client: MlflowClient, config: ModelConfig, version: str
) -> tuple[ReferenceProfile | None, data_quality.DataQualityIssue | None]:
    """The served version's reference profile (from its training run), or None and the
    ``no_reference_profile`` issue saying why (the version is not registered, has no training run,
    or its run has no readable profile)."""
    why = None
    try:
        run_id = client.get_model_version(config.name, version).run_id
    except MlflowException as exc:
        run_id, why = None, f"version {version!r} (served, per the inference log) is not registered ({exc.message})"
    if why is None and not run_id:
        why = f"version {version} has no training run"
    if why is None:
        try:
            return load_profile(client, run_id), None
        except (FileNotFoundError, MlflowException, OSError, ValueError, KeyError) as exc:
            why = f"version {version}'s training run {run_id} has no readable reference profile ({exc})"
    return None, data_quality.no_reference_profile(why)
