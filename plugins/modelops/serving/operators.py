"""Wait for a Triton model version to be READY without holding a worker slot (deferrable)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from modelops.serving.hooks import TritonHook
from modelops.serving.triggers import TritonModelReadyTrigger


class TritonModelReadyOperator(BaseOperator):
    """Defers to :class:`TritonModelReadyTrigger`; fails (no retry) if the version failed to load or timed out."""

    template_fields: Sequence[str] = ("model", "version")

    def __init__(
        self, *, model: str, version: str, timeout: float = 300, poll_interval: float = 2.0,
        triton_conn_id: str = TritonHook.default_conn_name, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.version = version
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.triton_conn_id = triton_conn_id

    def execute(self, context: Any) -> None:
        self.defer(
            trigger=TritonModelReadyTrigger(
                url=TritonHook(self.triton_conn_id).url, model=self.model, version=str(self.version),
                timeout=self.timeout, poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 60),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        if event["status"] != "ready":
            raise AirflowFailException(
                f"Triton model {event['model']} version {event['version']} is not ready: {event.get('reason')}"
            )
        self.log.info("Triton model %s version %s is READY", event["model"], event["version"])
        return event["version"]
