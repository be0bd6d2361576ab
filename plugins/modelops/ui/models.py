"""Response bodies of the Model Ops view's data routes (:mod:`modelops.ui.routes`).

Times are UTC, ISO 8601: ledger times as the ledger writes them (``2026-11-20T10:00:00.000000Z``),
monitored hours as their start (``2026-11-20T10:00:00+00:00``). Versions are MLflow's version numbers,
as text. Series of the monitoring charts are lists aligned with :attr:`MonitoringSeries.hours`; ``null``
where the hour was not assessed or the value was not recorded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from modelops.governance.models import LedgerRecord, Lineage

ServingState = Literal["serving", "not_serving", "unreachable"]
Level = Literal["ok", "warning", "critical", "skipped"]


class AliasPointer(BaseModel):
    """Where one registry alias points now (MLflow), and since when (the ledger's open term of it)."""

    alias: str = Field(description="champion, previous_champion or challenger.")
    version: str | None = Field(description="The version it points at; null: the alias is not set.")
    since: str | None = Field(None, description="When the ledger recorded the move to this version (UTC).")
    set_by: str | None = Field(None, description="Who moved it there (the ledger's actor).")
    reason: str | None = Field(None, description="Why (the ledger's reason).")
    mlflow_url: str | None = Field(None, description="The version's page in the MLflow UI (null: no MLflow UI).")


class TritonStatus(BaseModel):
    """What Triton serves for the model right now, asked live (``POST /v2/repository/index``)."""

    state: ServingState = Field(description="serving: a version is READY; not_serving: Triton answered but no version "
                                            "is READY; unreachable: Triton did not answer.")
    url: str = Field(description="The Triton endpoint asked (the triton_default connection, else MODELOPS_TRITON_URL).")
    live_version: str | None = Field(description="The version answering requests (the highest READY one, as the "
                                                 "deployment records it).")
    versions: dict[str, str] = Field(default_factory=dict, description="Every version Triton knows: {version: state}.")
    champion: str | None = Field(description="The version behind @champion in MLflow.")
    agrees_with_champion: bool | None = Field(description="live_version == champion; null when Triton is unreachable.")
    detail: str = Field(description="In words, for the page (the error when unreachable).")


class KpiSeries(BaseModel):
    """One business KPI per monitored hour, with the baseline it was judged against and its critical line."""

    name: str
    description: str
    max_drop: float = Field(description="Critical when the KPI falls this far (absolute) below its baseline (config).")
    values: list[float | None] = Field(description="The KPI per hour (`kpi.<name>` on the monitoring run).")
    baselines: list[float | None] = Field(description="The baseline in force that hour: value + `kpi_drop.<name>`.")
    thresholds: list[float | None] = Field(description="baseline - max_drop: below this line the KPI is critical.")
    current_baseline: float | None = Field(description="The champion's baseline now: its frozen healthy-days baseline "
                                                       "(version tag), else its training run's holdout KPI.")
    baseline_source: Literal["healthy_days", "holdout", "none"]


class MonitoringSeries(BaseModel):
    """The last ``len(hours)`` hours up to the latest monitored one, from the model's monitoring run in MLflow."""

    run_id: str | None = Field(description="The monitoring run; null: the model was never monitored.")
    mlflow_url: str | None = Field(None, description="The monitoring run in the MLflow UI.")
    hours: list[str] = Field(description="Start of each hour (UTC), oldest first; the last is the latest monitored hour.")
    assessed: list[bool] = Field(description="Whether the hour was assessed (its `rows` metric exists).")
    rows: list[float | None] = Field(description="Predictions in the hour.")
    drift_share: list[float | None] = Field(description="Share of the features that drifted (`drift.share_drifted`).")
    drift_warning: float = Field(description="monitoring.drift.warning of the config.")
    drift_critical: float = Field(description="monitoring.drift.critical of the config.")
    latency_p99_ms: list[float | None] = Field(description="Online requests' p99 latency (ms); null where not recorded "
                                                           "(batch-only hours).")
    levels: list[Level | None] = Field(description="The hour's alert tier.")
    versions: list[str | None] = Field(description="The version that served the hour.")
    kpis: list[KpiSeries]


class Condition(BaseModel):
    """One condition of the latest monitored hour that counts toward (or was recorded with) its tier."""

    name: str = Field(description="data_drift, kpi.<name>, data_quality.<kind>, critical, personal_data…")
    value: float
    threshold: float | None = Field(description="The threshold it crossed; null for a recorded data-quality count.")
    detail: str
    source: Literal["alert", "metrics"] = Field(description="alert: the alert sent for that hour (its ledger record); "
                                                            "metrics: read from the hour's metrics.")


class AlertStatus(BaseModel):
    """The latest monitored hour's tier and the conditions open in it."""

    hour: str | None = Field(description="The latest monitored hour (UTC); null: never monitored.")
    level: Level | None = Field(description="Its alert tier.")
    cold_start: bool | None = Field(description="Whether the hour was in the version's cold start (drift not alerted).")
    conditions: list[Condition]
    alerted_at: str | None = Field(None, description="When the alert for that hour was recorded (ledger), if one was sent.")


class VersionSummary(BaseModel):
    """One version of the model in the registry, for the versions table and the rollback choice."""

    version: str
    created: int | None = Field(description="Registration time, Unix milliseconds (MLflow).")
    run_id: str | None
    aliases: list[str]
    gates: str | None = Field(description="The promotion gates' result (`gates.result` tag).")
    retired: bool
    quarantined: bool
    serving: str | None = Field(description="The `serving.triton` tag the last deployment wrote (live, standby…).")
    mlflow_url: str | None = None


class Actions(BaseModel):
    """The DAGs the page's buttons start through Airflow's REST API, and what they are started with."""

    train_dag_id: str
    rollback_dag_id: str
    retire_dag_id: str
    default_dataset_uri: str = Field(description="dataset.uri of the config: the training form's default.")


class ModelStatus(BaseModel):
    """Everything the Model Ops view shows for one configured model."""

    model: str
    description: str
    owner: str
    registered: bool = Field(description="Whether MLflow's registry has the model.")
    mlflow_url: str | None = Field(None, description="The registered model's page in the MLflow UI.")
    aliases: list[AliasPointer] = Field(description="@champion, @previous_champion, @challenger, in that order.")
    triton: TritonStatus
    monitoring: MonitoringSeries
    alerts: AlertStatus
    ledger: list[LedgerRecord] = Field(description="The latest promotions, deployments, rollbacks, approvals and "
                                                   "retirement steps, newest first.")
    versions: list[VersionSummary] = Field(description="The registry's versions, newest first.")
    actions: Actions


class MlflowLinks(BaseModel):
    """Pages of the MLflow UI about one version; null when MLflow has no web UI (a local SQLite store)."""

    version: str | None
    training_run: str | None
    experiment: str | None


class VersionLineage(BaseModel):
    """A version's lineage (:func:`include.governance.history.version_lineage`) with links to the MLflow UI."""

    lineage: Lineage
    links: MlflowLinks
