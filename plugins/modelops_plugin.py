"""Registers the project's Airflow plugin: the drift webhook app, served by ``airflow api-server`` at
``/modelops`` (``POST /modelops/api/v1/drift-alerts``). The app lives in ``modelops.inbound``."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from modelops.inbound import create_app


class ModelOpsPlugin(AirflowPlugin):
    name = "modelops"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/modelops", "name": "Model Ops drift webhook"}]
