"""Wait in the triggerer until monitoring has enough live evidence of the challenger, or a deadline passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def challenger_evidence(model: str, version: str) -> tuple[dict, bool]:
    """(:meth:`include.monitoring.challenger.Evidence.as_dict` of ``version``, whether the gate can judge it).

    Without another champion there is nothing to compare with: ready at once (the gate passes).
    """
    from include.config import get_model_config
    from include.governance.gates import shadow_evidence_ready
    from include.monitoring import challenger, history
    from include.promotion import registry
    from modelops.mlflow_hook import MlflowHook

    config = get_model_config(model)
    client = MlflowHook().client
    champion = registry.alias_version(client, model, registry.CHAMPION)
    if champion is None or str(champion.version) == str(version):
        return {}, True
    found = challenger.evidence(client, history.monitoring_run(client, config), version).as_dict()
    return found, shadow_evidence_ready(config, found)


class ShadowEvidenceTrigger(BaseTrigger):
    """Reads the monitoring run every ``poll_seconds`` (in a thread: MLflow's client is synchronous) until
    the evidence of ``version`` is enough (``status: ready``) or ``deadline`` (epoch seconds) passes
    (``status: deadline``); the event carries the evidence either way."""

    def __init__(self, *, model: str, version: str, deadline: float, poll_seconds: float) -> None:
        super().__init__()
        self.model = model
        self.version = str(version)
        self.deadline = deadline
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"model": self.model, "version": self.version, "deadline": self.deadline,
                 "poll_seconds": self.poll_seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                evidence, ready = await asyncio.to_thread(challenger_evidence, self.model, self.version)
            except Exception as exc:  # noqa: BLE001 - MLflow unreachable for a while: keep waiting until the deadline
                self.log.warning("Cannot read the challenger evidence of %s version %s: %s", self.model, self.version, exc)
                evidence, ready = None, False
            if ready or time.time() >= self.deadline:
                yield TriggerEvent({"status": "ready" if ready else "deadline", "model": self.model,
                                    "version": self.version, "evidence": evidence})
                return
            self.log.info("%s version %s: live evidence so far %s", self.model, self.version, evidence)
            await asyncio.sleep(min(self.poll_seconds, max(1.0, self.deadline - time.time())))
