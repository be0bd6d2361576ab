"""The training entrypoint as a Kubernetes pod (imported only by DAGs whose model trains on Kubernetes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

from include.train import command
from modelops.hooks.mlflow import MlflowHook
from modelops.operators.training import ENTRYPOINT, TEMPLATE_FIELDS


class TrainingPodOperator(KubernetesPodOperator):
    """The training entrypoint in a Kubernetes pod; MLflow's URI is resolved from the connection at run time."""

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, *TEMPLATE_FIELDS)

    def __init__(
        self,
        *,
        model_name: str,
        dataset_uri: str,
        mlflow_run_id: str,
        expected_fingerprint: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(cmds=ENTRYPOINT, **kwargs)
        self.model_name = model_name
        self.dataset_uri = dataset_uri
        self.mlflow_run_id = mlflow_run_id
        self.expected_fingerprint = expected_fingerprint
        self.mlflow_conn_id = mlflow_conn_id

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        self.arguments = command(self.model_name, self.dataset_uri, self.mlflow_run_id, self.expected_fingerprint)
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        container = pod.spec.containers[0]
        container.env = [e for e in container.env or [] if e.name != "MLFLOW_TRACKING_URI"] + [
            k8s.V1EnvVar(name="MLFLOW_TRACKING_URI", value=MlflowHook(self.mlflow_conn_id).tracking_uri)
        ]
        return pod
