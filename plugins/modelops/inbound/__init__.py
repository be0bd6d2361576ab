"""The drift webhook: a FastAPI app that ``airflow api-server`` serves under ``/modelops`` (see
``plugins/modelops_plugin.py``). Signed drift alerts start retraining runs; see :mod:`include.inbound.drift_alerts`."""

from __future__ import annotations

from modelops.inbound.app import create_app

__all__ = ["create_app"]
