"""Fixtures for the drift webhook's tests: a real ``airflow api-server`` on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.plugins.inbound.webhook_server import Server, running_api_server


@pytest.fixture(scope="module")
def api_server(airflow_db, tmp_path_factory) -> Iterator[Server]:
    """``airflow api-server`` with the project's plugin and the webhook's HMAC secret in ``AIRFLOW_CONN_*``
    (one server per module; a module that defines its own ``api_server`` uses that one)."""
    with running_api_server(tmp_path_factory) as server:
        yield server
