"""Business KPIs from predictions joined to their delayed labels, and their drops below a baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.config import KpiConfig, get_model_config
from include.monitoring.kpis import compute_kpis, drops

CFG = get_model_config("credit_approval")
KPIS = [
    KpiConfig(name="approval_rate", metric="approval_rate", max_drop=0.1, min_rows=2),
    KpiConfig(name="default_precision", metric="precision", max_drop=0.1, min_rows=2),
    KpiConfig(name="default_recall", metric="recall", max_drop=0.1, min_rows=2),
    KpiConfig(name="repayment_rate", metric="outcome_per_unit", per="loan_amount", max_drop=0.1, min_rows=2),
]


def _frame() -> pd.DataFrame:
    # threshold 0.5: rows 0-2 declined, 3-5 approved; row 5 has no outcome yet
    return pd.DataFrame({
        "request_id": [f"r{i}" for i in range(6)],
        "prediction": [0.9, 0.7, 0.6, 0.2, 0.1, 0.3],
        "loan_amount": [100.0, 100.0, 100.0, 200.0, 100.0, 50.0],
        "defaulted": [1, 0, 1, 1, 0, np.nan],
        "repaid_amount": [10.0, 100.0, 20.0, 50.0, 100.0, np.nan],
    })


def test_each_kpi_is_computed_on_the_rows_it_applies_to() -> None:
    got = compute_kpis(CFG, KPIS, _frame())

    assert got["approval_rate"].value == pytest.approx(3 / 6) and got["approval_rate"].rows == 6
    assert got["default_precision"].value == pytest.approx(2 / 3)  # declined & labelled: 3, of which 2 defaulted
    assert got["default_recall"].value == pytest.approx(2 / 3)  # defaults: rows 0, 2, 3; declined: 0, 2
    assert got["repayment_rate"].value == pytest.approx((50 + 100) / (200 + 100))  # approved & labelled: 3, 4
    assert got["repayment_rate"].rows == 2  # its denominator: approved, labelled rows
    assert got["default_precision"].rows == 3 and got["default_recall"].rows == 3


def test_too_few_rows_gives_no_value() -> None:
    frame = _frame().assign(defaulted=[1, np.nan, np.nan, np.nan, np.nan, np.nan])

    got = compute_kpis(CFG, KPIS, frame)

    assert got["default_precision"].value is None and got["default_precision"].rows == 1
    assert got["approval_rate"].value == pytest.approx(0.5)


def test_invalid_predictions_and_unusable_values_count_in_no_kpi() -> None:
    broken = pd.DataFrame({  # the rows of _frame(), then four without a usable score
        "request_id": [f"b{i}" for i in range(4)],
        "prediction": [np.nan, np.inf, 1.5, -0.1],
        "loan_amount": 100.0, "defaulted": 1, "repaid_amount": 0.0,
    })
    frame = pd.concat([_frame(), broken], ignore_index=True)

    got = compute_kpis(CFG, KPIS, frame)

    assert got["approval_rate"].value == pytest.approx(3 / 6) and got["approval_rate"].rows == 6
    assert got["default_recall"].value == pytest.approx(2 / 3) and got["default_recall"].rows == 3
    assert got["repayment_rate"].value == pytest.approx((50 + 100) / (200 + 100))
    # an approved row without a loan amount, or with a repaid amount that is not a number, is left out
    odd = _frame().astype({"repaid_amount": object})
    odd.loc[3, "loan_amount"] = np.nan
    odd.loc[4, "repaid_amount"] = "n/a"
    odd_kpis = compute_kpis(CFG, KPIS, odd)
    assert odd_kpis["repayment_rate"].value is None and odd_kpis["repayment_rate"].rows == 0
    assert compute_kpis(CFG, KPIS, _frame().assign(prediction=np.nan))["approval_rate"].value is None


def test_a_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match=r"repayment_rate.*\['repaid_amount'\]"):
        compute_kpis(CFG, KPIS, _frame().drop(columns=["repaid_amount"]))


def test_drops_are_positive_when_worse_and_only_where_both_are_known() -> None:
    values = compute_kpis(CFG, KPIS, _frame())

    fell = drops(KPIS, values, {"approval_rate": 0.8, "repayment_rate": 0.4})

    assert fell == {"approval_rate": pytest.approx(0.3), "repayment_rate": pytest.approx(0.4 - 0.5)}
