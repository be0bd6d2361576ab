"""Tests for include.monitoring.drift: the fast check reaches Evidently's own DataDriftPreset decisions and scores."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.demo.datagen import FEATURES, generate_batch
from include.monitoring import drift
from include.monitoring.reference_profile import build_profile
from tests.include.monitoring.drift_cases import EDGE_TYPES, GEN_TYPES, edge_frame

# (reference, current, types) per case; small references (<= 1000 rows) take the KS / chi-square /
# Z paths, large ones the Wasserstein / Jensen-Shannon paths.
CASES = {
    "generated-small-clean": lambda: (generate_batch(800, seed=1), generate_batch(600, seed=2), GEN_TYPES),
    "generated-small-drifted": lambda: (generate_batch(800, seed=1), generate_batch(600, seed=2, drift=0.8), GEN_TYPES),
    "generated-large-clean": lambda: (generate_batch(3000, seed=1), generate_batch(2000, seed=2), GEN_TYPES),
    "generated-large-drifted": lambda: (generate_batch(3000, seed=1), generate_batch(2000, seed=2, drift=0.8), GEN_TYPES),
    "edge-small-clean": lambda: (edge_frame(500, shifted=False, seed=1), edge_frame(400, shifted=False, seed=2), EDGE_TYPES),
    "edge-small-shifted": lambda: (edge_frame(500, shifted=False, seed=1), edge_frame(400, shifted=True, seed=2), EDGE_TYPES),
    "edge-large-clean": lambda: (edge_frame(3000, shifted=False, seed=1), edge_frame(1500, shifted=False, seed=2), EDGE_TYPES),
    "edge-large-shifted": lambda: (edge_frame(3000, shifted=False, seed=1), edge_frame(1500, shifted=True, seed=2), EDGE_TYPES),
}
EXPECTED_TESTS = {
    "generated-small": {**dict.fromkeys(FEATURES[:6], "ks"), **dict.fromkeys(FEATURES[6:], "chisquare")},
    "generated-large": {**dict.fromkeys(FEATURES[:6], "wasserstein"), **dict.fromkeys(FEATURES[6:], "jensenshannon")},
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, drift.DriftReport, drift.DriftReport]:
    """One case: (name, the project's report, Evidently's report) on the same full frames."""
    reference, current, types = CASES[request.param]()
    profile = build_profile(reference, types)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fast check itself is warning-free
        ours = drift.detect_drift(profile, current)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Evidently's own numpy warnings on +/-inf
        theirs = drift.evidently_drift(reference, current, types)
    return request.param, ours, theirs


def test_decisions_tests_and_scores_equal_evidentlys(case: tuple[str, drift.DriftReport, drift.DriftReport]) -> None:
    name, ours, theirs = case
    assert list(ours.features) == list(theirs.features)
    for column, mine in ours.features.items():
        evidently = theirs.features[column]
        assert (mine.stattest, mine.threshold, mine.drifted) == (
            evidently.stattest,
            evidently.threshold,
            evidently.drifted,
        ), column
        assert mine.score == pytest.approx(evidently.score, rel=1e-9, abs=1e-300), column
    assert ours.share_drifted == theirs.share_drifted
    assert ours.dataset_drift == theirs.dataset_drift
    assert (ours.n_reference, ours.n_current) == (theirs.n_reference, theirs.n_current)
    if name.startswith("generated"):
        expected = EXPECTED_TESTS[name.rsplit("-", 1)[0]]
        assert {c: f.stattest for c, f in ours.features.items()} == expected


def test_the_cases_cover_every_test_and_both_outcomes() -> None:
    """Guards the cases above: each Evidently test is reached, drifted and not drifted both occur."""
    seen: dict[str, set[bool]] = {}
    for make in CASES.values():
        reference, current, types = make()
        report = drift.detect_drift(build_profile(reference, types), current)
        for feature in report.features.values():
            seen.setdefault(feature.stattest, set()).add(feature.drifted)
    assert set(seen) == set(drift.THRESHOLDS)
    assert seen["ks"] == seen["chisquare"] == seen["z"] == seen["wasserstein"] == seen["jensenshannon"] == {True, False}


def test_generated_drift_is_flagged_and_clean_data_is_not(case: tuple[str, drift.DriftReport, drift.DriftReport]) -> None:
    name, ours, _ = case
    if name.startswith("generated"):
        assert ours.dataset_drift is name.endswith("drifted")
        assert "region" not in ours.drifted_columns  # the generator never shifts regions


def test_edge_cases_take_evidentlys_special_paths(case: tuple[str, drift.DriftReport, drift.DriftReport]) -> None:
    name, ours, _ = case
    f = ours.features
    if name == "edge-small-shifted":
        assert (f["color"].stattest, f["color"].score, f["color"].drifted) == ("chisquare", 0.0, True)  # unseen "purple"
        assert f["nearly_few"].stattest == "ks"  # 7 distinct values with the current side
        assert (f["same"].stattest, f["same"].score) == ("z", 1.0)
        assert f["binary_num"].stattest == f["flag"].stattest == f["yes_no"].stattest == "z"
        assert f["few"].stattest == "chisquare"
    if name == "edge-large-shifted":
        assert f["constant"].stattest == "wasserstein" and f["constant"].score > 1  # std 0: normed by 0.001
        assert f["nearly_few"].stattest == "wasserstein"
        assert f["few"].stattest == f["color"].stattest == "jensenshannon"


def _quantile_form(values: np.ndarray, counts: np.ndarray, current: np.ndarray) -> float:
    """W1 computed independently of the project's code: the integral over q in (0, 1] of |Q_ref(q) - Q_cur(q)|,
    both quantile functions step functions (the project integrates |F_ref - F_cur| over x instead)."""
    ref_q = np.cumsum(counts) / counts.sum()
    cur = np.sort(current)
    cur_q = np.arange(1, cur.size + 1) / cur.size
    upper = np.union1d(ref_q, cur_q)
    lower = np.concatenate([[0.0], upper[:-1]])
    middle = (lower + upper) / 2
    ref_at = values[np.minimum(np.searchsorted(ref_q, middle), values.size - 1)]
    cur_at = cur[np.minimum(np.searchsorted(cur_q, middle), cur.size - 1)]
    return float(np.sum((upper - lower) * np.abs(ref_at - cur_at)))


def _bench_like(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    """Columns like bench/drift.py's: continuous, rounded (many ties), integer counts, heavy tails."""
    return pd.DataFrame({
        "normal": rng.normal(shift, 1, n),
        "lognormal_2dp": np.exp(rng.normal(np.log(62_000) + shift / 4, 0.5, n)).round(2),
        "poisson": rng.poisson(10 + shift, n).astype(np.int64),
        "score": np.clip(np.rint(rng.normal(680 - 20 * shift, 70, n)), 300, 850),
        "student_t": rng.standard_t(3, n),
    })


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_the_wasserstein_score_is_the_distance_computed_independently(shift: float) -> None:
    reference = _bench_like(np.random.default_rng(1), 20_000, 0.0)
    current = _bench_like(np.random.default_rng(2), 7_000, shift)
    profile = build_profile(reference, {c: "int" if c == "poisson" else "float" for c in reference})

    report = drift.detect_drift(profile, current)

    from scipy.stats import wasserstein_distance

    for name, ref in profile.columns.items():
        values = current[name].to_numpy(dtype=np.float64)
        expected = _quantile_form(ref.values, ref.counts, values)
        assert report.features[name].stattest == "wasserstein", name
        assert report.features[name].score == pytest.approx(expected / ref.std, rel=1e-9), name
        assert drift.wasserstein_distance(ref, np.sort(values)) == pytest.approx(expected, rel=1e-9), name
        # and what scipy computes from the profile's counts as weights
        assert wasserstein_distance(ref.values, values, u_weights=ref.counts) == pytest.approx(expected, rel=1e-9)
    assert report.dataset_drift is (shift > 0)


def test_thresholds_are_evidentlys_defaults() -> None:
    from evidently.legacy.calculations import stattests

    registered = {
        t.name: t.default_threshold
        for t in (stattests.ks_stat_test, stattests.chi_stat_test, stattests.z_stat_test,
                  stattests.wasserstein_stat_test, stattests.jensenshannon_stat_test)
    }
    assert registered == drift.THRESHOLDS


def test_dataset_drift_at_exactly_the_share() -> None:
    reference, current = generate_batch(800, seed=1), generate_batch(600, seed=2, drift=0.8)
    profile = build_profile(reference, GEN_TYPES)
    share = drift.detect_drift(profile, current).share_drifted
    assert 0 < share < 1
    assert drift.detect_drift(profile, current, drift_share=share).dataset_drift is True
    assert drift.detect_drift(profile, current, drift_share=min(1.0, share + 0.01)).dataset_drift is False


def test_report_as_dict_is_json(case: tuple[str, drift.DriftReport, drift.DriftReport]) -> None:
    _, ours, _ = case
    data = json.loads(json.dumps(ours.as_dict(), allow_nan=False))
    assert data["share_drifted"] == ours.share_drifted
    assert data["n_drifted"] == len(data["drifted_columns"]) == sum(f["drifted"] for f in data["features"].values())
    assert set(data["features"]) == set(ours.features)
    assert set(next(iter(data["features"].values()))) == {"column", "column_type", "stattest", "threshold", "score", "drifted"}


def test_detect_drift_errors_name_the_problem() -> None:
    profile = build_profile(generate_batch(200, seed=1), GEN_TYPES)
    current = generate_batch(100, seed=2)
    with pytest.raises(ValueError, match="current data has no rows"):
        drift.detect_drift(profile, current.head(0))
    with pytest.raises(ValueError, match="drift_share must be in"):
        drift.detect_drift(profile, current, drift_share=0)


def test_a_feature_that_cannot_be_checked_is_skipped_and_the_others_are_checked() -> None:
    profile = build_profile(generate_batch(800, seed=1), GEN_TYPES)
    clean = generate_batch(600, seed=2)
    current = generate_batch(600, seed=2, drift=0.9).drop(columns=["credit_score"]).assign(
        region=None,  # no value at all
        age=np.inf,  # no finite value
        annual_income=clean["annual_income"].astype(str),  # text where the profile has numbers
    )

    report = drift.detect_drift(profile, current)

    assert report.skipped == {
        "age": "column 'age' has no non-null values in the current data",
        "annual_income": "column 'annual_income' in the current data should be numeric, got dtype object",
        "credit_score": "missing from the current data",
        "region": "column 'region' has no non-null values in the current data",
    }
    assert set(report.features) == set(FEATURES) - set(report.skipped)
    # the checked ones are decided as on their own; the skipped ones count as not drifted in the share
    alone = drift.detect_drift(profile, current.drop(columns=list(report.skipped), errors="ignore").assign(
        **{c: generate_batch(600, seed=2)[c] for c in report.skipped}))
    assert {n: f.drifted for n, f in report.features.items()} == {n: alone.features[n].drifted for n in report.features}
    assert report.n_drifted >= 2
    assert report.share_drifted == pytest.approx(report.n_drifted / len(FEATURES))
    assert json.loads(json.dumps(report.as_dict()))["skipped"]["credit_score"] == "missing from the current data"


def test_nulls_in_current_are_dropped_like_evidently_does() -> None:
    reference = generate_batch(800, seed=1)
    current = generate_batch(600, seed=2, corruption="nulls")  # credit_score null in 5% of rows
    profile = build_profile(reference, GEN_TYPES)
    ours = drift.detect_drift(profile, current)
    assert current["credit_score"].isna().any()
    assert ours.features["credit_score"].score == pytest.approx(
        drift.detect_drift(profile, current.dropna(subset=["credit_score"])).features["credit_score"].score
    )


def test_evidently_report_is_written(edge_profile: drift.ReferenceProfile, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = drift.evidently_report(edge_profile, edge_frame(1000, shifted=True, seed=4),
                                        tmp_path / "r" / "drift.html", sample_rows=300)
    html = report.path.read_text()
    assert report.path == tmp_path / "r" / "drift.html" and report.skipped == {}
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    assert "color" in html and "nearly_few" in html


def test_evidently_report_leaves_out_what_it_cannot_draw(edge_profile: drift.ReferenceProfile, tmp_path: Path) -> None:
    current = edge_frame(1000, shifted=True, seed=4).drop(columns=["flag"]).assign(
        color=None, with_inf=np.inf, few=lambda f: f["few"].astype(str))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = drift.evidently_report(edge_profile, current, tmp_path / "drift.html", sample_rows=300)

    assert report.skipped == {
        "few": "should be numeric, got dtype object",
        "with_inf": "no finite non-null value in the sample",
        "flag": "missing from the current data",
        "color": "no finite non-null value in the sample",
    }
    html = report.path.read_text()
    assert "nearly_few" in html and "yes_no" in html
    with pytest.raises(ValueError, match="no feature can be shown in the Evidently report: few: should be numeric"):
        drift.evidently_report(edge_profile, current.assign(**{c: None for c in current.columns}),
                               tmp_path / "none.html")
