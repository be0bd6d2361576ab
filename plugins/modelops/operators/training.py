"""Run the training entrypoint (``python -m include.train``) on the configured backend.

``local``: a subprocess of the worker, its output streamed into the task log (embedded default).
``kubernetes``: a pod from the project's image with the configured resources (GPU included).
Both run the same command and hand the model over through the MLflow run, so downstream tasks
do not care which one ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.config import PROJECT_ROOT, ModelConfig
from include.train import EXIT_BAD_INPUT, EXIT_DATA_CHANGED, command
from modelops.hooks.mlflow import MlflowHook

ENTRYPOINT = ["python", "-m", "include.train"]
TEMPLATE_FIELDS = ("model_name", "dataset_uri", "mlflow_run_id", "expected_fingerprint")
# Input problems do not get better with a retry.
_FINAL_EXIT_CODES = {EXIT_BAD_INPUT: "bad input or configuration", EXIT_DATA_CHANGED: "data changed since validation"}


class LocalTrainingOperator(BaseOperator):
    """Run the training entrypoint as a subprocess with the worker's Python."""

    template_fields: Sequence[str] = TEMPLATE_FIELDS
    ui_color = "#d8f3dc"

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
        super().__init__(**kwargs)
        self.model_name = model_name
        self.dataset_uri = dataset_uri
        self.mlflow_run_id = mlflow_run_id
        self.expected_fingerprint = expected_fingerprint
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(self.mlflow_conn_id)

    def execute(self, context: Any) -> None:
        argv = [sys.executable, "-m", "include.train"] + command(
            self.model_name, self.dataset_uri, self.mlflow_run_id, self.expected_fingerprint
        )
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": self.hook.tracking_uri,
            "MODELOPS_TRAINING_BACKEND": "local",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.log.info("Running %s", " ".join(argv))
        with subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            try:
                for line in proc.stdout:
                    self.log.info("%s", line.rstrip())
            finally:
                if proc.poll() is None:  # the task was killed while training: don't leave an orphan
                    proc.kill()
            code = proc.wait()
        if code in _FINAL_EXIT_CODES:
            raise AirflowFailException(f"training failed: {_FINAL_EXIT_CODES[code]} (exit {code}); see the log above")
        if code != 0:
            raise AirflowException(f"training process exited with {code}")


def _resources(cfg: Any) -> dict[str, str]:
    out = {k: v for k, v in (("cpu", cfg.cpu), ("memory", cfg.memory)) if v}
    if cfg.gpu:
        out["nvidia.com/gpu"] = str(cfg.gpu)
    return out


def training_operator(config: ModelConfig, **kwargs: Any) -> BaseOperator:
    """The training task for ``config.training.backend``; ``kwargs`` are the entrypoint's arguments and task args."""
    if config.training.backend == "local":
        return LocalTrainingOperator(model_name=config.name, **kwargs)

    # The Kubernetes client costs seconds to import: only DAGs that train in pods pay for it.
    from kubernetes.client import models as k8s

    from modelops.operators.training_pod import TrainingPodOperator

    kube = config.training.kubernetes
    gpu = kube.limits.gpu or kube.requests.gpu
    return TrainingPodOperator(
        model_name=config.name,
        name=f"train-{config.name.replace('_', '-')}",
        image=kube.image,
        namespace=kube.namespace,
        service_account_name=kube.service_account,
        kubernetes_conn_id=kube.kubernetes_conn_id,
        container_resources=k8s.V1ResourceRequirements(
            requests=_resources(kube.requests) or None, limits=_resources(kube.limits) or None
        ),
        env_vars={"MODELOPS_TRAINING_BACKEND": "kubernetes", "PYTHONPATH": "/opt/airflow"},
        labels={"app.kubernetes.io/name": "modelops-training", "modelops/model": config.name.replace("_", "-")},
        node_selector=kube.node_selector or None,
        tolerations=[k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")] if gpu else None,
        startup_timeout_seconds=kube.startup_timeout_seconds,
        get_logs=True,
        on_finish_action="delete_pod",
        **kwargs,
    )
