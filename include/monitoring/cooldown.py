"""The cooldown: which findings of an hour are sent, and the record of what fired.

A finding that fired is not repeated within ``cooldown_hours`` of the hour it fired for, unless it
got worse (a higher tier, or a value at least :data:`WORSE_FRACTION` of its threshold beyond the
one that fired; for a data-quality finding, of the larger of its threshold and that value) or
another version serves now (a fresh deployment that goes bad is rolled back too). The
``unassessed_hours`` finding reported for another hour is another gap: due whatever the cooldown.

What fired is kept as tags on the model's monitoring run (:func:`record_fired`), so re-running an
hour sends nothing twice; a sent alert also gets an audit record (:func:`audit_alert`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from datetime import timedelta

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from include.governance import audit
from include.monitoring.assessment import LEVELS, PERSONAL_DATA, HourAssessment
from include.monitoring.data_quality import DATA_QUALITY, GAP
from include.monitoring.findings import Finding

log = logging.getLogger(__name__)

ALERT_STATE_PREFIX = "alert_state."
WORSE_FRACTION = 0.5  # re-fire within the cooldown when the value moved this share of its threshold further


def due(assessment: HourAssessment, state: Mapping[str, dict], cooldown_hours: float) -> list[Finding]:
    """The findings to send now: new, past the cooldown since they last fired, or worse than then.

    Worse: a higher tier, or a value at least ``WORSE_FRACTION`` of the threshold beyond the one
    that fired (for ``data_quality.*`` and ``personal_data`` findings: of the larger of the threshold and
    that value).
    ``data_quality.unassessed_hours`` reported for another hour than the one it fired for is another
    gap (see the module docstring): due whatever the cooldown.
    """
    hour = pd.Timestamp(assessment.hour)
    out = []
    for finding in assessment.findings:
        last = state.get(finding.name)
        if last is None or last.get("version") != assessment.version:  # a version deployed since is a new case
            out.append(finding)
            continue
        if finding.name == GAP and last.get("hour") != assessment.hour:  # other hours than the ones told
            out.append(finding)
            continue
        since = abs(hour - pd.Timestamp(last["hour"]))
        # a data-quality value (a share, a file count) or a count of rows holding personal data is worse
        # when it grew by half of itself too (one more flagged row is not news within the cooldown)
        step = max(finding.threshold, last["value"]) \
            if finding.name.startswith(f"{DATA_QUALITY}.") or finding.name == PERSONAL_DATA else finding.threshold
        worse = LEVELS.index(assessment.level) > LEVELS.index(last["level"]) or (
            finding.value >= last["value"] + WORSE_FRACTION * step
        )
        if since >= timedelta(hours=cooldown_hours) or worse:
            out.append(finding)
        else:
            log.info("%s: %s last fired for %s (value %.4f); within the %sh cooldown and not worse: not repeated",
                     assessment.model, finding.name, last["hour"], last["value"], cooldown_hours)
    return out


def alert_state(client: MlflowClient, run_id: str) -> dict[str, dict]:
    """What fired last per finding name, from the monitoring run's tags (:func:`record_fired`).

    ``{name: {"hour": ISO hour, "level": tier, "value": float, "version": str | None}}``.
    """
    tags = client.get_run(run_id).data.tags
    return {k.removeprefix(ALERT_STATE_PREFIX): json.loads(v) for k, v in tags.items()
            if k.startswith(ALERT_STATE_PREFIX)}


def record_fired(client: MlflowClient, run_id: str, assessment: HourAssessment, fired: list[Finding]) -> None:
    """Remember ``fired`` (sent for ``assessment``) as ``alert_state.<name>`` tags on the monitoring run ``run_id``."""
    for finding in fired:
        value = {"hour": assessment.hour, "level": assessment.level, "value": finding.value,
                 "version": assessment.version}
        client.set_tag(run_id, f"{ALERT_STATE_PREFIX}{finding.name}", json.dumps(value, sort_keys=True))


def audit_alert(client: MlflowClient, assessment: HourAssessment, fired: list[Finding], actions: list[str],
                actor: str, dag_id: str | None, run_id: str | None) -> None:
    """An audit record for a sent alert (on the version it concerns), with what was done about it.

    When that version is not registered (the log named a version the registry does not know) or
    there is none, the record goes on the registered model, with the version in its details.
    """
    version = assessment.version
    if version is not None:
        try:
            client.get_model_version(assessment.model, version)
        except MlflowException:
            version = None
    audit.write(client, audit.AuditRecord(
        action=f"alert.{assessment.level}", model=assessment.model, version=version, actor=actor,
        reason=assessment.reason, dag_id=dag_id, run_id=run_id,
        details={"hour": assessment.hour, "findings": [asdict(f) for f in fired], "actions": actions,
                 **({"served_version": assessment.version} if version != assessment.version else {})},
    ))
