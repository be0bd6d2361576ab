"""The one finding type, from the assessment through the cooldown and alerts to Slack."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from include.monitoring.alerts import Alert, slack_message
from include.monitoring.assessment import HourAssessment
from include.monitoring.findings import Finding


def test_values_are_stored_as_floats() -> None:
    finding = Finding("data_quality.unassessed_hours", np.int64(3), 1, "3 hours")

    assert (finding.value, finding.threshold) == (3.0, 1.0)
    assert type(finding.value) is float and type(finding.threshold) is float  # JSON-ready, XCom-ready
    assert asdict(finding) == {"name": "data_quality.unassessed_hours", "value": 3.0, "threshold": 1.0,
                               "detail": "3 hours"}


@pytest.mark.parametrize(("args", "message"), [
    (("", 0.5, 0.3), "finding name: must not be empty"),
    (("data_drift", "high", 0.5), "finding 'data_drift' value: expected a number, got 'high'"),
    (("data_drift", 0.6, None), "finding 'data_drift' threshold: expected a number, got None"),
    (("data_drift", True, 0.5), "finding 'data_drift' value: expected a number, got True"),
])
def test_a_bad_finding_is_named(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        Finding(*args)


def test_an_assessments_findings_go_into_an_alert_unconverted() -> None:
    """What the assess task returns (an XCom) comes back as the same findings, which an Alert carries as they are."""
    found = [Finding("critical", 0.6, 0.5, "drift 0.60 >= 0.5 and kpi.approval_rate beyond max_drop"),
             Finding("kpi.approval_rate", 0.2, 0.15, "approval_rate 0.6000 vs baseline 0.8000 (holdout)")]
    hour = HourAssessment("credit_approval", "3", "2026-05-01T10:00:00+00:00", 400, "critical", "r", findings=found)

    back = HourAssessment.from_dict(hour.as_dict())
    alert = Alert("critical", "credit_approval", "3", "t", findings=tuple(back.findings))

    assert back.findings == found and all(type(f) is Finding for f in back.findings)
    assert alert.findings == tuple(found)
    texts = [b["text"]["text"] for b in slack_message(alert)["blocks"][2:]]
    assert texts == ["*critical*: value *0.6* ≥ threshold 0.5\ndrift 0.60 &gt;= 0.5 and kpi.approval_rate beyond max_drop",
                     "*kpi.approval_rate*: value *0.2* ≥ threshold 0.15\napproval_rate 0.6000 vs baseline 0.8000 (holdout)"]
