"""Delayed labels (ground truth): written by arrival day, read back one row per request, joined to an hour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.config import get_model_config
from include.monitoring.delayed_labels import join_labels, log_labels, read_labels

CFG = get_model_config("credit_approval")
HOUR = pd.Timestamp("2026-03-02T10:00Z")


def test_labels_are_read_by_arrival_day_and_later_arrivals_win(tmp_path) -> None:
    log_labels(tmp_path, pd.DataFrame({"request_id": ["a", "b"], "defaulted": [0, 1]}), arrived_at="2026-03-01T10:00Z")
    log_labels(tmp_path, pd.DataFrame({"request_id": ["b"], "defaulted": [0]}), arrived_at="2026-03-03T10:00Z")
    log_labels(tmp_path, pd.DataFrame({"request_id": ["c"], "defaulted": [1]}), arrived_at="2026-03-09T10:00Z")

    got = read_labels(tmp_path, "2026-03-01T09:00Z", "2026-03-05T00:00Z", columns=["defaulted"])

    assert dict(zip(got["request_id"], got["defaulted"], strict=True)) == {"a": 0, "b": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["date=2026-03-01", "date=2026-03-03", "date=2026-03-09"]


def test_labels_need_request_ids(tmp_path) -> None:
    with pytest.raises(ValueError, match="delayed labels need a 'request_id' column"):
        log_labels(tmp_path, pd.DataFrame({"id": ["a"], "defaulted": [0]}))
    with pytest.raises(ValueError, match="delayed labels: 1 row"):
        log_labels(tmp_path, pd.DataFrame({"request_id": ["a", None], "defaulted": [0, 1]}))
    assert read_labels(tmp_path, "2026-01-01", "2026-01-02", columns=["defaulted"]).empty


def test_a_label_file_that_cannot_be_read_is_named(tmp_path) -> None:
    day = tmp_path / "date=2026-03-02"
    day.mkdir()
    (day / "broken.parquet").write_bytes(b"not parquet")

    with pytest.raises(ValueError, match="label file .*broken.parquet cannot be read as Parquet"):
        read_labels(tmp_path, HOUR, HOUR, columns=["defaulted"])
    skipped: list = []
    assert read_labels(tmp_path, HOUR, HOUR, columns=["defaulted"], skipped=skipped).empty
    assert [(p.name, why.split(" (")[0]) for p, why in skipped] == [("broken.parquet", "cannot be read as Parquet")]


def _config(tmp_path, **monitoring):
    mon = CFG.monitoring.model_copy(update={"outcomes_uri": str(tmp_path / "labels"), **monitoring})
    return CFG.model_copy(update={"monitoring": mon})


def _predictions(n: int) -> pd.DataFrame:
    return pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "prediction": np.linspace(0, 1, n)})


def test_the_labels_that_have_arrived_are_joined_to_the_hour(tmp_path) -> None:
    config = _config(tmp_path)
    labels = pd.DataFrame({"request_id": ["r0", "r1", "r2", "r3"], "defaulted": ["1", "0", "maybe", "1"],
                           "repaid_amount": [0.0, 100.0, 50.0, 10.0]})
    log_labels(tmp_path / "labels", labels.head(3), arrived_at=HOUR + pd.Timedelta(hours=5))
    log_labels(tmp_path / "labels", labels.tail(1), arrived_at=HOUR + pd.Timedelta(days=2))  # after "now"

    joined, issues = join_labels(config, _predictions(5), HOUR, HOUR + pd.Timedelta(hours=1),
                                 now=HOUR + pd.Timedelta(days=1))

    assert list(joined["request_id"]) == ["r0", "r1", "r2", "r3", "r4"]  # every prediction, in order
    assert joined["defaulted"].tolist()[:2] == [1.0, 0.0] and joined["defaulted"].iloc[2:].isna().all()
    assert joined["repaid_amount"].tolist()[:3] == [0.0, 100.0, 50.0]
    [wrong] = issues
    assert (wrong.name, wrong.count, wrong.value) == ("data_quality.wrong_type.defaulted", 1, pytest.approx(1 / 3))
    assert "1 of 3 arrived label value(s) of 'defaulted' are not numbers" in wrong.detail and "'maybe'" in wrong.detail


def test_without_a_labels_uri_the_label_columns_are_empty(tmp_path) -> None:
    joined, issues = join_labels(_config(tmp_path, outcomes_uri=None), _predictions(2), HOUR,
                                 HOUR + pd.Timedelta(hours=1))

    assert issues == [] and joined[["defaulted", "repaid_amount"]].isna().all().all() and len(joined) == 2
