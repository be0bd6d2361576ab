"""A finding: a measured value that crossed its threshold, with the evidence in words.

The one type from the assessment to Slack: :func:`include.monitoring.assessment.assess` makes the
hour's findings, :mod:`include.monitoring.cooldown` decides which are due and remembers the ones
that fired, and an :class:`include.monitoring.alerts.Alert` carries them to the log, the audit
record and the Slack message.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """A measured ``value`` that crossed its ``threshold``; ``detail``: the evidence, in words.

    ``name``: what was measured, e.g. ``data_drift`` (share of drifted features), ``kpi.<name>``
    (the KPI's drop below its baseline), ``data_quality.<kind>[.<column>]``, ``personal_data`` (rows of
    the hour's inputs holding personal data; counts only, never values) or ``critical``.
    ``value`` and ``threshold`` are stored as floats (a share, a drop, a count, as the name says).
    Raises ``ValueError`` for an empty name or a value or threshold that is not a real number.
    """

    name: str
    value: float
    threshold: float
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("finding name: must not be empty")
        for key in ("value", "threshold"):
            raw = getattr(self, key)
            if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
                raise ValueError(f"finding {self.name!r} {key}: expected a number, got {raw!r}")
            object.__setattr__(self, key, float(raw))
