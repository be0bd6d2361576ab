"""The hour's comparison of the challenger with the champion, and the evidence the shadow gate reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import load_model_config
from include.monitoring import challenger, history

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
HOUR = pd.Timestamp("2026-05-01T10:00Z")


def _rows(scores, role: str, version: str, ids=None, **labels) -> pd.DataFrame:
    n = len(scores)
    return pd.DataFrame({"request_id": ids if ids is not None else [f"r{i}" for i in range(n)],
                         "model_version": version, "prediction": np.asarray(scores, dtype=float), "role": role,
                         "loan_amount": 1000.0, **labels})


def test_shadow_pairs_requests_and_measures_agreement_and_kpis_on_the_same_ones() -> None:
    champion = np.r_[np.full(60, 0.2), np.full(40, 0.8)]  # 60 approved (score < 0.5), 40 declined
    shadowed = champion.copy()
    shadowed[:10] = 0.9  # the challenger declines 10 the champion approved
    live = _rows(champion, "live", "1")
    shadow_rows = _rows(shadowed, "shadow", "2").iloc[::-1]  # order does not matter: paired by request id
    extra = _rows([0.1], "live", "1", ids=["only-live"])  # a request the challenger never saw

    hour = challenger.assess_challenger(CONFIG, pd.concat([live, extra]), shadow_rows)

    assert hour.version == "2" and hour.mode == "shadow" and hour.requests == 100
    assert hour.agreement == pytest.approx(0.9)
    assert hour.champion_kpis["approval_rate"] == pytest.approx(0.6)
    assert hour.kpis["approval_rate"] == pytest.approx(0.5)
    assert hour.drops["approval_rate"] == pytest.approx(0.1)
    assert hour.kpis["default_precision"] is None  # no label has arrived: no labelled KPI yet
    assert not hour.critical


def test_labelled_kpis_appear_as_labels_arrive() -> None:
    scores = np.r_[np.full(50, 0.8), np.full(50, 0.2)]
    defaulted = np.r_[np.ones(40), np.zeros(10), np.zeros(50)]  # of the 50 declined, 40 defaulted
    live = _rows(scores, "live", "1", defaulted=defaulted)
    shadow_rows = _rows(np.full(100, 0.8), "shadow", "2", defaulted=defaulted)  # declines everyone

    hour = challenger.assess_challenger(CONFIG, live, shadow_rows)

    assert hour.champion_kpis["default_precision"] == pytest.approx(0.8)
    assert hour.kpis["default_precision"] == pytest.approx(0.4)


def test_a_canary_that_approves_far_less_is_critical() -> None:
    live = _rows(np.full(200, 0.2), "live", "1")
    canary = _rows(np.full(100, 0.9), "canary", "2", ids=[f"c{i}" for i in range(100)])

    hour = challenger.assess_challenger(CONFIG, live, canary)

    assert hour.mode == "canary" and hour.requests == 100 and hour.agreement is None
    assert hour.drops["approval_rate"] == pytest.approx(1.0)
    assert len(hour.critical) == 1 and "approval_rate" in hour.critical[0]


def test_no_challenger_rows_no_comparison() -> None:
    assert challenger.assess_challenger(CONFIG, _rows([0.1], "live", "1"), _rows([], "shadow", "2")) is None


@pytest.fixture
def client(tmp_path: Path) -> MlflowClient:
    return tracking.configure(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_evidence_sums_the_hours_of_one_version_weighted_by_requests(client: MlflowClient) -> None:
    run_id = history.monitoring_run(client, CONFIG)
    for offset, (version, requests, agreement, drop) in enumerate([("2", 100, 0.9, 0.1), ("2", 300, 0.5, 0.0),
                                                                   ("3", 50, 1.0, -0.2)]):
        hour = challenger.ChallengerHour(version, "shadow", requests, agreement, {"approval_rate": 0.5},
                                         {"approval_rate": 0.5 + drop})
        challenger.log_challenger_hour(client, run_id, HOUR + pd.Timedelta(hours=offset), hour)

    found = challenger.evidence(client, run_id, "2")

    assert (found.hours, found.requests) == (2, 400)
    assert found.agreement == pytest.approx((100 * 0.9 + 300 * 0.5) / 400)
    assert found.kpi_drops["approval_rate"] == pytest.approx(100 * 0.1 / 400)
    assert challenger.evidence(client, run_id, "4").hours == 0
    assert challenger.evidence(client, None, "2").requests == 0
