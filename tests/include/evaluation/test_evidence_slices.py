"""Tests for include.evaluation.slices: per-slice metrics against scikit-learn on the subsets, and reading them back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from include.evaluation.slices import compare, read_slices, report_metrics, slice_report


@pytest.fixture(scope="module")
def scored() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Region "good": the score tracks the label; region "bad": it is noise; region "flat": negatives only."""
    rng = np.random.default_rng(3)
    n = 600
    region = np.array(["good"] * 300 + ["bad"] * 250 + ["flat"] * 50, dtype=object)
    y = (rng.uniform(size=n) < 0.3).astype(int)
    y[region == "flat"] = 0
    proba = np.where(region == "good", np.clip(0.3 + 0.4 * y + rng.normal(0, 0.15, n), 0, 1), rng.uniform(size=n))
    groups = pd.DataFrame({"region": region, "tier": np.where(np.arange(n) % 2, "a.1", "b")})
    return groups, y, proba


def test_each_slice_gets_sklearns_metric_on_its_rows(scored) -> None:
    groups, y, proba = scored

    report = slice_report(groups, y, proba, "roc_auc")

    for region in ("good", "bad"):
        mask = groups["region"] == region
        assert report["region"][region]["roc_auc"] == pytest.approx(roc_auc_score(y[mask], proba[mask]))
        assert report["region"][region]["rows"] == mask.sum()
    assert report["region"]["good"]["roc_auc"] > 0.9 > 0.6 > report["region"]["bad"]["roc_auc"]
    assert report["region"]["flat"] == {"rows": 50, "positives": 0, "roc_auc": None}  # one class: no AUC


def test_metrics_read_back_with_dotted_values(scored) -> None:
    groups, y, proba = scored
    metrics = report_metrics(slice_report(groups, y, proba, "roc_auc"), "roc_auc")

    assert "slice.region.flat.rows" in metrics and "slice.region.flat.roc_auc" not in metrics
    assert read_slices(metrics, "tier", "roc_auc").keys() == {"a.1", "b"}
    assert read_slices(metrics, "region", "roc_auc")["flat"] == {"rows": 50.0, "roc_auc": None}
    assert read_slices({"slice.regional.x.rows": 5.0}, "region", "roc_auc") == {}


def test_compare_finds_the_slice_where_the_candidate_is_worse() -> None:
    champion = {"slice.region.north.roc_auc": 0.80, "slice.region.north.rows": 500,
                "slice.region.south.roc_auc": 0.80, "slice.region.south.rows": 500,
                "slice.region.tiny.roc_auc": 0.90, "slice.region.tiny.rows": 20}
    candidate = {"slice.region.north.roc_auc": 0.81, "slice.region.north.rows": 400,
                 "slice.region.south.roc_auc": 0.72, "slice.region.south.rows": 400,
                 "slice.region.tiny.roc_auc": 0.50, "slice.region.tiny.rows": 25,
                 "slice.region.new.roc_auc": 0.70, "slice.region.new.rows": 400}

    result = compare(candidate, champion, ["region", "home"], "roc_auc", higher_is_better=True, min_rows=100)

    assert [(c, v) for c, v, *_ in result["compared"]] == [("region", "north"), ("region", "south")]
    assert dict(((c, v), drop) for c, v, _, _, drop in result["compared"]) == pytest.approx(
        {("region", "north"): -0.01, ("region", "south"): 0.08})
    assert result["skipped"] == 2  # tiny (too few rows), new (not on the champion)
    assert result["missing_columns"] == ["home"]

    lower = compare({"slice.r.a.log_loss": 0.5, "slice.r.a.rows": 300}, {"slice.r.a.log_loss": 0.4, "slice.r.a.rows": 300},
                    ["r"], "log_loss", higher_is_better=False, min_rows=100)
    assert lower["compared"][0][4] == pytest.approx(0.1)  # a higher log loss is worse


def test_a_column_with_too_many_values_is_refused() -> None:
    groups = pd.DataFrame({"id": [str(i) for i in range(150)]})
    with pytest.raises(ValueError, match="'id' has 150 values"):
        slice_report(groups, np.arange(150) % 2, np.full(150, 0.5), "roc_auc")
