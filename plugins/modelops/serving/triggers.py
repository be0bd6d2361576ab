"""Wait in the triggerer until Triton reports a model version READY (or it failed to load)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class TritonModelReadyTrigger(BaseTrigger):
    """Polls ``GET /v2/models/{name}/versions/{version}/ready`` until 200, a load failure, or the timeout."""

    def __init__(self, *, url: str, model: str, version: str, timeout: float, poll_interval: float = 2.0) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self.model = model
        self.version = str(version)
        self.timeout = timeout
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"url": self.url, "model": self.model, "version": self.version, "timeout": self.timeout,
             "poll_interval": self.poll_interval},
        )

    async def _state(self, client) -> tuple[bool, str | None]:
        """(ready, failure reason from the repository index, if the version failed to load)."""
        ready = await client.get(f"{self.url}/v2/models/{self.model}/versions/{self.version}/ready")
        if ready.status_code == 200:
            return True, None
        index = await client.post(f"{self.url}/v2/repository/index", json={})
        for entry in index.json() if index.status_code == 200 else []:
            if entry.get("name") == self.model and str(entry.get("version")) == self.version:
                if entry.get("state") == "UNAVAILABLE" and entry.get("reason") not in (None, "", "unloaded"):
                    return False, entry["reason"]
        return False, None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx

        deadline = time.monotonic() + self.timeout
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                try:
                    ready, failure = await self._state(client)
                except httpx.HTTPError as exc:
                    ready, failure = False, None
                    self.log.info("Triton at %s not answering yet: %s", self.url, exc)
                if ready:
                    yield TriggerEvent({"status": "ready", "model": self.model, "version": self.version})
                    return
                if failure:
                    yield TriggerEvent({"status": "failed", "reason": failure, "model": self.model, "version": self.version})
                    return
                if time.monotonic() >= deadline:
                    yield TriggerEvent({"status": "timeout", "reason": f"not ready after {self.timeout:.0f}s",
                                        "model": self.model, "version": self.version})
                    return
                await asyncio.sleep(self.poll_interval)
