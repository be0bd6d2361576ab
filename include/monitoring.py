"""Hourly monitoring: is the live model still healthy, and who must hear about it?

One hour of one model is assessed at a time (the monitoring DAG's data interval):

* **data drift** of the hour's inputs against the reference profile stored with the serving
  version at training time (:mod:`include.drift`, Evidently's tests and thresholds);
* **business KPIs** of the hour's predictions joined to the delayed outcomes that have arrived
  (:mod:`include.kpis`), against the version's baseline: the mean of its first healthy days after
  the cold start, frozen on the version once those days have passed, and until then the KPIs it
  scored on its training holdout.

Tiers (thresholds in the model's ``monitoring`` config):

* ``warning``: the share of drifted features reaches ``drift.warning``, or a KPI fell by at least
  its ``max_drop``;
* ``critical``: the drifted share reaches ``drift.critical`` **and** a KPI fell by its ``max_drop``:
  the model is rolled back and retrained;
* during the first ``cold_start_days`` after a deployment no drift condition is raised (so nothing
  is critical either); KPI drops still warn.

Cooldown: a condition that fired is not repeated within ``cooldown_hours`` of the hour it fired
for, unless it got worse (a higher tier, or a value at least half its threshold beyond the one that
fired) or another version serves now (a fresh deployment that goes bad is rolled back too). What fired is kept as tags on the model's monitoring run, so re-running an hour sends
nothing twice.

Everything measured per hour goes to that monitoring run as MLflow metrics (step = hours since the
epoch, timestamp = the hour), so their history plots in the MLflow UI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from include import audit, tracking
from include.config import ModelConfig
from include.kpis import KPI_PREFIX, compute_kpis, drops

log = logging.getLogger(__name__)

KIND_TAG = "modelops.kind"
MODEL_TAG = "modelops.model"
ALERT_STATE_PREFIX = "alert_state."
BASELINE_TAG = "monitoring.kpi_baseline"
LEVELS = ("ok", "warning", "critical")
DRIFT = "data_drift"
CRITICAL = "critical"
WORSE_FRACTION = 0.5  # re-fire within the cooldown when the value moved this share of its threshold further


@dataclass(frozen=True)
class Finding:
    """One condition that crossed its threshold (the shape of :class:`include.alerts.Condition`)."""

    name: str  # "data_drift", "kpi.<name>" or "critical"
    value: float
    threshold: float
    detail: str = ""


@dataclass
class HourAssessment:
    model: str
    version: str | None
    hour: str  # ISO start of the hour
    rows: int
    level: str  # "skipped" (too few rows), "ok", "warning", "critical"
    reason: str
    cold_start: bool = False
    healthy: bool = True  # no drift or KPI condition, cold start or not: what a baseline may use
    drift: dict | None = None
    kpis: dict[str, dict] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    baseline_source: str = "none"
    drops: dict[str, float] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


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
) -> HourAssessment:
    """Decide the tier of one hour from its predictions (joined to outcomes) and its drift report."""
    mon = config.monitoring
    rows = len(frame)
    if rows < mon.min_rows:
        return HourAssessment(config.name, version, hour.isoformat(), rows, "skipped",
                              f"{rows} predictions in the hour, fewer than monitoring.min_rows={mon.min_rows}")
    kpis = compute_kpis(config, mon.kpis, frame)
    fell = drops(mon.kpis, kpis, baseline)
    # An hour is in the cold start when it ends within it (a deployment mid-hour is judged on that hour).
    cold = deployed_at is not None and hour + timedelta(hours=1) <= deployed_at + timedelta(days=mon.cold_start_days)

    share = float(drift_report.share_drifted)
    drifted = sorted(f.column for f in drift_report.features.values() if f.drifted)
    drift_finding = Finding(DRIFT, share, mon.drift.warning,
                            f"{len(drifted)} of {len(drift_report.features)} features drifted"
                            + (f": {', '.join(drifted)}" if drifted else ""))
    kpi_findings = [
        Finding(f"{KPI_PREFIX}{k.name}", fell[k.name], k.max_drop,
                f"{k.name} {kpis[k.name].value:.4f} vs baseline {baseline[k.name]:.4f} ({baseline_source})")
        for k in mon.kpis if fell.get(k.name, float("-inf")) >= k.max_drop
    ]
    drift_warns = share >= mon.drift.warning
    findings = ([drift_finding] if drift_warns and not cold else []) + kpi_findings
    critical = not cold and share >= mon.drift.critical and bool(kpi_findings)
    if critical:
        findings.insert(0, Finding(CRITICAL, share, mon.drift.critical,
                                   f"drift {share:.2f} >= {mon.drift.critical} and "
                                   + ", ".join(f.name for f in kpi_findings) + " beyond max_drop"))
    level = "critical" if critical else "warning" if findings else "ok"
    reason = "; ".join(f"{f.name}: {f.detail}" for f in findings) or (
        f"healthy: {drift_finding.detail}" + (" (cold start: drift not alerted)" if cold and drift_warns else "")
    )
    return HourAssessment(
        config.name, version, hour.isoformat(), rows, level, reason, cold_start=cold,
        healthy=not drift_warns and not kpi_findings, drift=drift_report.as_dict(),
        kpis={k: v.as_dict() for k, v in kpis.items()}, baseline=dict(baseline), baseline_source=baseline_source,
        drops=fell, findings=findings,
    )


# --- cooldown ------------------------------------------------------------------------------


def due(assessment: HourAssessment, state: Mapping[str, dict], cooldown_hours: float) -> list[Finding]:
    """The findings to send now: new, past the cooldown since they last fired, or worse than then."""
    hour = pd.Timestamp(assessment.hour)
    out = []
    for finding in assessment.findings:
        last = state.get(finding.name)
        if last is None or last.get("version") != assessment.version:  # a version deployed since is a new case
            out.append(finding)
            continue
        since = abs(hour - pd.Timestamp(last["hour"]))
        worse = LEVELS.index(assessment.level) > LEVELS.index(last["level"]) or (
            finding.value >= last["value"] + WORSE_FRACTION * finding.threshold
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


def log_hour(client: MlflowClient, run_id: str, assessment: HourAssessment, latency_ms: pd.Series) -> None:
    """The hour's measurements as metrics on the monitoring run (re-running an hour overwrites its point)."""
    hour = pd.Timestamp(assessment.hour)
    ts, step = int(hour.timestamp() * 1000), hour_step(hour)
    values: dict[str, float] = {"rows": assessment.rows}
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
    latency = latency_ms.dropna()
    if len(latency):
        values["latency_ms.p50"] = float(latency.quantile(0.5))
        values["latency_ms.p99"] = float(latency.quantile(0.99))
    metrics = [Metric(k, float(v), ts, step) for k, v in values.items() if np.isfinite(v)]
    client.log_batch(run_id, metrics=metrics)


def audit_alert(client: MlflowClient, assessment: HourAssessment, fired: list[Finding], actions: list[str],
                actor: str, dag_id: str | None, run_id: str | None) -> None:
    """An audit record for a sent alert (on the version it concerns), with what was done about it."""
    audit.write(client, audit.AuditRecord(
        action=f"alert.{assessment.level}", model=assessment.model, version=assessment.version, actor=actor,
        reason=assessment.reason, dag_id=dag_id, run_id=run_id,
        details={"hour": assessment.hour, "findings": [asdict(f) for f in fired], "actions": actions},
    ))

