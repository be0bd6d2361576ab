"""Tests for include.monitoring.reference_profile: the exact reference distributions, saved, logged and loaded."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from include import tracking
from include.demo.datagen import generate_batch
from include.monitoring import drift
from include.monitoring import reference_profile as rp
from tests.include.monitoring.drift_cases import EDGE_TYPES, GEN_TYPES, edge_frame


def test_profile_keeps_the_exact_distribution(edge_profile: rp.ReferenceProfile) -> None:
    frame = edge_frame(3000, shifted=False, seed=1)
    few = edge_profile.columns["few"]
    assert isinstance(few, rp.NumericReference)
    assert few.values.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert few.n == frame["few"].notna().sum()
    assert edge_profile.columns["with_inf"].n == np.isfinite(frame["with_inf"]).sum()
    assert edge_profile.columns["nullable"].n == frame["nullable"].notna().sum()
    assert edge_profile.columns["cat_nulls"].counts == frame["cat_nulls"].value_counts().to_dict()
    assert edge_profile.columns["flag"].counts == frame["flag"].value_counts().to_dict()
    assert list(edge_profile.sample.columns) == list(EDGE_TYPES)
    assert len(edge_profile.sample) == 200
    assert edge_profile.n_rows == 3000


def test_profile_save_load_round_trip_is_exact_and_deterministic(edge_profile: rp.ReferenceProfile, tmp_path: Path) -> None:
    first, second = edge_profile.save(tmp_path / "a"), edge_profile.save(tmp_path / "b")
    assert sorted(p.name for p in first.iterdir()) == ["numeric.parquet", "profile.json", "sample.parquet"]
    for f in first.iterdir():
        assert f.read_bytes() == (second / f.name).read_bytes(), f.name

    loaded = rp.ReferenceProfile.load(first)

    assert loaded.column_types == edge_profile.column_types
    assert loaded.n_rows == edge_profile.n_rows
    for name, ref in edge_profile.columns.items():
        got = loaded.columns[name]
        assert type(got) is type(ref)
        if isinstance(ref, rp.NumericReference):
            np.testing.assert_array_equal(got.values, ref.values)
            np.testing.assert_array_equal(got.counts, ref.counts)
            assert got.std == ref.std
        else:
            assert got.counts == ref.counts
    pd.testing.assert_frame_equal(loaded.sample, edge_profile.sample)
    current = edge_frame(1500, shifted=True, seed=2)
    assert drift.detect_drift(loaded, current) == drift.detect_drift(edge_profile, current)


def test_log_and_load_profile_through_mlflow(client: MlflowClient, edge_profile: rp.ReferenceProfile) -> None:
    run_id = tracking.upsert_run(client, "drift-tests", {"test.case": "profile"}, "profile")
    with mlflow.start_run(run_id=run_id):
        rp.log_profile(edge_profile)

    assert {a.path for a in client.list_artifacts(run_id, rp.PROFILE_ARTIFACT)} == {
        f"{rp.PROFILE_ARTIFACT}/{name}" for name in ("numeric.parquet", "profile.json", "sample.parquet")
    }
    loaded = rp.load_profile(client, run_id)
    current = edge_frame(400, shifted=True, seed=3)
    assert drift.detect_drift(loaded, current) == drift.detect_drift(edge_profile, current)


def test_profile_errors_are_clear(client: MlflowClient, edge_profile: rp.ReferenceProfile, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="active MLflow run"):
        rp.log_profile(edge_profile)
    bare = tracking.upsert_run(client, "drift-tests", {"test.case": "bare"}, "bare")
    with pytest.raises(FileNotFoundError, match=f"run {bare} has no reference_profile/profile.json"):
        rp.load_profile(client, bare)
    with pytest.raises(FileNotFoundError, match="is missing profile.json, numeric.parquet, sample.parquet"):
        rp.ReferenceProfile.load(tmp_path)


def test_build_profile_errors_name_the_column() -> None:
    frame = generate_batch(50, seed=1)
    with pytest.raises(ValueError, match="reference data is missing column\\(s\\): no_such"):
        rp.build_profile(frame, {"age": "int", "no_such": "float"})
    with pytest.raises(ValueError, match="column 'applied_at': type 'timestamp' cannot be checked"):
        rp.build_profile(frame, {"applied_at": "timestamp"})
    with pytest.raises(ValueError, match="column 'region' in the reference data should be numeric"):
        rp.build_profile(frame, {"region": "float"})
    with pytest.raises(ValueError, match="column 'age' has no non-null values in the reference data"):
        rp.build_profile(frame.assign(age=np.nan), {"age": "float"})
    with pytest.raises(ValueError, match="reference data has no rows"):
        rp.build_profile(frame.head(0), GEN_TYPES)
