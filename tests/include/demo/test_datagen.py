"""Tests for include.demo.datagen: the deterministic credit-approval data generator."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from include.data.dataset import read_dataset
from include.demo import datagen
from include.demo.datagen import (
    CATEGORIES,
    COLUMN_TYPES,
    CORRUPTED_COLUMN,
    CORRUPTIONS,
    FEATURES,
    ID_COLUMN,
    OUTCOME,
    TARGET,
    TIMESTAMP_COLUMN,
    generate_batch,
)

ROOT = Path(__file__).resolve().parents[3]
N = 2000
EXPECTED_DTYPES = {
    "string": "object",
    "category": "object",
    "int": "int64",
    "float": "float64",
    "timestamp": "datetime64[ns, UTC]",
}


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate_batch(N, seed=7)


def test_same_arguments_give_identical_frames(clean: pd.DataFrame) -> None:
    again = generate_batch(N, seed=7)
    pd.testing.assert_frame_equal(again, clean)
    hashes = pd.util.hash_pandas_object
    np.testing.assert_array_equal(hashes(again).to_numpy(), hashes(clean).to_numpy())


def test_other_seed_gives_other_data(clean: pd.DataFrame) -> None:
    other = generate_batch(N, seed=8)
    assert not other[FEATURES].equals(clean[FEATURES])


def test_columns_and_dtypes(clean: pd.DataFrame) -> None:
    assert list(clean.columns) == list(COLUMN_TYPES)
    assert {c: str(t) for c, t in clean.dtypes.items()} == {c: EXPECTED_DTYPES[t] for c, t in COLUMN_TYPES.items()}
    for column in CATEGORIES:
        assert all(type(v) is str for v in clean[column])
    assert TARGET not in FEATURES and OUTCOME not in FEATURES
    assert ID_COLUMN not in FEATURES and TIMESTAMP_COLUMN not in FEATURES
    assert set(FEATURES) | {TARGET, OUTCOME, ID_COLUMN, TIMESTAMP_COLUMN} == set(COLUMN_TYPES)


def test_values_are_in_range(clean: pd.DataFrame) -> None:
    assert clean["age"].between(18, 90).all()
    assert (clean["annual_income"] > 0).all()
    assert clean["loan_amount"].between(1_000, 100_000).all()
    assert clean["credit_score"].between(300, 850).all()
    assert clean["employment_years"].between(0, 50).all()
    assert clean["debt_to_income"].between(0, 1.5).all()
    for column, levels in CATEGORIES.items():
        assert set(clean[column]) == set(levels)
    assert set(clean[TARGET]) == {0, 1}
    assert 0.15 <= clean[TARGET].mean() <= 0.25
    assert clean.notna().all().all()


def test_outcome_follows_label(clean: pd.DataFrame) -> None:
    repaid = clean[clean[TARGET] == 0]
    defaulted = clean[clean[TARGET] == 1]
    assert (repaid[OUTCOME] == repaid["loan_amount"]).all()
    assert (defaulted[OUTCOME] < defaulted["loan_amount"]).all()
    assert (defaulted[OUTCOME] >= 0).all()


def test_timestamps_lie_in_the_window_in_order() -> None:
    df = generate_batch(500, seed=1, start="2026-03-01T00:00:00Z", hours=6)
    start = pd.Timestamp("2026-03-01T00:00:00Z")
    assert df[TIMESTAMP_COLUMN].min() >= start
    assert df[TIMESTAMP_COLUMN].max() < start + pd.Timedelta(hours=6)
    assert df[TIMESTAMP_COLUMN].is_monotonic_increasing


def test_start_accepts_datetime_and_naive_means_utc() -> None:
    aware = generate_batch(50, seed=1, start=datetime(2026, 2, 1, tzinfo=UTC))
    naive = generate_batch(50, seed=1, start="2026-02-01T00:00:00")
    pd.testing.assert_frame_equal(aware, naive)


def test_ids_unique_within_and_across_batches(clean: pd.DataFrame) -> None:
    assert clean[ID_COLUMN].is_unique
    assert clean[ID_COLUMN].str.match(r"^APP-[0-9a-f]{8}-\d{9}$").all()
    other_seed = generate_batch(N, seed=8)
    other_start = generate_batch(N, seed=7, start="2026-02-01T00:00:00Z")
    ids = pd.concat([clean[ID_COLUMN], other_seed[ID_COLUMN], other_start[ID_COLUMN]])
    assert ids.is_unique


def test_empty_batch_has_the_schema() -> None:
    empty = generate_batch(0)
    assert list(empty.columns) == list(COLUMN_TYPES)
    assert str(empty[TIMESTAMP_COLUMN].dtype) == "datetime64[ns, UTC]"


def test_covariate_drift_shifts_features(clean: pd.DataFrame) -> None:
    drifted = generate_batch(N, seed=7, drift=1.0)
    assert drifted["annual_income"].median() < 0.85 * clean["annual_income"].median()
    assert drifted["credit_score"].mean() < clean["credit_score"].mean() - 30
    assert drifted["debt_to_income"].mean() > clean["debt_to_income"].mean() + 0.05
    assert (drifted["home_ownership"] == "rent").mean() > (clean["home_ownership"] == "rent").mean() + 0.15
    assert (drifted["loan_purpose"] == "business").mean() > (clean["loan_purpose"] == "business").mean() + 0.15
    half = generate_batch(N, seed=7, drift=0.5)
    assert drifted["credit_score"].mean() < half["credit_score"].mean() < clean["credit_score"].mean()


def _numeric(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in FEATURES if COLUMN_TYPES[c] in ("int", "float")]]


def test_concept_drift_keeps_features_and_hurts_a_clean_model(clean: pd.DataFrame) -> None:
    shifted = generate_batch(N, seed=7, concept_drift=1.0)
    pd.testing.assert_frame_equal(shifted[FEATURES], clean[FEATURES])
    assert shifted[TARGET].mean() > clean[TARGET].mean() + 0.1

    model = LogisticRegression(max_iter=1000).fit(_numeric(clean), clean[TARGET])
    test_clean = generate_batch(N, seed=9)
    test_shifted = generate_batch(N, seed=9, concept_drift=1.0)
    risk = model.predict_proba(_numeric(test_clean))[:, 1]
    approved = risk < np.quantile(risk, 0.7)  # same applicants, same decisions
    assert test_shifted[TARGET][approved].mean() > test_clean[TARGET][approved].mean() + 0.1


def test_corruptions_are_all_mapped() -> None:
    assert set(CORRUPTED_COLUMN) == set(CORRUPTIONS)
    assert set(CORRUPTED_COLUMN.values()) <= set(COLUMN_TYPES)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corruption_touches_only_its_column(clean: pd.DataFrame, kind: str) -> None:
    bad = generate_batch(N, seed=7, corruption=kind)
    column = CORRUPTED_COLUMN[kind]
    others = [c for c in clean.columns if c != column]
    pd.testing.assert_frame_equal(bad[others], clean[others])
    assert bad.equals(generate_batch(N, seed=7, corruption=kind))
    if kind == "missing_column":
        assert column not in bad.columns
        return
    broken = bad[column].astype(str) != clean[column].astype(str)
    assert 0 < broken.sum() <= 0.1 * N


def test_wrong_types_puts_strings_in_a_numeric_column() -> None:
    values = generate_batch(N, seed=7, corruption="wrong_types")["annual_income"]
    assert pd.to_numeric(values, errors="coerce").isna().any()
    assert values.notna().all()


def test_nulls_and_out_of_range() -> None:
    assert generate_batch(N, seed=7, corruption="nulls")["credit_score"].isna().any()
    ages = generate_batch(N, seed=7, corruption="out_of_range")["age"]
    assert set(ages[~ages.between(18, 90)]) <= {150, -3}
    assert (~ages.between(18, 90)).any()


def test_unknown_corruption_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match="missing_column") as info:
        generate_batch(10, corruption="gremlins")
    assert "gremlins" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"drift": 1.5}, "drift"), ({"concept_drift": -0.1}, "concept_drift"), ({"hours": 0}, "hours")],
)
def test_bad_arguments_are_rejected(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        generate_batch(10, **kwargs)


def test_cli_writes_the_batch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    out = tmp_path / "batch.parquet"
    datagen.main([str(out), "--rows", "300", "--seed", "3", "--drift", "0.5", "--corruption", "nulls"])
    expected = generate_batch(300, seed=3, drift=0.5, corruption="nulls")
    pd.testing.assert_frame_equal(read_dataset(str(out)), expected)
    assert str(out) in caplog.text


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    out = tmp_path / "batch.csv"
    args = [str(out), "--rows", "50", "--seed", "1", "--concept-drift", "0.3", "--start", "2026-05-01", "--hours", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "include.demo.datagen", *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "50 rows" in result.stderr
    assert len(read_dataset(str(out))) == 50
