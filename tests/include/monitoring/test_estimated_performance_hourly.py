"""Estimated performance (CBPE) in hourly monitoring: a real MLflow store, a real inference log, real label files.

The served version's training run carries holdout predictions (``evidence/holdout_predictions.parquet``,
written by the same function training's evaluation uses). The hours' scores and labels are drawn so the
scores are calibrated probabilities of the labels: the realised values (scikit-learn on the labels) are
the independent check of what monitoring estimated and recorded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from include.config import ConfigError, get_model_config, load_model_config
from include.demo.datagen import generate_batch
from include.monitoring import inference_log
from include.monitoring.delayed_labels import log_labels
from include.monitoring.hourly import assess_window
from include.monitoring.performance_estimation import (
    HOLDOUT_ARTIFACT,
    Cbpe,
    findings,
    hour_estimates,
    load_holdout_predictions,
    log_holdout_predictions,
)
from include.monitoring.reference_profile import log_profile
from include.monitoring.windows import hour_step

CFG = get_model_config("credit_approval")
TYPES = {c.name: c.type for c in CFG.dataset.features}
MODEL = "credit_cbpe"
HOUR = pd.Timestamp("2026-07-01T09:00Z")
SETTINGS = {"metrics": [{"metric": "roc_auc", "max_drop": 0.05}, {"metric": "accuracy", "max_drop": 0.05}]}


def _scores(seed: int, n: int, mean: float, std: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``sigmoid(N(mean, std))`` and labels drawn from them: the scores are calibrated."""
    rng = np.random.default_rng(seed)
    scores = 1 / (1 + np.exp(-rng.normal(mean, std, n)))
    return scores, (rng.random(n) < scores).astype(int)


def _reference():
    return _scores(1, 4000, -1.4, 1.6)


def _clean(seed: int, n: int = 600):
    return _scores(seed, n, -1.4, 1.6)


def _degraded(seed: int, n: int = 800):  # the inputs moved to where the model is unsure: less accurate, lower AUC
    return _scores(seed, n, -0.2, 0.4)


def _config(tmp_path, **settings):
    mon = CFG.monitoring.model_copy(update={
        "outcomes_uri": str(tmp_path / "outcomes"), "cold_start_days": 0,
        "estimated_performance": CFG.monitoring.estimated_performance.model_validate({**SETTINGS, **settings})})
    return CFG.model_copy(update={"name": MODEL, "monitoring": mon})


@pytest.fixture(scope="module")
def versions(client, runs, profile) -> dict[str, str]:
    """``with``: a version whose training run logged its holdout predictions; ``without``: one trained before."""
    import mlflow

    client.create_registered_model(MODEL)
    out = {}
    for (run_id, model_uri), kind in zip(runs[:2], ("with", "without"), strict=True):
        with mlflow.start_run(run_id=run_id):
            log_profile(profile)
        if kind == "with":
            scores, labels = _reference()
            log_holdout_predictions(client, run_id, CFG, pd.Series(labels), scores)
        out[kind] = str(client.create_model_version(MODEL, model_uri, run_id=run_id).version)
    return out


def _traffic(tmp_path, hour, version, scores, labels, *, seed, labelled: int | None = None, role: str | None = None):
    """The hour's rows in the inference log; the first ``labelled`` rows' labels (all by default) a day later."""
    batch = generate_batch(len(scores), seed=seed, start=hour.isoformat(), hours=1)
    extra = {"role": role} if role else {}
    inference_log.log_predictions(MODEL, version, "online", batch[list(TYPES)], scores, ts=batch["applied_at"],
                                  request_ids=batch["application_id"].tolist(), root=tmp_path / "log", **extra)
    if labelled != 0:
        arrived = pd.DataFrame({"request_id": batch["application_id"], "defaulted": labels,
                                "repaid_amount": batch["repaid_amount"]}).head(labelled)
        log_labels(tmp_path / "outcomes", arrived, arrived_at=hour + pd.Timedelta(days=1))


def _assess(client, config, hour, tmp_path, champion):
    return assess_window(client, config, hour, hour + pd.Timedelta(hours=1), champion=champion,
                         root=str(tmp_path / "log"), now=hour + pd.Timedelta(days=2), check_gaps=False)


def _metrics_at(client, run_id: str, hour: pd.Timestamp, prefix: str) -> dict[str, float]:
    step = hour_step(hour)
    return {key: [p.value for p in client.get_metric_history(run_id, key) if p.step == step][-1]
            for key in client.get_run(run_id).data.metrics if key.startswith(prefix)
            and any(p.step == step for p in client.get_metric_history(run_id, key))}


def test_a_degraded_hour_warns_and_records_estimate_band_and_realised_value(client, versions, tmp_path) -> None:
    config = _config(tmp_path)
    scores, labels = _degraded(seed=21)
    _traffic(tmp_path, HOUR, versions["with"], scores, labels, seed=21)

    result = _assess(client, config, HOUR, tmp_path, versions["with"])

    got = result.assessment
    assert got.level == "warning" and not got.healthy
    names = [f.name for f in got.findings]
    assert "estimated.accuracy" in names and "estimated.roc_auc" in names
    ref_scores, ref_labels = _reference()
    holdout = {"accuracy": accuracy_score(ref_labels, ref_scores >= 0.5), "roc_auc": roc_auc_score(ref_labels, ref_scores)}
    truth = {"accuracy": accuracy_score(labels, scores >= 0.5), "roc_auc": roc_auc_score(labels, scores)}
    for metric in ("accuracy", "roc_auc"):
        est = got.estimated[metric]
        assert est["reference"] == pytest.approx(holdout[metric])
        assert est["rows"] == est["labelled_rows"] == 800
        assert est["value"] == pytest.approx(truth[metric], abs=0.03)  # calibrated scores: CBPE is right
        assert est["lower"] <= truth[metric] <= est["upper"] < holdout[metric]
        assert truth[metric] < holdout[metric] - 0.05  # the fall is real
        assert est["realised"] == pytest.approx(truth[metric])
        assert est["abs_error"] == pytest.approx(abs(est["value"] - truth[metric]))
        finding = next(f for f in got.findings if f.name == f"estimated.{metric}")
        assert finding.value == pytest.approx(holdout[metric] - est["value"]) and finding.threshold == 0.05
    metrics = _metrics_at(client, result.monitoring_run_id, HOUR, "estimated.")
    assert metrics["estimated.accuracy"] == pytest.approx(got.estimated["accuracy"]["value"])
    assert metrics["estimated.accuracy.realised"] == pytest.approx(truth["accuracy"])
    assert {f"estimated.{m}.{p}" for m in ("accuracy", "roc_auc")
            for p in ("lower", "upper", "reference", "drop", "realised", "abs_error")} <= set(metrics)


def test_a_clean_hour_is_healthy_and_its_labels_arrive_for_part_of_it(client, versions, tmp_path) -> None:
    config = _config(tmp_path)
    hour = HOUR + pd.Timedelta(hours=1)
    scores, labels = _clean(seed=22)
    _traffic(tmp_path, hour, versions["with"], scores, labels, seed=22, labelled=200)

    got = _assess(client, config, hour, tmp_path, versions["with"]).assessment

    assert not [f for f in got.findings if f.name.startswith("estimated.")]
    assert got.healthy
    est = got.estimated["accuracy"]
    assert est["rows"] == 600 and est["labelled_rows"] == 200
    assert est["realised"] == pytest.approx(accuracy_score(labels[:200], scores[:200] >= 0.5))
    cbpe = Cbpe.fit(*_reference(), 0.5, ["accuracy"])  # the error is the estimate's on the labelled rows
    assert est["abs_error"] == pytest.approx(abs(cbpe.estimate(scores[:200])["accuracy"].value - est["realised"]))


def test_a_critical_drop_rolls_back(client, versions, tmp_path) -> None:
    config = _config(tmp_path, metrics=[{"metric": "accuracy", "max_drop": 0.05, "critical_drop": 0.1}])
    hour = HOUR + pd.Timedelta(hours=2)
    scores, labels = _degraded(seed=23)
    _traffic(tmp_path, hour, versions["with"], scores, labels, seed=23, labelled=0)

    got = _assess(client, config, hour, tmp_path, versions["with"]).assessment

    assert got.level == "critical"
    assert got.findings[0].name == "critical" and got.findings[0].threshold == 0.1
    assert "estimated accuracy fell" in got.findings[0].detail
    assert got.estimated["accuracy"]["realised"] is None  # no label has arrived
    assert set(got.estimated) == {"accuracy"}


def test_a_version_trained_before_holdout_predictions_is_assessed_without_estimates(client, versions, tmp_path,
                                                                                      caplog) -> None:
    config = _config(tmp_path)
    hour = HOUR + pd.Timedelta(hours=3)
    scores, labels = _degraded(seed=24)
    _traffic(tmp_path, hour, versions["without"], scores, labels, seed=24)

    result = _assess(client, config, hour, tmp_path, versions["without"])

    assert result.assessment.estimated == {} and result.assessment.rows == 800
    assert not [f for f in result.assessment.findings if f.name.startswith("estimated.")]
    assert _metrics_at(client, result.monitoring_run_id, hour, "estimated.") == {}
    assert f"has no {HOLDOUT_ARTIFACT} artifact" in caplog.text


def test_without_metrics_nothing_is_estimated(client, versions, tmp_path) -> None:
    config = _config(tmp_path, metrics=[])
    hour = HOUR + pd.Timedelta(hours=4)
    scores, labels = _degraded(seed=25)
    _traffic(tmp_path, hour, versions["with"], scores, labels, seed=25)

    got = _assess(client, config, hour, tmp_path, versions["with"]).assessment

    assert got.estimated == {} and got.rows == 800


def test_only_the_rows_that_answered_are_estimated(client, versions, tmp_path) -> None:
    """Shadow rows (a challenger's scores, never answered) are not the served version's hour."""
    config = _config(tmp_path)
    hour = HOUR + pd.Timedelta(hours=5)
    scores, labels = _clean(seed=26)
    _traffic(tmp_path, hour, versions["with"], scores, labels, seed=26, labelled=0)
    bad, bad_labels = _degraded(seed=27, n=900)
    _traffic(tmp_path, hour, versions["without"], bad, bad_labels, seed=27, labelled=0, role="shadow")

    got = _assess(client, config, hour, tmp_path, versions["with"]).assessment

    assert got.rows == 600 and got.estimated["accuracy"]["rows"] == 600
    cbpe = Cbpe.fit(*_reference(), 0.5)
    assert got.estimated["accuracy"]["value"] == pytest.approx(cbpe.estimate(scores)["accuracy"].value)


# --- the pieces, without MLflow -----------------------------------------------------------------


def test_invalid_predictions_are_left_out_and_text_labels_are_not_labels(tmp_path) -> None:
    config = _config(tmp_path)
    cbpe = Cbpe.fit(*_reference(), 0.5)
    scores, labels = _clean(seed=28, n=100)
    frame = pd.DataFrame({"prediction": [*scores, np.nan, 1.5, -0.1, np.inf],
                          "defaulted": [*labels.astype(object), 1, 0, 1, 0]})
    frame.loc[:49, "defaulted"] = "unknown"  # another writer's text: not a label

    got = hour_estimates(config, cbpe, frame)

    assert got["accuracy"]["rows"] == 100 and got["accuracy"]["labelled_rows"] == 50
    assert got["accuracy"]["value"] == pytest.approx(cbpe.estimate(scores)["accuracy"].value)
    assert got["accuracy"]["realised"] == pytest.approx(accuracy_score(labels[50:], scores[50:] >= 0.5))


def _record(value, lower, upper, reference):
    return {"value": value, "lower": lower, "upper": upper, "reference": reference, "drop": reference - value,
            "rows": 500}


def test_a_drop_counts_only_beyond_max_drop_and_beyond_the_band(tmp_path) -> None:
    settings = _config(tmp_path, metrics=[{"metric": "accuracy", "max_drop": 0.05, "critical_drop": 0.2},
                                          {"metric": "recall", "max_drop": 0.1}]).monitoring.estimated_performance

    noisy = findings(settings, {"accuracy": _record(0.70, 0.55, 0.85, 0.80)})  # 0.10 down, but within the band
    small = findings(settings, {"accuracy": _record(0.78, 0.76, 0.79, 0.80)})  # beyond the band, but 0.02 down
    real = findings(settings, {"accuracy": _record(0.70, 0.66, 0.74, 0.80), "recall": _record(0.5, 0.4, 0.6, 0.55)})
    severe = findings(settings, {"accuracy": _record(0.55, 0.50, 0.60, 0.80)})

    assert noisy == ([], []) and small == ([], [])
    assert [(f.name, round(f.value, 6), f.threshold) for f in real[0]] == [("estimated.accuracy", 0.1, 0.05)]
    assert real[1] == []
    assert [(f.name, round(f.value, 6), f.threshold) for f in severe[1]] == [("estimated.accuracy", 0.25, 0.2)]
    assert findings(settings, {"accuracy": {**_record(0.5, 0.4, 0.6, 0.8), "drop": None}}) == ([], [])


def test_holdout_predictions_round_trip_with_the_positive_class(client, runs) -> None:
    run_id = runs[2][0]
    classes = CFG.dataset.checks.model_copy(update={"classes": ["repaid", "defaulted"]})
    config = CFG.model_copy(update={"dataset": CFG.dataset.model_copy(update={"checks": classes})})

    path = log_holdout_predictions(client, run_id, config, pd.Series(["defaulted", "repaid", "repaid"]),
                                   np.array([0.9, 0.2, 0.4]))

    assert path == HOLDOUT_ARTIFACT
    back = load_holdout_predictions(client, run_id)
    assert back["prediction"].tolist() == [0.9, 0.2, 0.4] and back["label"].tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="differ in length"):
        log_holdout_predictions(client, run_id, config, pd.Series([1]), np.array([0.9, 0.2]))


@pytest.mark.parametrize(("section", "message"), [
    ({"metrics": [{"metric": "f1", "max_drop": 0.1}]}, "estimated_performance.metrics.0.metric"),
    ({"metrics": [{"metric": "accuracy", "max_drop": 0.1, "critical_drop": 0.05}]}, "critical_drop (0.05) must be >= max_drop"),
    ({"metrics": [{"metric": "accuracy", "max_drop": 0.1}, {"metric": "accuracy", "max_drop": 0.2}]}, "accuracy listed twice"),
    ({"metrics": [{"metric": "accuracy"}]}, "max_drop: Field required"),
    ({"min_labelled_rows": 0}, "min_labelled_rows"),
])
def test_config_errors_name_the_key(tmp_path, section, message) -> None:
    import yaml

    source = CFG.source
    raw = yaml.safe_load(source.read_text())
    raw["monitoring"]["estimated_performance"] = section
    (tmp_path / "models").mkdir()
    (tmp_path / "expectations").symlink_to(source.parent.parent / "expectations")
    path = tmp_path / "models" / source.name
    path.write_text(yaml.safe_dump(raw))

    with pytest.raises(ConfigError, match="monitoring.estimated_performance") as err:
        load_model_config(path)
    assert message in str(err.value)


def test_configs_without_the_section_estimate_nothing(tmp_path) -> None:
    import yaml

    raw = yaml.safe_load(CFG.source.read_text())
    del raw["monitoring"]["estimated_performance"]
    (tmp_path / "models").mkdir()
    (tmp_path / "expectations").symlink_to(CFG.source.parent.parent / "expectations")
    path = tmp_path / "models" / CFG.source.name
    path.write_text(yaml.safe_dump(raw))

    assert load_model_config(path).monitoring.estimated_performance.metrics == []
    assert [m.metric for m in CFG.monitoring.estimated_performance.metrics] == ["roc_auc", "accuracy", "precision",
                                                                                "recall"]
