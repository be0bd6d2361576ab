"""Registers the project's Airflow plugin: its FastAPI app under ``/modelops`` (the drift webhook, the
governance API, ``/metrics``, task links, the Model Ops view: :mod:`modelops.app`), the "Model Ops" entry in
the Airflow UI's navigation, and the task instance links to MLflow, Data Docs, Evidently and Triton."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from modelops.app import create_app
from modelops.links import GLOBAL_LINKS
from modelops.ui import EXTERNAL_VIEW


class ModelOpsPlugin(AirflowPlugin):
    name = "modelops"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/modelops", "name": "Model Ops"}]
    external_views = [EXTERNAL_VIEW]  # "Model Ops" in the Airflow UI's nav: the page at /modelops/ui/, in a frame
    global_operator_extra_links = GLOBAL_LINKS  # task instance links to MLflow, Data Docs, Evidently, Triton
