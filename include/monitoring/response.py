"""What an assessed hour leads to: which version served it, what is done, and whether a rollback can be.

Pure decisions, no I/O: the monitoring DAG's tasks (``modelops.monitoring.tasks``) read the
aliases and the inference log, and wire these answers to the rollback and retraining runs.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from include.monitoring.assessment import CRITICAL
from include.monitoring.findings import Finding

ROLL_BACK_AND_RETRAIN = "critical"
WARN = "warning"
NOTHING = "none"


def served_version(model_versions: pd.Series, champion: str | None) -> str | None:
    """The version that served the hour: the one most of its logged predictions name, else ``champion``.

    ``model_versions``: the inference log's ``model_version`` column for the hour (nulls ignored;
    a tie goes to the smallest, as text); ``champion``: the version the ``champion`` alias points
    at now (None when none), the answer for an hour without a logged version.
    """
    modes = model_versions.dropna().astype(str).mode()
    return str(modes.iloc[0]) if len(modes) else champion


def action(due: Iterable[Finding]) -> str:
    """``critical`` (roll back and retrain) when a ``critical`` finding is due, ``warning`` when any
    other is, ``none`` when nothing is due (after the cooldown: :func:`include.monitoring.cooldown.due`)."""
    names = [f.name for f in due]
    return ROLL_BACK_AND_RETRAIN if CRITICAL in names else WARN if names else NOTHING


def can_roll_back(served: str | None, champion: str | None, previous_champion: str | None) -> bool:
    """Whether rolling back moves the model away from the version that served the hour.

    Only when that version is still the champion (a version already replaced is not live any more)
    and a previous champion other than it exists to go back to. Versions as text, None when the
    alias is not set.
    """
    return (served is not None and champion is not None and str(champion) == str(served)
            and previous_champion is not None and str(previous_champion) != str(served))
