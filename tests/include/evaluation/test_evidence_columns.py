"""Tests for include.evaluation.columns: bands derived from a numeric feature, and group tokens for metric keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.config import DerivedColumn, EvidenceConfig
from include.evaluation.columns import MISSING, band, group_frame, value_token

AGE_BAND = DerivedColumn.model_validate({"name": "age_band", "from": "age", "bins": [30, 50]})


def test_bands_are_left_closed_with_open_ends_and_a_missing_band() -> None:
    ages = pd.Series(pd.array([18, 29, 30, 49, 50, 90, None], dtype="Int64"), index=list("abcdefg"))

    got = band(ages, AGE_BAND)

    assert list(got) == ["lt30", "lt30", "30-50", "30-50", "ge50", "ge50", MISSING]
    assert list(got.index) == list("abcdefg")


def test_float_cut_points_and_given_labels() -> None:
    derived = DerivedColumn.model_validate({"name": "dti_band", "from": "debt_to_income", "bins": [0.2, 0.35],
                                            "labels": ["low", "mid", "high"]})
    values = pd.Series([0.0, 0.19999, 0.2, 0.3499, 0.35, np.nan, float("inf")])

    assert list(band(values, derived)) == ["low", "low", "mid", "mid", "high", MISSING, "high"]
    assert DerivedColumn.model_validate({"name": "x", "from": "y", "bins": [0.2, 0.35]}).band_labels == [
        "lt0.2", "0.2-0.35", "ge0.35"]


@pytest.mark.parametrize(("value", "token"), [
    ("north", "north"), ("New York", "New York"), ("a/b<c>", "a_b_c_"), ("", "_"), (None, MISSING),
    (float("nan"), MISSING), (pd.NA, MISSING), (3.0, "3"), (2.5, "2.5"), (7, "7"), (True, "True"),
])
def test_value_tokens_are_valid_mlflow_key_parts(value: object, token: str) -> None:
    assert value_token(value) == token


def test_group_frame_uses_derived_columns_and_features() -> None:
    evidence = EvidenceConfig(derived_columns=[AGE_BAND])
    frame = pd.DataFrame({"age": [25, 40, 70], "region": ["north", None, "west"]})

    groups = group_frame(frame, ["age_band", "region"], evidence)

    assert groups.to_dict("list") == {"age_band": ["lt30", "30-50", "ge50"], "region": ["north", MISSING, "west"]}
    with pytest.raises(ValueError, match="no column 'income'"):
        group_frame(frame, ["income"], evidence)
