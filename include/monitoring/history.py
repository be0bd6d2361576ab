"""The model's monitoring run in MLflow: one metric point per assessed hour, and what is read back from it.

Everything measured per hour goes to that run as MLflow metrics (step = hours since the epoch,
:func:`include.monitoring.windows.hour_step`; timestamp = the hour), so their history plots in the
MLflow UI (:func:`log_hour`): among them ``data_quality.<kind>`` (rows, values or files concerned,
0 when none) for every kind each hour, ``data_quality.<kind>.<column>`` where a column had some, and
the estimated performance ``estimated.<metric>`` with its band, holdout value, drop and (once labels
arrived) realised value and absolute error (:func:`include.monitoring.performance_estimation.metric_values`).
Re-assessing an hour adds a point at the same step; the last written wins when read back.

Read back: which hours were assessed (:func:`assessed_windows`, from the ``rows`` metric written
for every assessed window), how much traffic an hour was expected to have (:func:`expected_rows`),
and a version's KPI baseline (:func:`kpi_baseline`, from its healthy hours).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import ModelConfig
from include.governance import audit
from include.monitoring.assessment import LEVELS, HourAssessment
from include.monitoring.data_quality import DATA_QUALITY, DATA_QUALITY_KINDS
from include.monitoring.kpis import KPI_PREFIX
from include.monitoring.performance_estimation import metric_values as estimated_metrics
from include.monitoring.windows import hour_step

log = logging.getLogger(__name__)

KIND_TAG = "modelops.kind"
MODEL_TAG = "modelops.model"
BASELINE_TAG = "monitoring.kpi_baseline"
WINDOW_METRIC = "window_hours"


def monitoring_run(client: MlflowClient, config: ModelConfig) -> str:
    """The id of the model's one monitoring run (created on first use) in its experiment."""
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
    """``{step: value}`` of metric ``key`` on run ``run_id`` ({} when it has none)."""
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
    ``latency_ms``: the hour's request latencies (null for batch rows), for ``latency_ms.p50`` / ``.p99``.
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
    values.update(estimated_metrics(assessment.estimated))  # estimated.<metric>[.lower/.upper/.realised/...] (CBPE)
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


def expected_rows(client: MlflowClient, run_id: str, hour: pd.Timestamp, lookback_hours: int) -> float:
    """The median ``rows`` metric of the hours assessed in the ``lookback_hours`` before ``hour`` (0 when none)."""
    step = hour_step(hour)
    points = [v for s, v in _history(client, run_id, "rows").items() if step - lookback_hours <= s < step]
    return float(np.median(points)) if points else 0.0


def assessed_windows(client: MlflowClient, run_id: str) -> dict[int, float]:
    """``{step: hours covered}`` of every window assessed on the monitoring run ``run_id``.

    From its ``rows`` metric, which :func:`log_hour` writes for every assessed window, and
    ``window_hours`` (1 where absent).
    """
    spans = _history(client, run_id, WINDOW_METRIC)
    return {step: spans.get(step, 1.0) for step in _history(client, run_id, "rows")}
