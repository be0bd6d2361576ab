"""Which hour a monitoring run assesses, and the hours before it that no run assessed.

:func:`run_window`: a scheduled or back-fill run assesses its data interval; a manual run the hour
its ``hour`` param names, else its data interval when it was given a logical date, else the last
hour that ended before it was triggered. A manual run may assess an hour a scheduled run already
assessed (the cooldown keeps it from alerting twice).

:func:`find_gap`: every run but a back-fill looks at the hours between the last hour assessed
before its own and its own (at most :data:`GAP_LOOKBACK_HOURS` of them). Hours no run assessed
(the scheduler was down or paused, a run failed for good, or a manual run took the logical date a
scheduled run needed) become the ``unassessed_hours`` data-quality finding (:func:`gap_issue`).
The record of assessed hours is the monitoring run's ``rows`` metric
(:func:`include.monitoring.history.assessed_windows`), at the step (:func:`hour_step`) of each
window's first hour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from include.config import ModelConfig
from include.dag_ids import Stage, dag_id
from include.monitoring.data_quality import UNASSESSED_HOURS, DataQualityIssue
from include.monitoring.log_schema import utc

ONE_HOUR = pd.Timedelta(hours=1)
TIMETABLE_RUNS = frozenset({"scheduled", "backfill"})  # runs the schedule made: keyed by their data interval
GAP_LOOKBACK_HOURS = 7 * 24  # the most unassessed hours one run reports (a long outage: the latest ones)
MAX_NAMED_RANGES = 5  # spans of unassessed hours named in the finding; the rest are counted


def hour_step(hour: pd.Timestamp) -> int:
    """The MLflow metric step of an hour: hours since the Unix epoch."""
    return int(pd.Timestamp(hour).timestamp() // 3600)


@dataclass(frozen=True)
class Window:
    """What one monitoring run assesses: predictions with ``start <= ts < end`` (UTC).

    ``source``: ``hour`` (the run's ``hour`` param), ``data_interval`` (the run's data interval) or
    ``last_complete_hour`` (the last hour that ended before the run was triggered). ``check_gaps``:
    whether the run reports the hours before ``start`` that no run assessed (not a back-fill).
    ``warnings``: what is wrong with the run's dates, for the log.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    source: str
    check_gaps: bool = True
    warnings: tuple[str, ...] = ()


def parse_hour(value: object) -> pd.Timestamp:
    """The start of the UTC hour that ``value`` falls in.

    ``value``: an ISO 8601 date-time, as text (``2026-11-05T10:00:00Z``; without an offset it is
    UTC; any time within an hour names that hour) or a ``datetime``. Raises ``ValueError`` naming
    the ``hour`` param when it is neither.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"param 'hour': {value!r} is not an ISO 8601 date-time "
                             "such as 2026-11-05T10:00:00Z") from None
    if not isinstance(value, datetime):
        raise ValueError(f"param 'hour': {value!r} ({type(value).__name__}) is not a date-time "
                         "such as 2026-11-05T10:00:00Z")
    return utc(value).floor("h")


def run_window(
    *,
    run_type: str,
    run_after,
    hour: object = None,
    data_interval: tuple | None = None,
    logical_date=None,
    now: pd.Timestamp | None = None,
) -> Window:
    """The hour (or interval) a monitoring run assesses, from what Airflow knows of the run.

    ``run_type``: Airflow's (``scheduled``, ``backfill``, ``manual``, ``asset_triggered``,
    ``operator_triggered``); ``run_after``: when the run was due (a manual run: when it was
    triggered); ``hour``: the run's ``hour`` param (None or ``""``: not given); ``data_interval``:
    ``(start, end)`` or None (a manual run without a logical date has none); ``logical_date``: the
    run's, or None; ``now``: the current time (default: now). Datetimes without a zone are UTC.

    * A scheduled or back-fill run assesses its data interval; an ``hour`` is ignored (a warning).
    * Any other run (manual) assesses the hour ``hour`` names (:func:`parse_hour`), else its data
      interval when it has one (given a logical date, Airflow makes it the last interval that ended
      at or before that date), else the last hour that ended at or before ``run_after``.
    * A zero-length interval (a run of an unscheduled DAG given a logical date) means the last hour
      that ended at or before it.

    A manual run given a logical date on a schedule boundary (its data interval ends at its logical
    date) took the logical date of the scheduled run of the interval starting there: that run cannot
    be created, and its hour will be reported as unassessed; this is a warning of the window.

    Raises ``ValueError`` (naming the ``hour`` param) when ``hour`` is not a date-time or names an
    hour that has not ended by ``now``, and when a scheduled or back-fill run has no data interval.
    """
    now = utc(now if now is not None else pd.Timestamp.now(tz="UTC"))
    interval = None
    if data_interval is not None and data_interval[0] is not None and data_interval[1] is not None:
        interval = (utc(data_interval[0]), utc(data_interval[1]))
    given = hour is not None and not (isinstance(hour, str) and not hour.strip())
    warnings: list[str] = []
    if run_type in TIMETABLE_RUNS:
        if interval is None:
            raise ValueError(f"a {run_type} run has no data interval: nothing to assess")
        if given:
            warnings.append(f"a {run_type} run assesses its data interval {interval[0]} to {interval[1]}; "
                            f"its param 'hour' ({hour!r}) is ignored")
        start, end = interval
        source = "data_interval"
    else:
        if logical_date is not None and interval is not None and interval[1] == utc(logical_date):
            warnings.append(
                f"this {run_type} run took the logical date {utc(logical_date)}, the one the scheduled run of the "
                "interval starting then needs: the scheduler cannot create that run, and its hour will be reported "
                "as unassessed by the next run. Trigger manual runs with \"logical_date\": null and the hour to "
                "assess in the conf (\"hour\")")
        if given:
            start = parse_hour(hour)
            end, source = start + ONE_HOUR, "hour"
            if end > now:
                raise ValueError(f"param 'hour': {hour!r} names the hour {start:%Y-%m-%d %H}:00 UTC, which has not "
                                 f"ended yet (now {now:%Y-%m-%d %H:%M} UTC): name an hour that has ended")
        elif interval is not None:
            (start, end), source = interval, "data_interval"
        else:
            end = utc(run_after).floor("h")
            start, source = end - ONE_HOUR, "last_complete_hour"
    if end <= start:  # a zero-length interval: the last hour that ended by then
        end = end.floor("h")
        start = end - ONE_HOUR
    return Window(start, end, source, check_gaps=run_type != "backfill", warnings=tuple(warnings))


def covered_hours(start: pd.Timestamp, end: pd.Timestamp) -> int:
    """How many hours (steps) the window ``start <= ts < end`` touches (at least 1)."""
    first = pd.Timestamp(start).floor("h")
    return max(1, int(np.ceil((pd.Timestamp(end) - first) / ONE_HOUR)))


@dataclass(frozen=True)
class Gap:
    """Hours before an assessed one that no run assessed, oldest first.

    ``hours``: their starts (at most the lookback's); ``last_assessed``: the start of the last hour
    assessed before them; ``lookback_hours``: how far back was looked.
    """

    hours: tuple[pd.Timestamp, ...]
    last_assessed: pd.Timestamp
    lookback_hours: int

    @property
    def beyond_lookback(self) -> bool:
        """More unassessed hours before the ones listed (the last assessed hour is older than the lookback)."""
        return self.last_assessed + ONE_HOUR < self.hours[0]


def find_gap(assessed: Mapping[int, float], start: pd.Timestamp,
             lookback_hours: int = GAP_LOOKBACK_HOURS) -> Gap | None:
    """The hours between the last hour assessed before ``start`` and ``start`` (None when there are none).

    ``assessed``: ``{step: hours covered}`` of every assessed window
    (:func:`include.monitoring.history.assessed_windows`; step: :func:`hour_step` of its first
    hour). Hours only windows at or after ``start`` covered
    do not count; none assessed before ``start`` at all (the model's first run): None. At most
    ``lookback_hours`` hours are listed: the latest.
    """
    first = hour_step(start)
    ends = [min(step + max(1, int(np.ceil(span))), first) for step, span in assessed.items() if step < first]
    if not ends:
        return None
    last = max(ends) - 1  # the last hour assessed before start
    missing = range(max(last + 1, first - lookback_hours), first)
    if not missing:
        return None
    return Gap(tuple(pd.Timestamp(s * 3600, unit="s", tz="UTC") for s in missing),
               pd.Timestamp(last * 3600, unit="s", tz="UTC"), lookback_hours)


def gap_issue(config: ModelConfig, gap: Gap) -> DataQualityIssue:
    """The ``unassessed_hours`` issue of ``gap`` (value: its hours; always a finding), naming the hours
    and the manual run that assesses one."""
    spans: list[list[pd.Timestamp]] = []
    for hour in gap.hours:
        if spans and hour - spans[-1][-1] == ONE_HOUR:
            spans[-1].append(hour)
        else:
            spans.append([hour])
    named = [f"{s[0]:%Y-%m-%d %H}:00" + (f" to {s[-1]:%Y-%m-%d %H}:00 ({len(s)} h)" if len(s) > 1 else "")
             for s in spans[-MAX_NAMED_RANGES:]]
    if len(spans) > MAX_NAMED_RANGES:
        named.insert(0, f"{len(spans) - MAX_NAMED_RANGES} earlier span(s)")
    n = len(gap.hours)
    before = (f"none was assessed in the {gap.lookback_hours} h looked back; the last assessed hour started "
              if gap.beyond_lookback else "the last assessed hour before them started ")
    detail = (f"{n} hour(s) before this one were not assessed by any monitoring run (hours starting, UTC): "
              f"{', '.join(named)}; {before}{gap.last_assessed:%Y-%m-%d %H}:00 UTC. Assess one with a manual run "
              f"of {dag_id(Stage.MONITOR, config.name)}: logical_date null, "
              f"conf {{\"hour\": \"{gap.hours[-1]:%Y-%m-%dT%H}:00:00Z\"}}")
    return DataQualityIssue(UNASSESSED_HOURS, None, n, float(n), 1.0, detail)
