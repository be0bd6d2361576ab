"""Training attempts recorded on the MLflow run that all attempts of one Airflow run share.

The run is opened by the validation step (``tracking.upsert_run``) and every attempt of the
training task logs into it. Each attempt writes the tag ``modelops.train.attempt.<n>`` (``n`` is
Airflow's try number): ``running on <host> pid <pid>`` when it starts, then ``succeeded``,
``failed: …`` or ``killed: …``.

An attempt whose tag still says ``running`` when a later attempt starts ended without a word:
its worker was SIGKILLed, ran out of memory or lost its machine (its training process died with it,
see ``LocalTrainingOperator``). The later attempt records it as ``killed``, closes the run as
``KILLED`` with ``modelops.train.killed_attempt=<n>``, then trains again into the same run, which
MLflow reopens (``RUNNING``) when the entrypoint starts logging. The run's final status is that of
the last attempt; the tags keep the history.
"""

from __future__ import annotations

import logging
import re

from mlflow.tracking import MlflowClient

from include.tracking import close_run

log = logging.getLogger(__name__)

ATTEMPT_TAG = "modelops.train.attempt.{}"
KILLED_ATTEMPT_TAG = "modelops.train.killed_attempt"
RUNNING = "running"
_ATTEMPT_KEY = re.compile(r"^modelops\.train\.attempt\.([0-9]+)$")
# Statuses of a run that is still open for this Airflow run (FINISHED: the entrypoint ended its `with` block).
_OPEN = ("RUNNING", "SCHEDULED", "FINISHED")


def begin(client: MlflowClient, run_id: str, attempt: int, where: str) -> list[int]:
    """Record that attempt ``attempt`` starts on ``where``, first closing attempts that died silently.

    Returns the numbers of the earlier attempts found still ``running`` and now recorded as killed
    (the run is then closed as ``KILLED``, unless already ``FAILED`` / ``KILLED``).
    """
    tags = client.get_run(run_id).data.tags
    abandoned = sorted(
        int(m.group(1))
        for key, value in tags.items()
        if (m := _ATTEMPT_KEY.match(key)) and int(m.group(1)) != attempt and value.startswith(RUNNING)
    )
    for n in abandoned:
        log.warning("Training attempt %s of MLflow run %s ended without recording it: recording it as killed", n, run_id)
        client.set_tag(run_id, ATTEMPT_TAG.format(n),
                       f"killed: ended without recording its end (was {tags[ATTEMPT_TAG.format(n)]!r}); "
                       f"found by attempt {attempt}")
    if abandoned:
        client.set_tag(run_id, KILLED_ATTEMPT_TAG, str(abandoned[-1]))
        close_run(client, run_id, "KILLED",
                  f"killed: training attempt {abandoned[-1]} died with its worker; attempt {attempt} retrains",
                  only_if=_OPEN)
    client.set_tag(run_id, ATTEMPT_TAG.format(attempt), f"{RUNNING} on {where}")
    return abandoned


def end(client: MlflowClient, run_id: str, attempt: int, outcome: str) -> None:
    """Record how attempt ``attempt`` ended: ``outcome`` is e.g. ``succeeded`` or ``failed: exit 2 (bad input)``."""
    client.set_tag(run_id, ATTEMPT_TAG.format(attempt), outcome)


def killed(client: MlflowClient, run_id: str, attempt: int, reason: str) -> None:
    """Record that attempt ``attempt`` was stopped from outside (``reason``: execution timeout, on_kill…).

    The attempt's tag becomes ``killed: <reason>`` and the run is closed as ``KILLED`` with
    ``modelops.train.killed_attempt`` naming the attempt, unless it is already FAILED / KILLED.
    """
    end(client, run_id, attempt, f"killed: {reason}")
    client.set_tag(run_id, KILLED_ATTEMPT_TAG, str(attempt))
    close_run(client, run_id, "KILLED", f"killed: training attempt {attempt} ({reason})", only_if=_OPEN)
