"""Which hour a monitoring run assesses, and the hours before it that no run assessed."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from include.config import get_model_config
from include.monitoring.windows import Gap, covered_hours, find_gap, gap_issue, hour_step, parse_hour, run_window

CFG = get_model_config("credit_approval")

NOW = pd.Timestamp("2026-11-05T12:20Z")
INTERVAL = (pd.Timestamp("2026-11-05T11:00Z"), pd.Timestamp("2026-11-05T12:00Z"))


def _span(window) -> tuple[str, str, str]:
    return f"{window.start:%d %H:%M}", f"{window.end:%d %H:%M}", window.source


def test_a_scheduled_run_assesses_its_data_interval() -> None:
    scheduled = run_window(run_type="scheduled", run_after=INTERVAL[1], data_interval=INTERVAL,
                           logical_date=INTERVAL[0], now=NOW)
    named = run_window(run_type="scheduled", run_after=INTERVAL[1], data_interval=INTERVAL,
                       logical_date=INTERVAL[0], hour="2026-11-01T00:00:00Z", now=NOW)
    backfill = run_window(run_type="backfill", run_after=INTERVAL[1], data_interval=INTERVAL,
                          logical_date=INTERVAL[0], now=NOW)

    assert _span(scheduled) == ("05 11:00", "05 12:00", "data_interval")
    assert scheduled.check_gaps and scheduled.warnings == ()
    assert _span(named) == _span(scheduled)  # a scheduled run is keyed by its interval
    assert "param 'hour' ('2026-11-01T00:00:00Z') is ignored" in named.warnings[0]
    assert _span(backfill) == _span(scheduled) and not backfill.check_gaps  # a back-fill fills gaps
    with pytest.raises(ValueError, match="scheduled run has no data interval"):
        run_window(run_type="scheduled", run_after=NOW, data_interval=(None, None), now=NOW)


@pytest.mark.parametrize("hour", [
    "2026-11-05T10:00:00Z", "2026-11-05T10:00", " 2026-11-05 10:59:59.5 ", "2026-11-05T12:30:00+02:00",
    "2026-11-05T05:15-05:00", datetime(2026, 11, 5, 10, 0, tzinfo=UTC), pd.Timestamp("2026-11-05T10:00"),
])
def test_a_manual_run_assesses_the_hour_it_names(hour) -> None:
    window = run_window(run_type="manual", run_after=NOW, hour=hour, now=NOW)

    assert _span(window) == ("05 10:00", "05 11:00", "hour") and window.check_gaps
    # the hour it names wins over the data interval a logical date gave the run
    with_date = run_window(run_type="manual", run_after=NOW, hour=hour, data_interval=INTERVAL,
                           logical_date=NOW, now=NOW)
    assert _span(with_date) == _span(window)


def test_a_manual_run_without_an_hour_assesses_the_last_complete_hour() -> None:
    assert _span(run_window(run_type="manual", run_after=NOW, now=NOW)) == ("05 11:00", "05 12:00",
                                                                            "last_complete_hour")
    assert _span(run_window(run_type="manual", run_after=pd.Timestamp("2026-11-05T12:00Z"), hour="", now=NOW)) == (
        "05 11:00", "05 12:00", "last_complete_hour")
    # without a zone, it is UTC; an asset or operator trigger is like a manual run
    assert _span(run_window(run_type="operator_triggered", run_after=datetime(2026, 11, 5, 9, 59), hour=None,
                            now=NOW))[:2] == ("05 08:00", "05 09:00")
    # given a logical date (the UI's default is the time of the trigger): its data interval, the last that ended
    ui = run_window(run_type="manual", run_after=NOW, data_interval=INTERVAL, logical_date=NOW, now=NOW)
    assert _span(ui) == ("05 11:00", "05 12:00", "data_interval") and ui.warnings == ()
    # a zero-length interval (an unscheduled DAG given a logical date): the last hour that ended by then
    exact = (pd.Timestamp("2026-11-05T12:07Z"),) * 2
    assert _span(run_window(run_type="manual", run_after=NOW, data_interval=exact, logical_date=exact[0],
                            now=NOW))[:2] == ("05 11:00", "05 12:00")


@pytest.mark.parametrize(("hour", "message"), [
    ("garbage", "param 'hour': 'garbage' is not an ISO 8601 date-time"),
    ("10:00", "param 'hour': '10:00' is not an ISO 8601 date-time"),
    ("2026-13-05T10:00Z", "param 'hour': '2026-13-05T10:00Z' is not an ISO 8601 date-time"),
    (42, r"param 'hour': 42 \(int\) is not a date-time"),
    ("2026-11-05T12:00:00Z", "names the hour 2026-11-05 12:00 UTC, which has not ended yet"),
    ("2026-11-06T00:00:00Z", "which has not ended yet"),
])
def test_a_bad_hour_is_refused_naming_the_param(hour, message) -> None:
    with pytest.raises(ValueError, match=message):
        run_window(run_type="manual", run_after=NOW, hour=hour, now=NOW)


def test_a_manual_run_given_the_logical_date_of_a_scheduled_run_is_warned_about() -> None:
    boundary = run_window(run_type="manual", run_after=NOW, data_interval=INTERVAL, logical_date=INTERVAL[1], now=NOW)
    named = run_window(run_type="manual", run_after=NOW, data_interval=INTERVAL, logical_date=INTERVAL[1],
                       hour="2026-11-05T09:00Z", now=NOW)

    assert _span(boundary) == ("05 11:00", "05 12:00", "data_interval")
    [warning] = boundary.warnings
    assert "took the logical date 2026-11-05 12:00:00+00:00" in warning and "scheduled run" in warning
    assert '"logical_date": null' in warning
    assert _span(named)[2] == "hour" and named.warnings == boundary.warnings


# --- the hours no run assessed -------------------------------------------------------------------

G = pd.Timestamp("2026-11-05T12:00Z")


def _assessed(*offsets: int, span: float = 1.0) -> dict[int, float]:
    return {hour_step(G + pd.Timedelta(hours=o)): span for o in offsets}


def test_find_gap_lists_the_hours_since_the_last_assessed_one() -> None:
    assert find_gap({}, G) is None  # the model's first assessment
    assert find_gap(_assessed(-3, -2, -1), G) is None
    assert find_gap(_assessed(-3, -2, -1, 0, 1), G) is None  # a re-assessment of G
    assert find_gap(_assessed(-1, 2), G) is None  # windows at or after G do not count

    gap = find_gap(_assessed(-4, -3), G)
    assert [f"{h:%H}" for h in gap.hours] == ["10", "11"] and gap.last_assessed == G - pd.Timedelta(hours=3)
    assert not gap.beyond_lookback
    # a hole before the last assessed hour was the previous run's to report
    assert find_gap(_assessed(-3, -1), G) is None
    assert [f"{h:%H}" for h in find_gap(_assessed(-3, -1), G - pd.Timedelta(hours=1)).hours] == ["10"]


def test_find_gap_counts_the_hours_a_longer_window_covered() -> None:
    assert find_gap(_assessed(-3, span=3.0), G) is None  # 09:00-12:00
    assert [f"{h:%H}" for h in find_gap(_assessed(-3, span=2.0), G).hours] == ["11"]
    assert find_gap(_assessed(-1, span=4.0), G) is None  # a window past G


def test_find_gap_looks_back_a_bounded_number_of_hours() -> None:
    gap = find_gap(_assessed(-200), G, lookback_hours=168)

    assert len(gap.hours) == 168 and gap.hours[-1] == G - pd.Timedelta(hours=1) and gap.beyond_lookback
    assert gap.last_assessed == G - pd.Timedelta(hours=200)
    issue = gap_issue(CFG, gap)
    assert (issue.kind, issue.count, issue.value, issue.threshold, issue.fires) == ("unassessed_hours", 168, 168.0,
                                                                                    1.0, True)
    assert "none was assessed in the 168 h looked back; the last assessed hour started 2026-10-28 04:00 UTC" \
        in issue.detail


def test_the_gap_finding_names_the_hours_and_the_run_that_assesses_one() -> None:
    gap = find_gap(_assessed(-6, -4), G)  # 09:00, 10:00, 11:00 unassessed
    issue = gap_issue(CFG, gap)

    assert issue.name == "data_quality.unassessed_hours" and issue.count == 3
    assert "3 hour(s) before this one were not assessed by any monitoring run (hours starting, UTC): " \
           "2026-11-05 09:00 to 2026-11-05 11:00 (3 h); the last assessed hour before them started " \
           "2026-11-05 08:00 UTC" in issue.detail
    assert 'manual run of monitor_credit_approval: logical_date null, conf {"hour": "2026-11-05T11:00:00Z"}' \
        in issue.detail
    many = gap_issue(CFG, Gap(tuple(G - pd.Timedelta(hours=2 * k) for k in range(7, 0, -1)),
                                                    G - pd.Timedelta(hours=15), 168))
    assert "2 earlier span(s), 2026-11-05 02:00, 2026-11-05 04:00" in many.detail


def test_an_hour_step_is_hours_since_the_epoch() -> None:
    assert hour_step(pd.Timestamp("1970-01-01T05:59Z")) == 5
    assert hour_step(pd.Timestamp("2026-11-05T12:00Z")) == hour_step(pd.Timestamp("2026-11-05T13:00+01:00"))
    assert parse_hour("2026-11-05T12:59:59Z") == pd.Timestamp("2026-11-05T12:00Z")


def test_covered_hours_counts_the_hours_a_window_touches() -> None:
    start = pd.Timestamp("2026-11-05T10:00Z")
    assert covered_hours(start, start + pd.Timedelta(hours=1)) == 1
    assert covered_hours(start, start + pd.Timedelta(hours=3)) == 3
    assert covered_hours(start + pd.Timedelta(minutes=30), start + pd.Timedelta(hours=1, minutes=30)) == 2
    assert covered_hours(start, start) == 1
