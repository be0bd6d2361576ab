"""What an assessed hour leads to: the version that served it, the action, whether a rollback can be."""

from __future__ import annotations

import pandas as pd
import pytest

from include.monitoring.findings import Finding
from include.monitoring.response import action, can_roll_back, served_version


def test_the_version_most_predictions_name_served_the_hour() -> None:
    assert served_version(pd.Series(["2", "3", "3", None, "2", "3"]), champion="2") == "3"
    assert served_version(pd.Series(["10", "9", "10"], dtype="string"), champion=None) == "10"


def test_an_hour_without_a_logged_version_is_the_champions() -> None:
    assert served_version(pd.Series([], dtype=object), champion="4") == "4"
    assert served_version(pd.Series([None, None], dtype=object), champion="4") == "4"
    assert served_version(pd.Series([], dtype=object), champion=None) is None


def test_a_tie_goes_to_the_smallest_version_as_text() -> None:
    assert served_version(pd.Series(["3", "2", "3", "2"]), champion="3") == "2"


DRIFT = Finding("data_drift", 0.4, 0.3)
CRITICAL = Finding("critical", 0.6, 0.5)


@pytest.mark.parametrize(("due", "expected"), [
    ([], "none"),
    ([DRIFT], "warning"),
    ([DRIFT, CRITICAL], "critical"),
    ([CRITICAL], "critical"),
])
def test_the_action_follows_the_findings_due(due, expected) -> None:
    assert action(due) == expected
    assert action(iter(due)) == expected  # any iterable


@pytest.mark.parametrize(("served", "champion", "previous", "expected"), [
    ("3", "3", "2", True),  # the champion served it and there is one before it
    ("3", "3", None, False),  # the first champion: nothing to go back to
    ("3", "3", "3", False),  # the previous champion is the same version
    ("2", "3", "2", False),  # the hour was served by a version already replaced
    (None, "3", "2", False),  # no version served
    ("3", None, "2", False),  # no champion now
])
def test_a_rollback_needs_the_served_version_to_be_champion_and_another_to_go_back_to(
        served, champion, previous, expected) -> None:
    assert can_roll_back(served, champion, previous) is expected
