"""Run the training entrypoint (``python -m include.training.train``) on the configured backend.

``local``: a subprocess of the worker, its output streamed into the task log (embedded default).
``kubernetes``: a pod from the project's image with the configured resources (GPU included).
Both run the same command and hand the model over through the MLflow run, so downstream tasks
do not care which one ran.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowTaskTimeout

from include.config import PROJECT_ROOT, ModelConfig
from include.training.train import EXIT_BAD_INPUT, EXIT_DATA_CHANGED, command
from modelops.mlflow_hook import MlflowHook
from modelops.training.process_group import ProcessGroup

ENTRYPOINT = ["python", "-m", "include.training.train"]
TEMPLATE_FIELDS = ("model_name", "dataset_uri", "mlflow_run_id", "expected_fingerprint")
# Input problems do not get better with a retry.
_FINAL_EXIT_CODES = {EXIT_BAD_INPUT: "bad input or configuration", EXIT_DATA_CHANGED: "data changed since validation"}


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


class LocalTrainingOperator(BaseOperator):
    """Run the training entrypoint as a subprocess with the worker's Python.

    The process runs in its own process group and dies with the task (:mod:`.process_group`): a
    SIGKILL of the task process kills the group (``PR_SET_PDEATHSIG``, Linux), and so do an
    execution timeout and ``on_kill``. Each attempt is recorded on the shared MLflow run
    (:mod:`include.training.attempts`): an attempt that died without recording its end is closed as
    ``KILLED`` by the next one, which then trains again into the same run. MLflow credentials reach
    the process in its own environment only.

    The entrypoint's exit codes 2 (bad input or configuration) and 3 (data changed since
    validation) fail the task without retries (:class:`AirflowFailException`); any other failure,
    a signal included, is retried (:class:`AirflowException`).
    """

    template_fields: Sequence[str] = TEMPLATE_FIELDS
    ui_color = "#d8f3dc"
    # What runs after ``python``; the entrypoint's arguments follow.
    entrypoint: Sequence[str] = ("-m", "include.training.train")

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
        self._group: ProcessGroup | None = None
        self._killed_because: str | None = None

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(self.mlflow_conn_id)

    def execute(self, context: Any) -> None:
        from include.training import attempts

        client = self.hook.client
        attempt = int(context["ti"].try_number)
        where = f"{socket.gethostname()} pid {os.getpid()}"
        killed_before = attempts.begin(client, self.mlflow_run_id, attempt, where)
        if killed_before:
            self.log.warning("Attempt(s) %s died without closing MLflow run %s: recorded as KILLED, training again",
                             ", ".join(map(str, killed_before)), self.mlflow_run_id)
        argv = [sys.executable, *self.entrypoint,
                *command(self.model_name, self.dataset_uri, self.mlflow_run_id, self.expected_fingerprint)]
        env = {
            **self.hook.subprocess_environ(),
            "MODELOPS_TRAINING_BACKEND": "local",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        }
        self._killed_because = None
        try:
            code = self._run(argv, env)
        except AirflowTaskTimeout:  # the process group is dead already
            self._record_killed(attempt, "execution timeout")
            raise
        except KeyboardInterrupt:
            self._record_killed(attempt, "interrupted")
            raise
        except Exception as exc:  # could not start it
            attempts.end(client, self.mlflow_run_id, attempt, f"failed: {type(exc).__name__}: {exc}")
            raise
        if self._killed_because is not None:
            self._record_killed(attempt, self._killed_because)
            raise AirflowException(f"training process {_describe_exit(code)}: {self._killed_because}")
        if code == 0:
            attempts.end(client, self.mlflow_run_id, attempt, "succeeded")
            return
        what = _FINAL_EXIT_CODES.get(code)
        attempts.end(client, self.mlflow_run_id, attempt, f"failed: {_describe_exit(code)}" + (f" ({what})" if what else ""))
        if what:
            raise AirflowFailException(f"training failed: {what} (exit {code}); see the log above")
        raise AirflowException(f"training process {_describe_exit(code)}")

    def _run(self, argv: list[str], env: dict[str, str]) -> int:
        """Run ``argv`` in its own process group, its output into the task log; returns its exit code (-N: signal N)."""
        self.log.info("Running %s", " ".join(argv))
        group = self._group = ProcessGroup(argv, cwd=PROJECT_ROOT, env=env)
        self.log.info("Training process %s started in its own process group", group.pid)
        if self._killed_because is not None:  # on_kill came while the group was being started
            group.kill()
        try:
            for line in group.stdout:
                self.log.info("%s", line.rstrip())
        except BaseException:
            group.kill()  # timed out or interrupted while training: take the whole group down
            raise
        finally:
            code = group.wait()
            self._group = None
        return code

    def on_kill(self) -> None:
        """Kill the training process and its group (Airflow calls this on SIGTERM and after a timeout)."""
        self._killed_because = "the task was killed (on_kill)"  # also stops a group that is still starting
        group = self._group
        if group is not None and group.returncode is None:
            self.log.warning("Killing training process group %s", group.pid)
            group.kill()

    def _record_killed(self, attempt: int, reason: str) -> None:
        from include.training import attempts

        self.log.error("Training attempt %s killed: %s", attempt, reason)
        try:
            attempts.killed(self.hook.client, self.mlflow_run_id, attempt, reason)
        except Exception:  # the next attempt records it from the tag left as "running"
            self.log.exception("Could not record the killed attempt on MLflow run %s", self.mlflow_run_id)


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

    from modelops.training.pod import TrainingPodOperator

    kube = config.training.kubernetes
    gpu = kube.limits.gpu or kube.requests.gpu
    return TrainingPodOperator(
        model_name=config.name,
        mlflow_credentials_secret=kube.mlflow_credentials_secret,
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
