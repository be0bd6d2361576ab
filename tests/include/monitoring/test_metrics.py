"""Prometheus metrics read back from a real MLflow store (SQLite) that the project's own monitoring code wrote.

The hours are written by :func:`include.monitoring.history.log_hour` (and, end to end, by
:func:`include.monitoring.hourly.assess_window` on a real inference log); the cooldown's record, the
serving tags and the aliases by the project's own functions. The exposition is parsed with
``prometheus_client.parser`` and compared with what was logged.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from include.config import get_model_config
from include.demo.datagen import generate_batch
from include.monitoring import cooldown, history, inference_log, metrics
from include.monitoring.assessment import HourAssessment
from include.monitoring.data_quality import DATA_QUALITY_KINDS, DataQualityIssue
from include.monitoring.findings import Finding
from include.monitoring.hourly import assess_window
from include.monitoring.reference_profile import log_profile
from include.promotion import rollout
from tests.servers import free_port

CFG = get_model_config("credit_approval")
FEATURES = [c.name for c in CFG.dataset.features]
H1 = pd.Timestamp("2026-10-01T08:00Z")
H2, H3 = H1 + pd.Timedelta(hours=1), H1 + pd.Timedelta(hours=2)


def _config(name: str):
    return CFG.model_copy(update={"name": name})


def _scrape(client: MlflowClient, *configs) -> dict[str, dict[frozenset, float]]:
    """``{metric name: {frozenset(label items): value}}`` of the exposition, as Prometheus would parse it."""
    text = metrics.exposition(client, {c.name: c for c in configs}).decode()
    out: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        for sample in family.samples:
            out.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


def _labels(**labels: str) -> frozenset:
    return frozenset(labels.items())


def _hour(model: str, version: str, hour: pd.Timestamp, level: str, *, rows: int = 400, scores=None,
          share: float | None = None, kpis=None, drops=None, issues=(), healthy=True) -> HourAssessment:
    drift = None if share is None else {"share_drifted": share,
                                        "features": {f: {"score": s} for f, s in (scores or {}).items()}}
    return HourAssessment(model, version, hour.isoformat(), rows, level, "test", healthy=healthy, drift=drift,
                          kpis={k: {"name": k, "value": v, "rows": rows} for k, v in (kpis or {}).items()},
                          drops=dict(drops or {}), data_quality=list(issues))


# --- the latest hour, as logged ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged(client: MlflowClient) -> dict[str, Any]:
    """Three hours of model ``metrics_model`` (v1, then v2), its aliases, Triton's versions and a fired alert."""
    config = _config("metrics_model")
    run_id = history.monitoring_run(client, config)
    first = {f: 0.5 + i / 100 for i, f in enumerate(FEATURES)}
    history.log_hour(client, run_id, _hour(config.name, "1", H1, "ok", scores=first, share=0.0,
                                           kpis={"approval_rate": 0.7}), pd.Series([5.0, 7.0]))
    critical = _hour(config.name, "2", H2, "critical", share=0.6, scores={f: 0.001 for f in FEATURES},
                     kpis={"approval_rate": 0.4}, drops={"approval_rate": 0.3}, healthy=False)
    history.log_hour(client, run_id, critical, pd.Series([10.0, 20.0, 30.0]))
    # the latest hour: region not checked, default_precision without a value, batch rows only (no latency)
    scores = {f: 0.02 * (i + 1) for i, f in enumerate(FEATURES) if f != "region"}
    issues = [DataQualityIssue("wrong_type", "annual_income", 12, 0.03, 0.01, "text"),
              DataQualityIssue("wrong_type", "age", 3, 0.0075, 0.01, "text"),
              DataQualityIssue("all_null", "region", 400, 1.0, 0.0, "null")]
    latest = _hour(config.name, "2", H3, "warning", rows=412, scores=scores, share=0.25,
                   kpis={"approval_rate": 0.61, "repayment_rate": 1.04, "default_precision": None},
                   drops={"approval_rate": 0.09, "repayment_rate": -0.01}, issues=issues, healthy=False)
    history.log_hour(client, run_id, latest, pd.Series([np.nan] * 3))
    fired = Finding("data_drift", 0.6, 0.3, "drifted")
    cooldown.record_fired(client, run_id, critical, [fired])

    client.create_registered_model(config.name)
    for _ in range(3):
        client.create_model_version(config.name, "file:///nowhere")
    client.set_registered_model_alias(config.name, "champion", "2")
    client.set_registered_model_alias(config.name, "previous_champion", "1")
    client.set_registered_model_alias(config.name, "challenger", "3")
    live = rollout.record_serving(client, config.name, {"1": "UNAVAILABLE", "2": "READY", "3": "READY"})
    assert live == "3"
    rollout.record_serving(client, config.name, {"1": "UNAVAILABLE", "2": "READY"})  # 3 unloaded again
    return {"config": config, "latest": latest, "scores": scores}


def test_the_latest_hour_is_exposed_as_logged(client, logged) -> None:
    config, latest, scores = logged["config"], logged["latest"], logged["scores"]
    got = _scrape(client, config)
    at = {"model": config.name, "version": "2"}

    assert got["modelops_hour_timestamp_seconds"] == {_labels(**at): H3.timestamp()}
    assert got["modelops_assessed_rows"] == {_labels(**at): 412}
    assert got["modelops_window_hours"] == {_labels(**at): 1}
    assert got["modelops_alert_level"] == {_labels(**at): 1}
    assert got["modelops_alert_tier"] == {_labels(**at, tier=t): float(t == "warning")
                                          for t in ("ok", "warning", "critical", "skipped")}
    assert got["modelops_hour_healthy"] == {_labels(**at): 0} and got["modelops_cold_start"] == {_labels(**at): 0}
    assert got["modelops_drift_share"] == {_labels(**at): 0.25}
    # region was checked in the hours before, not in this one: its older score is not shown as this hour's
    assert got["modelops_feature_drift_score"] == {_labels(**at, feature=f): pytest.approx(s) for f, s in scores.items()}
    assert got["modelops_kpi_value"] == {_labels(**at, kpi="approval_rate"): 0.61,
                                         _labels(**at, kpi="repayment_rate"): 1.04}
    assert got["modelops_kpi_drop"] == {_labels(**at, kpi="approval_rate"): 0.09,
                                        _labels(**at, kpi="repayment_rate"): -0.01}
    counts = {"wrong_type": 15, "all_null": 400}
    assert got["modelops_data_quality_issues"] == {_labels(**at, kind=k): counts.get(k, 0) for k in DATA_QUALITY_KINDS}
    assert got["modelops_data_quality_column_issues"] == {
        _labels(**at, kind="wrong_type", column="annual_income"): 12, _labels(**at, kind="wrong_type", column="age"): 3,
        _labels(**at, kind="all_null", column="region"): 400}
    assert "modelops_online_latency_seconds" not in got  # batch rows only this hour; the older hours' not shown
    assert latest.level == "warning"


def test_thresholds_aliases_served_versions_and_fired_alerts(client, logged) -> None:
    config = logged["config"]
    got = _scrape(client, config)
    model = config.name

    assert got["modelops_metrics_read_success"] == {_labels(model=model): 1}
    assert got["modelops_drift_share_threshold"] == {_labels(model=model, tier="warning"): CFG.monitoring.drift.warning,
                                                     _labels(model=model, tier="critical"): CFG.monitoring.drift.critical}
    assert got["modelops_kpi_max_drop"] == {_labels(model=model, kpi=k.name): k.max_drop for k in CFG.monitoring.kpis}
    assert got["modelops_alias_info"] == {_labels(model=model, alias="champion", version="2"): 1,
                                          _labels(model=model, alias="previous_champion", version="1"): 1,
                                          _labels(model=model, alias="challenger", version="3"): 1}
    assert got["modelops_serving_info"] == {_labels(model=model, version="2", server="triton", state="live"): 1}
    assert got["modelops_alert_last_fired_timestamp_seconds"] == {
        _labels(model=model, version="2", finding="data_drift", level="critical"): H2.timestamp()}


def test_online_latency_quantiles_are_the_hour_s_as_logged_in_seconds(client) -> None:
    config = _config("metrics_latency")
    run_id = history.monitoring_run(client, config)
    latency = pd.Series([10.0, 20.0, 30.0, np.nan])  # NaN: a batch row
    history.log_hour(client, run_id, _hour(config.name, "4", H1, "ok", share=0.0), latency)

    got = _scrape(client, config)["modelops_online_latency_seconds"]

    at = {"model": config.name, "version": "4"}
    assert got == {_labels(**at, quantile="0.5"): pytest.approx(0.020),
                   _labels(**at, quantile="0.99"): pytest.approx(latency.quantile(0.99) / 1000)}


def test_a_skipped_hour_has_no_level_and_shows_nothing_of_the_hours_before(client) -> None:
    config = _config("metrics_skipped")
    run_id = history.monitoring_run(client, config)
    history.log_hour(client, run_id, _hour(config.name, "1", H1, "critical", share=0.8, scores={"age": 0.0},
                                           kpis={"approval_rate": 0.2}, healthy=False), pd.Series([1.0]))
    history.log_hour(client, run_id, _hour(config.name, "1", H2, "skipped", rows=12), pd.Series([], dtype=float))

    got = _scrape(client, config)

    at = {"model": config.name, "version": "1"}
    assert got["modelops_assessed_rows"] == {_labels(**at): 12}
    assert got["modelops_hour_timestamp_seconds"] == {_labels(**at): H2.timestamp()}
    assert got["modelops_alert_tier"][_labels(**at, tier="skipped")] == 1
    assert sum(got["modelops_alert_tier"].values()) == 1
    for name in ("modelops_alert_level", "modelops_drift_share", "modelops_feature_drift_score", "modelops_kpi_value",
                 "modelops_hour_healthy", "modelops_online_latency_seconds"):
        assert name not in got, name


def test_a_model_never_assessed_nor_registered_has_only_its_thresholds(client) -> None:
    config = _config("metrics_new_model")

    got = _scrape(client, config)

    assert got["modelops_metrics_read_success"] == {_labels(model=config.name): 1}
    assert set(got) == {"modelops_metrics_read_success", "modelops_drift_share_threshold", "modelops_kpi_max_drop"}


def test_every_metric_has_help_and_the_prefix(client, logged) -> None:
    text = metrics.exposition(client, {logged["config"].name: logged["config"]}).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    assert set(families) == {f"modelops_{name}" for name in metrics.GAUGES}
    assert all(f.documentation.strip() for f in families.values())
    assert all(name.endswith("_seconds") for name in families if "timestamp" in name or "latency" in name)


class _CountingClient:
    """A real MlflowClient that counts the calls made through it (a spy: every call reaches the store)."""

    def __init__(self, client: MlflowClient) -> None:
        self._client, self.calls = client, []

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls.append(name)
            return attr(*args, **kwargs)
        return counted


def test_a_scrape_makes_3n_plus_1_calls_whatever_the_hours_recorded(client, logged) -> None:
    config = _config("metrics_long_history")
    run_id = history.monitoring_run(client, config)
    for h in range(48):
        history.log_hour(client, run_id, _hour(config.name, "1", H1 + pd.Timedelta(hours=h), "ok", share=0.1,
                                               scores={f: 0.3 for f in FEATURES}, kpis={"approval_rate": 0.7}),
                         pd.Series([12.0]))
    spy = _CountingClient(client)
    configs = {c.name: c for c in (config, logged["config"])}

    started = time.perf_counter()
    got = _scrape(spy, *configs.values())  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started

    assert sorted(spy.calls) == sorted(["search_runs"] + ["get_experiment_by_name", "get_registered_model"] * 2
                                       + ["search_model_versions"])  # metrics_long_history is not registered
    assert got["modelops_hour_timestamp_seconds"][_labels(model=config.name, version="1")] == (
        H1 + pd.Timedelta(hours=47)).timestamp()
    assert elapsed < 5, elapsed  # about 0.03 s here; generous for a busy test machine


def test_an_unreachable_mlflow_is_a_metric_not_a_failed_scrape(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    down = MlflowClient(f"http://127.0.0.1:{free_port()}", registry_uri=f"http://127.0.0.1:{free_port()}")
    configs = [_config("metrics_down_a"), _config("metrics_down_b")]

    got = _scrape(down, *configs)

    assert got["modelops_metrics_read_success"] == {_labels(model=c.name): 0 for c in configs}
    assert "modelops_hour_timestamp_seconds" not in got


# --- end to end: an hour assessed by the monitoring code on a real inference log ------------------------


def test_an_assessed_hour_is_exposed_with_the_assessment_s_values(client, runs, profile, tmp_path) -> None:
    import mlflow

    mon = CFG.monitoring.model_copy(update={"outcomes_uri": str(tmp_path / "outcomes"), "cold_start_days": 0})
    config = CFG.model_copy(update={"name": "metrics_e2e", "monitoring": mon})
    run_id, model_uri = runs[0]
    with mlflow.start_run(run_id=run_id):
        log_profile(profile)
    client.create_registered_model(config.name)
    version = str(client.create_model_version(config.name, model_uri, run_id=run_id).version)
    hour = pd.Timestamp("2026-09-01T10:00Z")
    batch = generate_batch(300, seed=5, start=hour.isoformat(), hours=1)
    scores = np.random.default_rng(5).uniform(0, 1, 300)
    root = tmp_path / "log"
    for part, latency in ((slice(0, 200), 12.0), (slice(200, 300), 40.0)):
        inference_log.log_predictions(config.name, version, "online", batch[FEATURES].iloc[part],
                                      scores[part], ts=batch["applied_at"].iloc[part],
                                      request_ids=batch["application_id"].iloc[part].tolist(), latency_ms=latency,
                                      root=root)

    assessment = assess_window(client, config, hour, hour + pd.Timedelta(hours=1), champion=version, root=str(root),
                               now=hour + pd.Timedelta(days=2), check_gaps=False).assessment
    got = _scrape(client, config)

    at = {"model": config.name, "version": version}
    assert assessment.rows == 300 and assessment.drift is not None
    assert got["modelops_assessed_rows"] == {_labels(**at): 300}
    assert got["modelops_alert_level"] == {_labels(**at): ("ok", "warning", "critical").index(assessment.level)}
    assert got["modelops_drift_share"] == {_labels(**at): pytest.approx(assessment.drift["share_drifted"])}
    assert got["modelops_feature_drift_score"] == {
        _labels(**at, feature=f): pytest.approx(d["score"]) for f, d in assessment.drift["features"].items()
        if d["score"] is not None}
    assert got["modelops_kpi_value"] == {_labels(**at, kpi=k): pytest.approx(v["value"])
                                         for k, v in assessment.kpis.items() if v["value"] is not None}
    latencies = pd.Series([12.0] * 200 + [40.0] * 100)
    assert got["modelops_online_latency_seconds"] == {
        _labels(**at, quantile="0.5"): pytest.approx(latencies.quantile(0.5) / 1000),
        _labels(**at, quantile="0.99"): pytest.approx(latencies.quantile(0.99) / 1000)}
    assert got["modelops_hour_timestamp_seconds"] == {_labels(**at): hour.timestamp()}

