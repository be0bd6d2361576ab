"""Prometheus metrics of the monitored models: what the monitoring DAG recorded, read back from MLflow.

Nothing is measured or decided here. Every value of an hour is a metric point the hourly assessment
wrote to the model's monitoring run (:func:`include.monitoring.history.log_hour`), at the step of the
**latest assessed hour** (the highest step of its ``rows`` metric, which every assessed window writes);
a metric whose latest point belongs to an older hour (a feature not checked this hour, no online
request, a skipped hour's tier) is left out rather than shown with a stale value. Which versions are
live comes from the registry (aliases) and from the ``serving.triton`` tags the deployment writes from
Triton's repository index (:func:`include.promotion.rollout.record_serving`); what fired last, from the
cooldown's ``alert_state.*`` tags (:mod:`include.monitoring.cooldown`); thresholds, from the model's YAML.

:class:`MonitoringCollector` reads on every scrape (``collect``) and yields fresh ``GaugeMetricFamily``
objects: no global, mutable gauges. MLflow calls per scrape, for N models: one ``search_runs`` for every
monitoring run at once (the latest value and step of each metric, and the tags, come with it), and per
model ``get_experiment_by_name``, ``get_registered_model`` (aliases) and one ``search_model_versions``
(the versions Triton serves, only for a registered model): at most 3N + 1. The number of hours recorded
does not change that.

Every metric is a gauge (labels ``model`` and ``version``, the version that served the hour, unless
said otherwise):

=================================================  ==============================  ===============================================
metric                                             extra labels                    meaning
=================================================  ==============================  ===============================================
``modelops_hour_timestamp_seconds``                                                start of the latest assessed hour (Unix time)
``modelops_window_hours``                                                          hours that assessment covered (1 but for gaps)
``modelops_assessed_rows``                                                         predictions in the hour
``modelops_alert_level``                                                           0 ok, 1 warning, 2 critical (absent: skipped)
``modelops_alert_tier``                            ``tier``                        1 for the hour's tier, 0 for the others
``modelops_hour_healthy``                                                          1 healthy (no drift, KPI or data finding)
``modelops_cold_start``                                                            1 within the cold start after a deployment
``modelops_drift_share``                                                           share of the features that drifted (0..1)
``modelops_feature_drift_score``                   ``feature``                     the feature's drift test score
``modelops_kpi_value``                             ``kpi``                         the business KPI's value in the hour
``modelops_kpi_drop``                              ``kpi``                         baseline minus value (positive: worse)
``modelops_data_quality_issues``                   ``kind``                        rows, values or files concerned
``modelops_data_quality_column_issues``            ``kind``, ``column``            the same, per column
``modelops_online_latency_seconds``                ``quantile`` (0.5, 0.99)        online request latency in the hour
``modelops_drift_share_threshold``                 ``tier`` (no ``version``)       monitoring.drift.warning / .critical
``modelops_kpi_max_drop``                          ``kpi`` (no ``version``)        the KPI's max_drop
``modelops_alias_info``                            ``alias``, ``version``          1 per registry alias (champion, …)
``modelops_serving_info``                          ``server``, ``state``           1 per version Triton serves (live, standby)
``modelops_alert_last_fired_timestamp_seconds``    ``finding``, ``level``          the hour a finding last fired for
``modelops_metrics_read_success``                  (``model`` only)                1 when MLflow answered for the model, else 0
=================================================  ==============================  ===============================================
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from include.config import ModelConfig
from include.monitoring import history
from include.monitoring.assessment import LEVELS
from include.monitoring.cooldown import ALERT_STATE_PREFIX
from include.monitoring.data_quality import DATA_QUALITY, DATA_QUALITY_KINDS
from include.monitoring.kpis import KPI_PREFIX
from include.promotion.rollout import SERVING_TAG

log = logging.getLogger(__name__)

PREFIX = "modelops_"
SKIPPED = "skipped"
TIERS = (*LEVELS, SKIPPED)  # the values of modelops_alert_tier's ``tier`` label
SERVER = "triton"
UNLOADED = "unloaded"
LATENCY_QUANTILES = {"0.5": "latency_ms.p50", "0.99": "latency_ms.p99"}  # label -> monitoring-run metric (ms)
DRIFT_SHARE_KEY = "drift.share_drifted"
DRIFT_PREFIX = "drift."
KPI_DROP_PREFIX = "kpi_drop."

_HOUR = ("model", "version")
# name (without PREFIX): (HELP text, label names)
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "hour_timestamp_seconds": ("Start of the latest hour the monitoring DAG assessed (Unix time, UTC); version: the "
                               "version that served most of its predictions.", _HOUR),
    "window_hours": ("Hours the latest assessment covered (more than 1 when it assessed a gap at once).", _HOUR),
    "assessed_rows": ("Predictions in the latest assessed hour.", _HOUR),
    "alert_level": ("Alert tier of the latest assessed hour: 0 ok, 1 warning, 2 critical; absent when the hour was "
                    "skipped (fewer than monitoring.min_rows predictions and no finding).", _HOUR),
    "alert_tier": ("1 for the latest assessed hour's tier (ok, warning, critical, skipped), 0 for the others.",
                   (*_HOUR, "tier")),
    "hour_healthy": ("1 when the latest assessed hour had no drift, KPI or data-quality condition (what a KPI "
                     "baseline may use), else 0.", _HOUR),
    "cold_start": ("1 when the latest assessed hour was within monitoring.cold_start_days of the version's "
                   "deployment (drift is not alerted then), else 0.", _HOUR),
    "drift_share": ("Share of the features whose drift test rejected the reference profile in the latest assessed "
                    "hour (0..1; a feature not checked counts as not drifted).", _HOUR),
    "feature_drift_score": ("Score of the feature's drift test in the latest assessed hour: a p-value for ks, "
                            "chisquare and z (drift when low), a distance for wasserstein and jensenshannon (drift "
                            "when high).", (*_HOUR, "feature")),
    "kpi_value": ("Business KPI of the latest assessed hour (monitoring.kpis; outcome KPIs on the labels arrived "
                  "so far).", (*_HOUR, "kpi")),
    "kpi_drop": ("How far the KPI fell below the version's baseline in the latest assessed hour (baseline minus "
                 "value; positive is worse).", (*_HOUR, "kpi")),
    "data_quality_issues": ("Rows, values or files concerned by each data-quality kind in the latest assessed hour "
                            "(0 when none).", (*_HOUR, "kind")),
    "data_quality_column_issues": ("Rows or values concerned per data-quality kind and column in the latest "
                                   "assessed hour (only columns with some).", (*_HOUR, "kind", "column")),
    "online_latency_seconds": ("Online request latency (client round trip to Triton) in the latest assessed hour, "
                               "per quantile; absent when the hour had no online request.", (*_HOUR, "quantile")),
    "drift_share_threshold": ("Share of drifted features at which the hour warns (tier=warning) or, with a KPI "
                              "drop, is critical (tier=critical): monitoring.drift.", ("model", "tier")),
    "kpi_max_drop": ("The drop of the KPI below its baseline that warns (and, with drift, is critical): "
                     "monitoring.kpis[].max_drop.", ("model", "kpi")),
    "alias_info": ("1 per alias of the registered model (champion: live; challenger; previous_champion), labelled "
                   "with the version it points at.", ("model", "alias", "version")),
    "serving_info": ("1 per version the model server serves (state live: answers requests without a version; "
                     "standby), as the last deployment read it from Triton's repository index.",
                     ("model", "version", "server", "state")),
    "alert_last_fired_timestamp_seconds": ("Start of the hour (Unix time) a monitoring finding last fired for, with "
                                           "that hour's tier and version (the cooldown's record).",
                                           ("model", "version", "finding", "level")),
    "metrics_read_success": ("1 when MLflow answered every read for the model in this scrape, 0 when one failed "
                             "(its other metrics are then missing or partial).", ("model",)),
}


@dataclass(frozen=True)
class HourRecord:
    """The points the monitoring run holds for one model's latest assessed hour.

    ``step``: hours since the Unix epoch (:func:`include.monitoring.windows.hour_step`); ``values``:
    MLflow metric key -> value, only the keys whose latest point is at ``step``.
    """

    step: int
    values: Mapping[str, float]

    @property
    def start_seconds(self) -> float:
        """The hour's start, Unix seconds."""
        return float(self.step * 3600)

    @property
    def version(self) -> str:
        """The version that served the hour (``model_version``), or ``""`` when none was recorded."""
        value = self.values.get("model_version")
        return str(int(value)) if value is not None else ""

    @property
    def tier(self) -> str:
        """``ok``, ``warning``, ``critical``, or ``skipped`` (no ``alert_level`` point: see :func:`history.log_hour`)."""
        level = self.values.get("alert_level")
        return LEVELS[int(level)] if level is not None and 0 <= int(level) < len(LEVELS) else SKIPPED


def latest_hour(points: Iterable[Any]) -> HourRecord | None:
    """The latest assessed hour from a run's latest metric points (objects with ``key``, ``value``, ``step``).

    MLflow keeps, per key, the point with the highest (step, timestamp, value); the hour is the step of
    ``rows``, which :func:`include.monitoring.history.log_hour` writes for every assessed window. None when
    the run holds no assessed hour.
    """
    points = list(points)
    rows = next((p for p in points if p.key == "rows"), None)
    if rows is None:
        return None
    return HourRecord(int(rows.step), {p.key: float(p.value) for p in points if int(p.step) == int(rows.step)})


@dataclass
class ModelReading:
    """What one scrape read for one model; ``errors``: the MLflow reads that failed (then 0 in read_success)."""

    config: ModelConfig
    hour: HourRecord | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    serving: dict[str, str] = field(default_factory=dict)  # version -> live / standby
    alerts: dict[str, dict] = field(default_factory=dict)  # finding -> {"hour", "level", "value", "version"}
    errors: list[str] = field(default_factory=list)


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def _alert_state(tags: Mapping[str, str]) -> dict[str, dict]:
    """The cooldown's ``alert_state.<finding>`` tags (:func:`include.monitoring.cooldown.record_fired`), parsed."""
    out = {}
    for key, value in tags.items():
        if key.startswith(ALERT_STATE_PREFIX):
            try:
                out[key.removeprefix(ALERT_STATE_PREFIX)] = json.loads(value)
            except ValueError:
                log.warning("monitoring run tag %s is not JSON: %r", key, value[:200])
    return out


def read_models(client: MlflowClient, configs: Mapping[str, ModelConfig]) -> list[ModelReading]:
    """One :class:`ModelReading` per config, in name order: at most 3N + 1 MLflow calls (module docstring).

    An MLflow error is recorded on the reading it concerns (all of them for the one ``search_runs``)
    and logged, never raised: one model's failure leaves the others' metrics.
    """
    readings = {name: ModelReading(config) for name, config in sorted(configs.items())}
    wanted: dict[str, str] = {}  # model -> its experiment id
    for name, reading in readings.items():
        try:
            experiment = client.get_experiment_by_name(reading.config.experiment_name)
        except MlflowException as exc:
            reading.errors.append(f"experiment: {exc.message}")
            continue
        if experiment is not None:
            wanted[name] = experiment.experiment_id
    if wanted:
        try:
            # Ordered as tracking.find_run orders them (MLflow's default): the first run per model is the one
            # history.monitoring_run writes to.
            runs = client.search_runs(sorted(set(wanted.values())), filter_string=f"tags.`{history.KIND_TAG}` = 'monitoring'")
        except MlflowException as exc:
            runs = []
            for name in wanted:
                readings[name].errors.append(f"monitoring runs: {exc.message}")
        seen: set[str] = set()
        for run in runs:
            name = run.data.tags.get(history.MODEL_TAG)
            if name in wanted and name not in seen and run.info.experiment_id == wanted[name]:
                seen.add(name)
                readings[name].hour = latest_hour(run.data.to_proto().metrics)
                readings[name].alerts = _alert_state(run.data.tags)
    for reading in readings.values():
        model = reading.config.registered_model_name
        try:
            aliases = client.get_registered_model(model).aliases
            reading.aliases = {str(alias): str(version) for alias, version in aliases.items()}
        except MlflowException as exc:
            if not _not_found(exc):
                reading.errors.append(f"registered model: {exc.message}")
            continue  # not registered: no aliases, no versions served
        try:
            served = client.search_model_versions(
                f"name = '{model}' AND tags.`{SERVING_TAG}` != '{UNLOADED}'")
            reading.serving = {str(v.version): v.tags[SERVING_TAG] for v in served}
        except MlflowException as exc:
            reading.errors.append(f"served versions: {exc.message}")
    for name, reading in readings.items():
        for error in reading.errors:
            log.warning("metrics: MLflow failed for model %s: %s", name, error)
    return list(readings.values())


def families(readings: Iterable[ModelReading]) -> list[GaugeMetricFamily]:
    """The metric families (every one of :data:`GAUGES`, empty ones too) of what :func:`read_models` read."""
    out = {name: GaugeMetricFamily(f"{PREFIX}{name}", text, labels=list(labels))
           for name, (text, labels) in GAUGES.items()}

    def put(name: str, labels: Iterable[str], value: float) -> None:
        out[name].add_metric(list(labels), float(value))

    for reading in readings:
        config, model = reading.config, reading.config.name
        put("metrics_read_success", [model], 0.0 if reading.errors else 1.0)
        put("drift_share_threshold", [model, "warning"], config.monitoring.drift.warning)
        put("drift_share_threshold", [model, "critical"], config.monitoring.drift.critical)
        for kpi in config.monitoring.kpis:
            put("kpi_max_drop", [model, kpi.name], kpi.max_drop)
        for alias, version in sorted(reading.aliases.items()):
            put("alias_info", [model, alias, version], 1.0)
        for version, state in sorted(reading.serving.items()):
            put("serving_info", [model, version, SERVER, state], 1.0)
        for finding, state in sorted(reading.alerts.items()):
            try:
                fired = pd.Timestamp(state["hour"]).timestamp()
            except (KeyError, TypeError, ValueError):
                continue
            put("alert_last_fired_timestamp_seconds",
                [model, str(state.get("version") or ""), finding, str(state.get("level", ""))], fired)
        if reading.hour is not None:
            _hour_samples(put, model, reading.hour)
    return list(out.values())


def _hour_samples(put, model: str, hour: HourRecord) -> None:
    """The samples of the latest assessed hour (the ``_HOUR``-labelled families)."""
    values, at = hour.values, [model, hour.version]
    put("hour_timestamp_seconds", at, hour.start_seconds)
    put("window_hours", at, values.get(history.WINDOW_METRIC, 1.0))
    put("assessed_rows", at, values["rows"])
    if "alert_level" in values:
        put("alert_level", at, values["alert_level"])
    for tier in TIERS:
        put("alert_tier", [*at, tier], 1.0 if tier == hour.tier else 0.0)
    for key, name in (("healthy", "hour_healthy"), ("cold_start", "cold_start"), (DRIFT_SHARE_KEY, "drift_share")):
        if key in values:
            put(name, at, values[key])
    for quantile, key in LATENCY_QUANTILES.items():
        if key in values:
            put("online_latency_seconds", [*at, quantile], values[key] / 1000.0)
    kinds = {f"{DATA_QUALITY}.{kind}": kind for kind in DATA_QUALITY_KINDS}
    for key, value in sorted(values.items()):
        if key in kinds:
            put("data_quality_issues", [*at, kinds[key]], value)
        elif key.startswith(f"{DATA_QUALITY}."):
            kind = next((k for k in DATA_QUALITY_KINDS if key.startswith(f"{DATA_QUALITY}.{k}.")), None)
            if kind is not None:
                put("data_quality_column_issues", [*at, kind, key.removeprefix(f"{DATA_QUALITY}.{kind}.")], value)
        elif key.startswith(DRIFT_PREFIX) and key != DRIFT_SHARE_KEY:
            put("feature_drift_score", [*at, key.removeprefix(DRIFT_PREFIX)], value)
        elif key.startswith(KPI_PREFIX):
            put("kpi_value", [*at, key.removeprefix(KPI_PREFIX)], value)
        elif key.startswith(KPI_DROP_PREFIX):
            put("kpi_drop", [*at, key.removeprefix(KPI_DROP_PREFIX)], value)


class MonitoringCollector(Collector):
    """A Prometheus collector that reads ``configs``' models from MLflow on every scrape (:func:`read_models`).

    ``client``: the MLflow client (tracking and registry); ``configs``: model name -> config, the models to
    expose. Registering it does not read MLflow (no ``describe``; the registry does not auto-describe).
    """

    def __init__(self, client: MlflowClient, configs: Mapping[str, ModelConfig]) -> None:
        self.client = client
        self.configs = dict(configs)

    def collect(self) -> Iterator[Metric]:
        yield from families(read_models(self.client, self.configs))


def registry(client: MlflowClient, configs: Mapping[str, ModelConfig]) -> CollectorRegistry:
    """A registry holding one :class:`MonitoringCollector` (and nothing else: no process metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MonitoringCollector(client, configs))
    return reg


def exposition(client: MlflowClient, configs: Mapping[str, ModelConfig]) -> bytes:
    """The models' metrics in the Prometheus text format, as ``prometheus_client.generate_latest`` writes it
    (serve it as ``CONTENT_TYPE_LATEST``, text format 1.0.0; every name here is a legacy one, so the bytes are
    also valid text format 0.0.4 for older scrapers)."""
    return generate_latest(registry(client, configs))
