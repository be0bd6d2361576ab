"""What the Model Ops view shows about one model, read from the systems of record; nothing here writes.

* aliases: MLflow's registry (where ``@champion``, ``@previous_champion``, ``@challenger`` point), with the
  ledger's open term of each (since when, by whom, why: :func:`include.governance.history.alias_timeline`);
* serving: Triton, asked live (``POST /v2/repository/index``); the live version is the highest READY one,
  as :func:`include.promotion.rollout.record_serving` decides it (read here without writing its tags);
* monitoring: the model's monitoring run in MLflow (:mod:`include.monitoring.history` writes one metric
  point per assessed hour, step = hours since the epoch): rows, drift share, each KPI with the baseline it
  was judged against (``kpi.<name>`` + ``kpi_drop.<name>``), p99 latency, the tier (``alert_level``);
* open conditions: the latest hour's alert as the ledger recorded it (``alert.<tier>``), else what its
  metrics show (drift over the warning share outside the cold start, a KPI drop beyond ``max_drop``,
  data-quality counts);
* history: the ledger's latest promotions, deployments, rollbacks, approvals and retirement steps.

The monitoring run is looked up, never created (:func:`include.tracking.find_run`), and the KPI baseline
is read as it stands (a frozen ``monitoring.kpi_baseline`` tag, else the holdout KPIs of the training run),
never frozen from here (:func:`include.monitoring.history.kpi_baseline` would).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from include import dag_ids, tracking
from include.config import ModelConfig
from include.governance import history
from include.governance.ledger import Ledger
from include.links import MlflowUi
from include.monitoring.assessment import LEVELS
from include.monitoring.data_quality import DATA_QUALITY, DATA_QUALITY_KINDS
from include.monitoring.history import BASELINE_TAG, KIND_TAG, MODEL_TAG
from include.monitoring.kpis import KPI_PREFIX
from include.promotion import registry, rollout
from modelops.ui import HOURS
from modelops.ui.models import (
    Actions,
    AlertStatus,
    AliasPointer,
    Condition,
    KpiSeries,
    MlflowLinks,
    ModelStatus,
    MonitoringSeries,
    TritonStatus,
    VersionSummary,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger("modelops.ui")

LEDGER_ROWS = 12  # ledger records the history table shows
ALIASES = (registry.CHAMPION, registry.PREVIOUS_CHAMPION, registry.CHALLENGER)
LEDGER_ACTIONS = ("promote", "rollback", rollout.DEPLOY_ACTION, rollout.DEPLOY_FAILED_ACTION,
                  *history.APPROVAL_ACTIONS, *history.RETIREMENT_ACTIONS)
ALERT_ACTIONS = tuple(f"alert.{level}" for level in LEVELS)
VERSION_PAGE = 200  # newest versions listed


# --- links to the MLflow UI ---------------------------------------------------------------------------


def lineage_links(ui: MlflowUi | None, lineage: Mapping) -> MlflowLinks:
    """Links for a :func:`include.governance.history.version_lineage` dict: the version, its training run
    and that run's experiment (all None without a web UI: ``ui`` None)."""
    run = lineage.get("training_run") or {}
    experiment, run_id = run.get("experiment_id"), run.get("id")
    return MlflowLinks(version=ui.model_version(lineage["model"], lineage["version"]) if ui else None,
                       training_run=ui.run(experiment, run_id) if ui and experiment and run_id else None,
                       experiment=ui.experiment(experiment) if ui and experiment else None)


# --- Triton -------------------------------------------------------------------------------------------


def triton_status(url: str, model: str, champion: str | None, index: Sequence[Mapping] | None,
                  error: str | None = None) -> TritonStatus:
    """What Triton serves for ``model``, from its repository ``index`` (None with ``error``: it did not answer).

    Live is the highest READY version (the one answering requests without a version), as the deployment
    records it; ``agrees_with_champion`` compares it with ``champion`` (None when Triton is unreachable).
    """
    if index is None:
        return TritonStatus(state="unreachable", url=url, live_version=None, champion=champion,
                            agrees_with_champion=None, detail=f"Triton is unreachable: {error or 'no answer'}")
    states = rollout.triton_states(index, model)
    ready = rollout.ready_versions(states)
    live = ready[-1] if ready else None
    agrees = live == champion
    if live is None:
        known = ", ".join(f"v{v} {s or 'unknown'}" for v, s in sorted(states.items()))
        detail = (f"Triton answers, but no version of {model} is READY"
                  + (f" (known: {known})" if states else "")
                  + (f"; @champion is v{champion}" if champion else ""))
    elif champion is None:
        detail = f"Triton serves v{live}, but the model has no @champion"
    elif agrees:
        detail = f"Triton serves v{live}, the @champion"
    else:
        detail = f"Triton serves v{live}, but @champion is v{champion}: a deployment or rollback is pending or failed"
    return TritonStatus(state="serving" if live else "not_serving", url=url, live_version=live,
                        versions=dict(sorted(states.items())), champion=champion, agrees_with_champion=agrees,
                        detail=detail)


def probe_triton(url: str, model: str, champion: str | None, *, timeout: float = 3.0) -> TritonStatus:
    """Ask the Triton server at ``url`` now (one request, ``timeout`` seconds); never raises for Triton's errors."""
    from include.serving.triton.client import TritonClient, TritonError

    try:
        with TritonClient(url, timeout=timeout) as triton:
            index = triton.repository_index()
    except (TritonError, ValueError) as exc:  # ValueError: an answer that is not JSON
        log.info("ui: Triton at %s did not answer for %s: %s", url, model, exc)
        return triton_status(url, model, champion, None, str(exc))
    return triton_status(url, model, champion, index)


# --- monitoring ---------------------------------------------------------------------------------------


def _hour(step: int) -> str:
    """The start of the hour with MLflow step ``step`` (hours since the epoch), as the assessment writes it."""
    return datetime.fromtimestamp(step * 3600, UTC).isoformat()


def _series(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """``{step: value}`` of metric ``key`` (the last write of a step wins, as :mod:`include.monitoring.history` reads it)."""
    from mlflow.exceptions import MlflowException

    try:
        points = client.get_metric_history(run_id, key)
    except MlflowException:
        return {}
    return {p.step: p.value for p in sorted(points, key=lambda p: p.timestamp)}


def current_baseline(client: MlflowClient, config: ModelConfig, version: str | None) -> tuple[dict[str, float], str]:
    """The KPI baseline of ``version`` as it stands: the frozen healthy-days baseline (``monitoring.kpi_baseline``
    tag), else the holdout KPIs of its training run; ``({}, "none")`` when neither (or no version)."""
    if version is None:
        return {}, "none"
    mv = client.get_model_version(config.name, version)
    if BASELINE_TAG in (mv.tags or {}):
        return dict(json.loads(mv.tags[BASELINE_TAG]).get("kpis", {})), "healthy_days"
    metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    holdout = {k.name: metrics[f"{KPI_PREFIX}{k.name}"] for k in config.monitoring.kpis
               if f"{KPI_PREFIX}{k.name}" in metrics}
    return holdout, "holdout" if holdout else "none"


def monitoring_series(client: MlflowClient, config: ModelConfig, run_id: str | None, *, champion: str | None,
                      ui: MlflowUi | None, hours: int = HOURS) -> MonitoringSeries:
    """The ``hours`` hours up to the latest monitored one (unassessed hours inside them are null), from the
    monitoring run ``run_id`` (None: never monitored: empty series)."""
    mon = config.monitoring
    baseline, source = current_baseline(client, config, champion)
    empty_kpis = [KpiSeries(name=k.name, description=k.description, max_drop=k.max_drop, values=[], baselines=[],
                            thresholds=[], current_baseline=baseline.get(k.name), baseline_source=source)
                  for k in mon.kpis]
    rows = _series(client, run_id, "rows") if run_id else {}
    if not rows:
        return MonitoringSeries(run_id=run_id, hours=[], assessed=[], rows=[], drift_share=[],
                                drift_warning=mon.drift.warning, drift_critical=mon.drift.critical, latency_p99_ms=[],
                                levels=[], versions=[], kpis=empty_kpis)
    last = max(rows)
    steps = list(range(last - hours + 1, last + 1))

    def aligned(series: Mapping[int, float]) -> list[float | None]:
        return [series.get(s) for s in steps]

    level_points = _series(client, run_id, "alert_level")
    levels: list[str | None] = []
    for s in steps:
        if s not in rows:
            levels.append(None)
        elif s in level_points and 0 <= int(level_points[s]) < len(LEVELS):
            levels.append(LEVELS[int(level_points[s])])
        else:
            levels.append("skipped")  # assessed, but too few rows to decide anything
    served = _series(client, run_id, "model_version")
    kpis = []
    for kpi in mon.kpis:
        values = _series(client, run_id, f"{KPI_PREFIX}{kpi.name}")
        drops = _series(client, run_id, f"kpi_drop.{kpi.name}")
        base = {s: values[s] + drops[s] for s in values if s in drops}
        kpis.append(KpiSeries(
            name=kpi.name, description=kpi.description, max_drop=kpi.max_drop, values=aligned(values),
            baselines=aligned(base), thresholds=aligned({s: b - kpi.max_drop for s, b in base.items()}),
            current_baseline=baseline.get(kpi.name), baseline_source=source))
    experiment_id = client.get_run(run_id).info.experiment_id
    return MonitoringSeries(
        run_id=run_id, mlflow_url=ui.run(experiment_id, run_id) if ui and experiment_id and run_id else None,
        hours=[_hour(s) for s in steps],
        assessed=[s in rows for s in steps], rows=aligned(rows),
        drift_share=aligned(_series(client, run_id, "drift.share_drifted")),
        drift_warning=mon.drift.warning, drift_critical=mon.drift.critical,
        latency_p99_ms=aligned(_series(client, run_id, "latency_ms.p99")), levels=levels,
        versions=[str(int(served[s])) if s in served else None for s in steps], kpis=kpis)


def _same_hour(a: object, b: str) -> bool:
    try:
        return datetime.fromisoformat(str(a).replace("Z", "+00:00")) == datetime.fromisoformat(b)
    except ValueError:
        return False


def alert_status(client: MlflowClient, config: ModelConfig, series: MonitoringSeries, ledger: Ledger) -> AlertStatus:
    """The latest monitored hour's tier and its open conditions: the findings of the alert sent for it (its
    ledger record), and what its metrics show (:mod:`include.monitoring.assessment`'s rules, read back)."""
    if not series.hours:
        return AlertStatus(hour=None, level=None, cold_start=None, conditions=[])
    hour, level = series.hours[-1], series.levels[-1]
    conditions: dict[str, Condition] = {}
    alerted_at = None
    for entry in reversed(ledger.records(model=config.name, actions=ALERT_ACTIONS)):
        if _same_hour(entry.details.get("hour"), hour):
            alerted_at = entry.at
            for finding in entry.details.get("findings", []):
                conditions[finding["name"]] = Condition(
                    name=finding["name"], value=float(finding["value"]), threshold=float(finding["threshold"]),
                    detail=finding.get("detail", ""), source="alert")
            break
    run_id = series.run_id
    cold_points = _series(client, run_id, "cold_start") if run_id else {}
    step = max(cold_points) if cold_points else None
    cold = bool(cold_points[step]) if step is not None and _hour(step) == hour else None
    mon = config.monitoring
    share = series.drift_share[-1]
    if share is not None and share >= mon.drift.warning and not cold and "data_drift" not in conditions:
        conditions["data_drift"] = Condition(
            name="data_drift", value=share, threshold=mon.drift.warning, source="metrics",
            detail=f"{share:.0%} of the features drifted (warning at {mon.drift.warning:.0%}, "
                   f"critical at {mon.drift.critical:.0%} with a KPI drop)")
    for kpi in series.kpis:
        value, base = kpi.values[-1], kpi.baselines[-1]
        name = f"{KPI_PREFIX}{kpi.name}"
        if value is not None and base is not None and base - value >= kpi.max_drop and name not in conditions:
            conditions[name] = Condition(name=name, value=base - value, threshold=kpi.max_drop, source="metrics",
                                         detail=f"{kpi.name} {value:.4f} vs baseline {base:.4f}: "
                                                f"dropped {base - value:.4f} (max_drop {kpi.max_drop})")
    if run_id:
        metrics = client.get_run(run_id).data.metrics  # every assessed hour writes every kind: the latest is this hour
        for kind in DATA_QUALITY_KINDS:
            name = f"{DATA_QUALITY}.{kind}"
            count = metrics.get(name, 0.0)
            if count > 0 and name not in conditions:
                conditions[name] = Condition(name=name, value=count, threshold=None, source="metrics",
                                             detail=f"{count:g} rows, values or files concerned "
                                                    f"(recorded; it counts toward the tier past its threshold)")
    return AlertStatus(hour=hour, level=level, cold_start=cold, conditions=list(conditions.values()),
                       alerted_at=alerted_at)


# --- the whole model ----------------------------------------------------------------------------------


def _flag(value: str | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes") if value is not None else False


def model_status(client: MlflowClient, config: ModelConfig, *, ledger: Ledger, ui: MlflowUi | None, triton_url: str,
                 hours: int = HOURS, ledger_rows: int = LEDGER_ROWS, triton_timeout: float = 3.0) -> ModelStatus:
    """Everything the view shows for ``config``'s model (see the module docstring).

    Raises MLflow's ``MlflowException`` when MLflow cannot be read and
    :class:`include.governance.ledger.LedgerError` when the ledger cannot; Triton's failures are a state.
    """
    from mlflow.exceptions import MlflowException

    name = config.name
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        registered = None
    pointing = {a: str(v) for a, v in (registered.aliases or {}).items()} if registered else {}
    terms = {t.alias: t for t in history.alias_timeline(name, ledger=ledger) if t.end is None}
    aliases = []
    for alias in ALIASES:
        version = pointing.get(alias)
        term = terms.get(alias) if version is not None and terms.get(alias) and terms[alias].version == version else None
        aliases.append(AliasPointer(alias=alias, version=version, since=term.start if term else None,
                                    set_by=term.actor if term else None, reason=term.reason if term else None,
                                    mlflow_url=ui.model_version(name, version) if ui and version else None))
    champion = pointing.get(registry.CHAMPION)

    versions: list[VersionSummary] = []
    if registered is not None:
        found = client.search_model_versions(f"name = '{name}'", max_results=VERSION_PAGE)
        by_version: dict[str, list[str]] = {}
        for alias, version in pointing.items():
            by_version.setdefault(version, []).append(alias)
        for mv in sorted(found, key=lambda v: int(v.version), reverse=True):
            tags = mv.tags or {}
            versions.append(VersionSummary(
                version=str(mv.version), created=mv.creation_timestamp, run_id=mv.run_id,
                aliases=sorted(by_version.get(str(mv.version), [])), gates=tags.get(rollout.GATES_TAG),
                retired=_flag(tags.get(rollout.RETIRED_TAG)), quarantined=_flag(tags.get(rollout.QUARANTINE_TAG)),
                serving=tags.get(rollout.SERVING_TAG), mlflow_url=ui.model_version(name, str(mv.version)) if ui else None))

    run_id = tracking.find_run(client, config.experiment_name, {KIND_TAG: "monitoring", MODEL_TAG: name})
    series = monitoring_series(client, config, run_id, champion=champion, ui=ui, hours=hours)
    records = history.model_history(name, actions=LEDGER_ACTIONS, ledger=ledger)[-ledger_rows:]
    return ModelStatus(
        model=name, description=config.description, owner=config.owner, registered=registered is not None,
        mlflow_url=ui.model(name) if ui and registered is not None else None, aliases=aliases,
        triton=probe_triton(triton_url, name, champion, timeout=triton_timeout),
        monitoring=series, alerts=alert_status(client, config, series, ledger),
        ledger=[e.as_dict() for e in reversed(records)], versions=versions,
        actions=Actions(train_dag_id=dag_ids.dag_id(dag_ids.Stage.TRAIN, name),
                        rollback_dag_id=dag_ids.dag_id(dag_ids.Stage.ROLLBACK, name),
                        retire_dag_id=dag_ids.dag_id(dag_ids.Stage.RETIRE, name),
                        default_dataset_uri=config.dataset.uri))
