"""MLflow tracking and registry access from Airflow, configured by a connection.

Connection ``mlflow_default`` (any conn type, e.g. ``http``): ``extra.tracking_uri`` wins, else
``<schema or http>://host:port/path``; login/password become MLflow's basic-auth variables. With no
connection the hook falls back to ``MLFLOW_TRACKING_URI`` and then the embedded SQLite store.

    AIRFLOW_CONN_MLFLOW_DEFAULT='{"conn_type": "http", "host": "mlflow.internal", "port": 5000}'
"""

from __future__ import annotations

import os
from functools import cached_property

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException


class MlflowHook(BaseHook):
    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "http"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def tracking_uri(self) -> str:
        from include import tracking

        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            return tracking.tracking_uri()
        if uri := conn.extra_dejson.get("tracking_uri"):
            return uri
        if not conn.host:
            raise ValueError(f"connection {self.mlflow_conn_id!r} needs a host or extra.tracking_uri")
        scheme = conn.schema or "http"
        port = f":{conn.port}" if conn.port else ""
        if conn.login:
            os.environ["MLFLOW_TRACKING_USERNAME"] = conn.login
            os.environ["MLFLOW_TRACKING_PASSWORD"] = conn.password or ""
        return f"{scheme}://{conn.host}{port}"

    @cached_property
    def client(self):
        """An ``MlflowClient`` bound to this connection (mlflow's global URI is set to match)."""
        from include import tracking

        return tracking.configure(self.tracking_uri)
