"""The cooldown: which findings are sent, and the record of what fired (tags, audit)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from include.config import get_model_config
from include.monitoring import cooldown, history
from include.monitoring.assessment import HourAssessment
from include.monitoring.cooldown import due
from include.monitoring.findings import Finding

CFG = get_model_config("credit_approval")
HOUR = pd.Timestamp("2026-05-01T10:00Z")
G = pd.Timestamp("2026-11-05T12:00Z")


def _assessment(level: str, *findings: Finding, hour: pd.Timestamp = HOUR) -> HourAssessment:
    return HourAssessment(CFG.name, "3", hour.isoformat(), 500, level, "test", findings=list(findings))


def _state(name: str, level: str, value: float, hour: pd.Timestamp) -> dict:
    return {name: {"hour": hour.isoformat(), "level": level, "value": value, "version": "3"}}


DRIFT = Finding("data_drift", 0.33, 0.3)


def test_a_new_finding_is_due() -> None:
    assert due(_assessment("warning", DRIFT), {}, cooldown_hours=6) == [DRIFT]


def test_the_same_finding_is_not_repeated_within_the_cooldown() -> None:
    state = _state("data_drift", "warning", 0.33, HOUR - pd.Timedelta(hours=5))

    assert due(_assessment("warning", DRIFT), state, cooldown_hours=6) == []
    # the same hour again (a re-run or retry) sends nothing twice
    assert due(_assessment("warning", DRIFT), _state("data_drift", "warning", 0.33, HOUR), cooldown_hours=6) == []


def test_it_fires_again_after_the_cooldown() -> None:
    state = _state("data_drift", "warning", 0.33, HOUR - pd.Timedelta(hours=6))

    assert due(_assessment("warning", DRIFT), state, cooldown_hours=6) == [DRIFT]


def test_another_version_is_a_new_case() -> None:
    state = _state("data_drift", "warning", 0.33, HOUR - pd.Timedelta(hours=1))
    state["data_drift"]["version"] = "2"  # fired for the version before a redeployment

    assert due(_assessment("warning", DRIFT), state, cooldown_hours=6) == [DRIFT]


def test_it_fires_again_within_the_cooldown_when_worse() -> None:
    state = _state("data_drift", "warning", 0.33, HOUR - pd.Timedelta(hours=1))
    slightly = Finding("data_drift", 0.40, 0.3)
    much = Finding("data_drift", 0.56, 0.3)  # >= 0.33 + half the threshold

    assert due(_assessment("warning", slightly), state, cooldown_hours=6) == []
    assert due(_assessment("warning", much), state, cooldown_hours=6) == [much]
    # a higher tier is worse too
    assert due(_assessment("critical", slightly), state, cooldown_hours=6) == [slightly]


def test_a_data_quality_finding_re_fires_within_the_cooldown_when_it_grew_by_half() -> None:
    state = _state("data_quality.wrong_type.age", "warning", 0.04, HOUR - pd.Timedelta(hours=1))
    grew = Finding("data_quality.wrong_type.age", 0.059, 0.01)
    doubled = Finding("data_quality.wrong_type.age", 0.06, 0.01)

    assert due(_assessment("warning", grew), state, cooldown_hours=6) == []  # not +0.005 (half the threshold)
    assert due(_assessment("warning", doubled), state, cooldown_hours=6) == [doubled]


def test_each_gap_is_told_once() -> None:
    gap = Finding("data_quality.unassessed_hours", 1.0, 1.0, "11:00 unassessed")
    told = _state(gap.name, "warning", 1.0, G - pd.Timedelta(hours=2))

    assert due(_assessment("warning", gap, hour=G), told, cooldown_hours=6) == [gap]  # another gap, in the cooldown
    again = _state(gap.name, "warning", 1.0, G)
    assert due(_assessment("warning", gap, hour=G), again, cooldown_hours=6) == []  # a re-run of the same hour
    other = Finding("data_drift", 0.33, 0.3)  # other findings keep the cooldown
    assert due(_assessment("warning", other, hour=G), _state(other.name, "warning", 0.33, G - pd.Timedelta(hours=2)),
               cooldown_hours=6) == []


def test_what_fired_is_remembered_on_the_monitoring_run(client) -> None:
    mon_run = history.monitoring_run(client, CFG)

    cooldown.record_fired(client, mon_run, _assessment("warning", DRIFT), [DRIFT])

    state = cooldown.alert_state(client, mon_run)
    assert state["data_drift"] == {"hour": HOUR.isoformat(), "level": "warning", "value": 0.33, "version": "3"}
    assert due(_assessment("warning", DRIFT), state, cooldown_hours=6) == []


AUDITED = "credit_cooldown"


@pytest.fixture(scope="module")
def registered(client, runs) -> str:
    """Version 1 of AUDITED."""
    run_id, model_uri = runs[2]
    client.create_registered_model(AUDITED)
    return str(client.create_model_version(AUDITED, model_uri, run_id=run_id).version)


def _alert_records(tags) -> list[dict]:
    return [json.loads(v) for k, v in tags.items() if k.startswith("audit.") and k.endswith(".alert.warning")]


def test_an_alert_is_audited_on_the_version_it_concerns(client, registered) -> None:
    hour = HourAssessment(AUDITED, registered, HOUR.isoformat(), 300, "warning", "drifted", findings=[DRIFT])

    cooldown.audit_alert(client, hour, [DRIFT], ["none"], "test", "monitor_credit_cooldown", "r0")

    [record] = _alert_records(client.get_model_version(AUDITED, registered).tags)
    assert record["version"] == registered and "served_version" not in record["details"]
    assert record["details"]["findings"] == [{"name": "data_drift", "value": 0.33, "threshold": 0.3, "detail": ""}]
    assert record["details"]["actions"] == ["none"] and record["reason"] == "drifted"


def test_an_alert_about_an_unregistered_version_is_audited_on_the_model(client, registered) -> None:
    hour = HourAssessment(AUDITED, "99", HOUR.isoformat(), 300, "warning", "no profile")
    finding = Finding("data_quality.no_reference_profile", 1.0, 1.0, "version '99' is not registered")

    cooldown.audit_alert(client, hour, [finding], [], "test", "monitor_credit_cooldown", "r1")

    [record] = _alert_records(client.get_registered_model(AUDITED).tags)
    assert record["version"] is None and record["details"]["served_version"] == "99"
    assert record["details"]["findings"][0]["name"] == "data_quality.no_reference_profile"


def test_personal_data_fires_again_within_the_cooldown_only_when_it_grew_by_half() -> None:
    earlier = _state("personal_data", "warning", 10.0, HOUR - pd.Timedelta(hours=2))

    one_more = Finding("personal_data", 11.0, 1.0)
    half_again = Finding("personal_data", 15.0, 1.0)

    assert due(_assessment("warning", one_more), earlier, cooldown_hours=6) == []
    assert due(_assessment("warning", half_again), earlier, cooldown_hours=6) == [half_again]
