"""Tests for include.data.fingerprint: full-content, layout-independent dataset fingerprints."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.data.dataset import read_dataset, write_dataset
from include.data.fingerprint import dataset_fingerprint, mlflow_digest, row_digests, schema_hash
from include.demo.datagen import COLUMN_TYPES, CORRUPTIONS, generate_batch

N = 2000


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return generate_batch(N, seed=11)


@pytest.fixture(scope="module")
def base(batch: pd.DataFrame) -> str:
    return dataset_fingerprint(batch, COLUMN_TYPES)


def _edit(df: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    out = df.copy()
    out[column] = out[column].astype(object) if value is None else out[column]
    out.loc[row, column] = value
    return out


def test_format_and_determinism(batch: pd.DataFrame, base: str) -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", base)
    assert dataset_fingerprint(batch.copy(), COLUMN_TYPES) == base
    assert dataset_fingerprint(generate_batch(N, seed=11), COLUMN_TYPES) == base


def test_covers_the_last_row(batch: pd.DataFrame, base: str) -> None:
    assert dataset_fingerprint(_edit(batch, N - 1, "region", "nowhere"), COLUMN_TYPES) != base


def test_stable_under_row_order_column_order_and_index(batch: pd.DataFrame, base: str) -> None:
    shuffled = batch.sample(frac=1.0, random_state=1)  # keeps the shuffled index
    assert dataset_fingerprint(shuffled, COLUMN_TYPES) == base
    assert dataset_fingerprint(batch[sorted(batch.columns, reverse=True)], COLUMN_TYPES) == base
    assert dataset_fingerprint(batch.set_axis(np.arange(N) * 7), COLUMN_TYPES) == base


@pytest.mark.parametrize("corruption", [None, *sorted(CORRUPTIONS)])
def test_stable_under_file_layout(tmp_path: Path, corruption: str | None) -> None:
    df = generate_batch(N, seed=12, corruption=corruption)
    expected = dataset_fingerprint(df, COLUMN_TYPES)
    write_dataset(df, str(tmp_path / "d.parquet"))
    write_dataset(df, str(tmp_path / "d.csv"))
    write_dataset(df, str(tmp_path / "parts"), partition_cols=["region", "home_ownership"])
    for name in ("d.parquet", "d.csv", "parts"):
        assert dataset_fingerprint(read_dataset(str(tmp_path / name)), COLUMN_TYPES) == expected, name


def test_inferred_types_match_declared_for_in_memory_frames(batch: pd.DataFrame, base: str) -> None:
    assert dataset_fingerprint(batch) == base


def _edits(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    income = df.loc[5, "annual_income"]
    return {
        "float 1e-9 relative": _edit(df, 5, "annual_income", income * (1 + 1e-9)),
        "category": _edit(df, 5, "region", "south" if df.loc[5, "region"] != "south" else "north"),
        "int": _edit(df, 5, "age", df.loc[5, "age"] + 1),
        "timestamp": _edit(df, 5, "applied_at", df.loc[5, "applied_at"] + pd.Timedelta(seconds=1)),
        "null float": _edit(df, 5, "annual_income", np.nan),
        "null category": _edit(df, 5, "region", None),
        "null int": df.assign(age=df["age"].astype("Int64").mask(df.index == 5)),
        "duplicated row": pd.concat([df, df.iloc[[5]]]),
        "removed row": df.drop(index=5),
        "renamed column": df.rename(columns={"region": "area"}),
    }


def test_every_single_change_is_detected(batch: pd.DataFrame, base: str) -> None:
    fingerprints = {name: dataset_fingerprint(df, COLUMN_TYPES) for name, df in _edits(batch).items()}
    for name, value in fingerprints.items():
        assert value != base, name
    assert len(set(fingerprints.values())) == len(fingerprints)


def test_duplicates_count_as_a_multiset() -> None:
    a, b = {"k": ["a"], "v": [1]}, {"k": ["b"], "v": [2]}
    aab = pd.concat([pd.DataFrame(x) for x in (a, a, b)])
    abb = pd.concat([pd.DataFrame(x) for x in (a, b, b)])
    ab = pd.concat([pd.DataFrame(x) for x in (a, b)])
    assert len({dataset_fingerprint(df) for df in (aab, abb, ab)}) == 3
    assert dataset_fingerprint(pd.concat([ab, ab])) != dataset_fingerprint(ab)


def test_nulls_differ_from_look_alike_values() -> None:
    strings = [dataset_fingerprint(pd.DataFrame({"s": [v, "x"]})) for v in (None, "None", "", "nan", "<NA>")]
    assert len(set(strings)) == len(strings)
    ints = {"n": "int"}
    assert dataset_fingerprint(pd.DataFrame({"n": [0, 1]}), ints) != dataset_fingerprint(
        pd.DataFrame({"n": [None, 1]}), ints
    )
    assert dataset_fingerprint(pd.DataFrame({"f": [0.0, 1.0]})) != dataset_fingerprint(
        pd.DataFrame({"f": [np.nan, 1.0]})
    )


def test_canonicalisation_by_declared_type() -> None:
    types = {"n": "int", "f": "float", "t": "timestamp", "b": "bool", "c": "category"}
    typed = pd.DataFrame(
        {
            "n": pd.array([1, None], dtype="Int64"),
            "f": [0.0, 2.5],
            "t": pd.to_datetime(["2026-01-01T01:00:00Z", "2026-01-02T00:00:00Z"]),
            "b": [True, False],
            "c": pd.Categorical(["x", None]),
        }
    )
    loose = pd.DataFrame(
        {
            "n": [1.0, np.nan],  # how CSV reads an int column with nulls
            "f": [-0.0, 2.5],
            "t": pd.to_datetime(["2026-01-01T02:00:00+01:00", "2026-01-02T01:00:00+01:00"]).tz_convert("Europe/Paris"),
            "b": ["True", "false"],
            "c": ["x", np.nan],
        }
    )
    assert dataset_fingerprint(loose, types) == dataset_fingerprint(typed, types)
    assert schema_hash(loose, types) == schema_hash(typed, types)


def test_bad_data_is_still_fingerprinted() -> None:
    bad = generate_batch(N, seed=13, corruption="wrong_types")
    clean = generate_batch(N, seed=13)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", dataset_fingerprint(bad, COLUMN_TYPES))
    assert dataset_fingerprint(bad, COLUMN_TYPES) != dataset_fingerprint(clean, COLUMN_TYPES)
    assert schema_hash(bad, COLUMN_TYPES) != schema_hash(clean, COLUMN_TYPES)


def test_schema_hash(batch: pd.DataFrame) -> None:
    expected = schema_hash(batch, COLUMN_TYPES)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", expected)
    assert schema_hash(batch[sorted(batch.columns, reverse=True)], COLUMN_TYPES) == expected
    assert schema_hash(generate_batch(50, seed=99), COLUMN_TYPES) == expected
    assert schema_hash(batch) == expected
    assert schema_hash(batch.rename(columns={"age": "years"})) != expected
    assert schema_hash(batch.drop(columns="age")) != expected
    assert schema_hash(batch.assign(age=batch["age"].astype(float))) != expected


def test_row_digests_follow_rows(batch: pd.DataFrame) -> None:
    digests = row_digests(batch, COLUMN_TYPES)
    assert digests.dtype == np.uint64 and digests.shape == (N,)
    assert len(set(digests.tolist())) == N
    shuffled = batch.sample(frac=1.0, random_state=2)
    np.testing.assert_array_equal(row_digests(shuffled, COLUMN_TYPES), digests[shuffled.index.to_numpy()])
    # A row's digest does not depend on the other rows.
    np.testing.assert_array_equal(row_digests(batch.iloc[:10], COLUMN_TYPES), digests[:10])


def test_empty_frame() -> None:
    empty = generate_batch(0)
    assert dataset_fingerprint(empty, COLUMN_TYPES) != dataset_fingerprint(generate_batch(1), COLUMN_TYPES)
    assert row_digests(empty, COLUMN_TYPES).shape == (0,)


def test_bad_declarations_are_named() -> None:
    with pytest.raises(ValueError, match="'n'"):
        dataset_fingerprint(pd.DataFrame({"n": [1]}), {"n": "integer"})
    with pytest.raises(ValueError, match="dup"):
        dataset_fingerprint(pd.DataFrame([[1, 2]], columns=["dup", "dup"]))


# Fingerprints are long-lived lineage (version tags, quarantine records): a change to the canonical form
# must be a deliberate one (a new FORMAT_TAG), never a side effect. These rows and their fingerprint are fixed.
PINNED_TYPES = {"id": "string", "when": "timestamp", "n": "int", "x": "float", "zip": "category", "ok": "bool"}
PINNED_FINGERPRINT = "sha256:c90e1d114e9d2fac295857d63515923e3f1e63adf1dffa01339f5a50b5e566a2"


def _pinned_rows() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a", "b", "c", "d"],
        "when": pd.to_datetime(["2026-01-01T00:00:00Z", "2026-01-01T12:30:00Z", None, "2026-02-28T23:59:59.5Z"],
                               format="ISO8601"),
        "n": pd.array([1, -2, None, 2**40], dtype="Int64"),
        "x": [0.1, -0.0, float("nan"), 1e300],
        "zip": ["01234", "a b", None, "00501"],  # CSV cannot tell "" from a null: no "" here
        "ok": pd.array([True, False, None, True], dtype="boolean"),
    })


def test_a_fixed_dataset_keeps_its_fingerprint(tmp_path: Path) -> None:
    rows = _pinned_rows()
    assert dataset_fingerprint(rows, PINNED_TYPES) == PINNED_FINGERPRINT
    write_dataset(rows, str(tmp_path / "pinned.csv"))
    write_dataset(rows, str(tmp_path / "pinned.parquet"))
    for name in ("pinned.csv", "pinned.parquet"):  # through the typed reader, from either format
        assert dataset_fingerprint(read_dataset(str(tmp_path / name), PINNED_TYPES), PINNED_TYPES) == PINNED_FINGERPRINT


def test_the_mlflow_digest_is_the_fingerprints_first_32_hex_characters() -> None:
    assert mlflow_digest(PINNED_FINGERPRINT) == "c90e1d114e9d2fac295857d63515923e"
    for bad in ("c90e1d114e9d2fac295857d63515923e", "sha256:abc", "md5:" + "0" * 64, "sha256:" + "G" * 64):
        with pytest.raises(ValueError, match="not a dataset fingerprint"):
            mlflow_digest(bad)
