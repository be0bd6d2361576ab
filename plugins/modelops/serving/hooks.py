"""NVIDIA Triton Inference Server (HTTP/REST, KServe v2 protocol) from Airflow.

Connection ``triton_default``: ``http://host:port`` (``schema`` for https). Without a connection,
``MODELOPS_TRITON_URL``, then the local server that ``make up`` starts (``http://127.0.0.1:8000``).
The model repository the deployment DAG exports into: ``extra.model_repository`` of the
connection, else ``MODELOPS_TRITON_REPOSITORY``, else ``.modelops/triton/models``; it must be the
folder (or bucket) the server was started with.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from include import settings


class TritonHook(BaseHook):
    conn_name_attr = "triton_conn_id"
    default_conn_name = "triton_default"
    conn_type = "http"
    hook_name = "NVIDIA Triton"

    def __init__(self, triton_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.triton_conn_id = triton_conn_id

    @cached_property
    def _conn(self):
        try:
            return self.get_connection(self.triton_conn_id)
        except AirflowNotFoundException:
            return None

    @cached_property
    def url(self) -> str:
        conn = self._conn
        if conn is None or not conn.host:
            return settings.triton_url()
        port = f":{conn.port}" if conn.port else ""
        return f"{conn.schema or 'http'}://{conn.host}{port}"

    @cached_property
    def model_repository(self) -> Path:
        configured = self._conn.extra_dejson.get("model_repository") if self._conn else None
        return Path(configured) if configured else settings.triton_repository()

    @cached_property
    def client(self):
        from include.serving.triton.client import TritonClient

        return TritonClient(self.url)
