"""A registry, ledger and monitoring history like the demo's, for the Model Ops view's tests.

Written through the project's own functions: versions registered and promoted with
:mod:`include.promotion.registry` (which records every alias move in the ledger), deployments and a
retirement plan through :func:`include.governance.audit.write`, monitored hours through
:func:`include.monitoring.history.log_hour` on the model's monitoring run, and the alert sent for the
latest hour as monitoring records it (``alert.warning`` with its findings).

The model is the configured ``credit_approval`` (config/models/credit_approval.yaml: its KPIs and
thresholds are what the view reads): version 1 was champion, version 2 is champion now, version 3 is the
challenger. :data:`HOURS` hours are monitored up to the hour before the current one, with
:data:`GAP_HOURS` of them left unassessed; drift rises and ``approval_rate`` falls toward the end, so the
latest hour is a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import ModelConfig, model_configs
from include.governance import audit
from include.monitoring import history as monitoring_history
from include.monitoring.assessment import HourAssessment
from include.monitoring.data_quality import NON_FINITE, DataQualityIssue
from include.monitoring.findings import Finding
from include.promotion import registry

MODEL = "credit_approval"
HOURS = 36  # monitored hours written (the view shows 48: the first 12 are empty)
GAP_HOURS = (10, 11)  # indices (0 = oldest) of hours left unassessed
BASELINE = {"approval_rate": 0.62, "repayment_rate": 0.91, "default_precision": 0.55}
HOLDOUT = {1: {"roc_auc": 0.81, **BASELINE}, 2: {"roc_auc": 0.83, "approval_rate": 0.63, "repayment_rate": 0.92,
                                                  "default_precision": 0.57},
           3: {"roc_auc": 0.84, "approval_rate": 0.61, "repayment_rate": 0.92, "default_precision": 0.58}}


@dataclass(frozen=True)
class Seeded:
    config: ModelConfig
    monitoring_run: str
    hours: list[str]  # ISO starts of the written hours, oldest first (gaps included)
    assessed: list[str]  # the hours actually written
    drift: dict[str, float]  # hour -> drift share
    approval_rate: dict[str, float]  # hour -> KPI value
    last_hour: str
    training_runs: dict[str, str]  # version -> run id


def _drift(i: int) -> float:
    return round(0.05 + 0.01 * i, 4)


def _approval(i: int) -> float:
    return round(0.62 - (0.004 * (i - 24) if i > 24 else 0.0) + 0.003 * np.sin(i), 4)


def seed(client: MlflowClient) -> Seeded:
    """Register, promote and deploy three versions of MODEL, write a retirement plan and HOURS monitored hours."""
    config = model_configs()[MODEL]
    runs: dict[str, str] = {}
    for number in (1, 2, 3):
        run_id = tracking.upsert_run(client, config.experiment_name, {"test.run": f"ui-{number}"}, f"train-v{number}")
        for key, value in HOLDOUT[number].items():
            client.log_metric(run_id, key if key == "roc_auc" else f"kpi.{key}", value)
        client.log_param(run_id, "max_iter", "150")
        tags = {"gates.result": "passed", "data_fingerprint": f"{number}" * 64, "schema_hash": "5c" * 8,
                "dataset_uri": f"file:///data/credit_approval/train-v{number}.parquet", "code_commit": f"c0ffee{number}"}
        mv = registry.register_challenger(client, name=MODEL, description=config.description,
                                          model_uri=f"runs:/{run_id}/model", run_id=run_id, tags=tags,
                                          actor="scheduler", dag_id=f"train_{MODEL}", airflow_run_id=f"train-{number}")
        runs[str(mv.version)] = run_id
        if number < 3:
            registry.promote(client, MODEL, str(mv.version), actor="alice" if number == 1 else "bob",
                             reason=f"v{number} passed the gates", dag_id=f"promote_{MODEL}", run_id=f"promote-{number}")
            audit.write(client, audit.AuditRecord(
                action="deploy", model=MODEL, version=str(mv.version), actor="scheduler",
                reason=f"Triton serves v{number}", dag_id=f"deploy_{MODEL}", run_id=f"deploy-{number}"))
    audit.write(client, audit.AuditRecord(
        action="retire_planned", model=MODEL, version=None, actor="scheduler",
        reason="dry run: no version is due for retirement", dag_id=f"retire_{MODEL}", run_id="retire-dry-1",
        details={"dry_run": True, "versions": []}))

    run_id = monitoring_history.monitoring_run(client, config)
    now = pd.Timestamp(datetime.now(UTC)).floor("h")
    first = now - timedelta(hours=HOURS)
    hours, assessed, drift, approval = [], [], {}, {}
    rng = np.random.default_rng(7)
    for i in range(HOURS):
        hour = first + timedelta(hours=i)
        hours.append(hour.isoformat())
        if i in GAP_HOURS:
            continue
        last = i == HOURS - 1
        share, rate = _drift(i), _approval(i)
        kpis = {"approval_rate": rate, "repayment_rate": round(0.91 - 0.001 * (i % 5), 4),
                "default_precision": round(0.55 + 0.002 * (i % 4), 4)}
        drops = {k: round(BASELINE[k] - v, 6) for k, v in kpis.items()}
        findings = [Finding("data_drift", share, config.monitoring.drift.warning, f"{share:.0%} of the features drifted")] \
            if share >= config.monitoring.drift.warning else []
        level = "warning" if findings else "ok"
        issues = [DataQualityIssue(NON_FINITE, "annual_income", 3, 0.006, config.monitoring.data_quality_warning,
                                   "3 rows with a non-finite annual_income")] if last else []
        assessment = HourAssessment(
            MODEL, "2", hour.isoformat(), 400 + 10 * (i % 7), level, "seeded", healthy=not findings,
            drift={"share_drifted": share, "features": {"age": {"score": 0.02 * i}, "annual_income": {"score": 0.01}}},
            kpis={k: {"name": k, "value": v, "rows": 300} for k, v in kpis.items()}, baseline=dict(BASELINE),
            baseline_source="holdout", drops=drops, findings=findings, data_quality=issues)
        monitoring_history.log_hour(client, run_id, assessment, pd.Series(rng.gamma(2.0, 2.0, 400)))
        assessed.append(hour.isoformat())
        drift[hour.isoformat()] = share
        approval[hour.isoformat()] = rate
        if last:
            audit.write(client, audit.AuditRecord(
                action="alert.warning", model=MODEL, version="2", actor="scheduler", reason="data_drift",
                dag_id=f"monitor_{MODEL}", run_id="monitor-last",
                details={"hour": hour.isoformat(), "actions": ["slack"],
                         "findings": [{"name": f.name, "value": f.value, "threshold": f.threshold, "detail": f.detail}
                                      for f in findings]}))
    return Seeded(config=config, monitoring_run=run_id, hours=hours, assessed=assessed, drift=drift,
                  approval_rate=approval, last_hour=hours[-1], training_runs=runs)
