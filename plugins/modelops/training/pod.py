"""The training entrypoint as a Kubernetes pod (imported only by DAGs whose model trains on Kubernetes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.container import get_container_status
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from kubernetes.client import models as k8s

from include import tracking_auth
from include.training.train import command
from modelops.mlflow_hook import MlflowHook
from modelops.training.operators import _FINAL_EXIT_CODES, ENTRYPOINT, TEMPLATE_FIELDS

if TYPE_CHECKING:
    from include.config import MlflowCredentialsSecret

SECRET_KEY = "training.kubernetes.mlflow_credentials_secret"
# The pod's MLflow settings come from here only, whatever env_vars says.
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", tracking_auth.USERNAME_ENV, tracking_auth.PASSWORD_ENV, tracking_auth.TOKEN_ENV,
               tracking_auth.AUTH_ENV)


def _from_secret(name: str, secret: str, key: str) -> k8s.V1EnvVar:
    return k8s.V1EnvVar(name=name, value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key)))


def _pod_failure(pod: k8s.V1Pod, container: str) -> AirflowException:
    """Why ``pod`` failed, in the pod's own words: its container's exit code, reason and last output, or why it never ran.

    Exit codes 2 (bad input or configuration) and 3 (data changed since validation) give an
    :class:`AirflowFailException` (no retries), as with the local backend; anything else an
    :class:`AirflowException` (retried).
    """
    where = f"training pod {pod.metadata.namespace}/{pod.metadata.name}"
    status = get_container_status(pod, container)
    state = status.state if status is not None else None
    if state is not None and state.terminated is not None:
        ended = state.terminated
        what = _FINAL_EXIT_CODES.get(ended.exit_code)
        message = f"{where} failed: exit {ended.exit_code} ({ended.reason}" + (f", {what})" if what else ")")
        if ended.message and ended.message.strip():
            message += f"; its last output:\n{ended.message.rstrip()}"
        return AirflowFailException(message) if what else AirflowException(message)
    if state is not None and state.waiting is not None:
        waiting = state.waiting
        return AirflowException(f"{where} did not start: {waiting.reason}" + (f": {waiting.message}" if waiting.message else ""))
    pod_status = pod.status
    unscheduled = next((c for c in (pod_status.conditions if pod_status else None) or []
                        if c.type == "PodScheduled" and c.status == "False"), None)
    if unscheduled is not None:
        return AirflowException(f"{where} was not scheduled: {unscheduled.reason}: {unscheduled.message}")
    phase = pod_status.phase if pod_status else None
    reason = ": ".join(filter(None, [pod_status.reason, pod_status.message])) if pod_status else ""
    return AirflowException(f"{where} failed in phase {phase}" + (f": {reason}" if reason else ""))


class TrainingPodOperator(KubernetesPodOperator):
    """The training entrypoint in a Kubernetes pod; MLflow's URI is resolved from the connection at run time.

    The pod spec never holds a credential: with ``mlflow_credentials_secret`` (the model's
    ``training.kubernetes.mlflow_credentials_secret``) the pod reads ``MLFLOW_TRACKING_USERNAME`` /
    ``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_TOKEN`` or the whole ``MLFLOW_TRACKING_URI`` from
    that Secret (``secretKeyRef``). A connection with credentials but no secret configured fails the
    task (:class:`AirflowFailException`, no retries) with the YAML key to set.

    Deferrable by default: once the pod is created the task defers to a ``KubernetesPodTrigger``, so
    the pod's run holds a triggerer coroutine, not a worker slot; the task resumes when the pod
    ends, copies the pod's log into the task log and deletes the pod. The container's
    ``terminationMessagePolicy`` is ``FallbackToLogsOnError``: the kubelet keeps the tail of a failed
    container's output (80 lines / 2 KiB) as its termination message. A pod that fails or never
    starts fails the task with the pod's reason (:func:`_pod_failure`): exit code, reason and that
    output, or the waiting reason (``ImagePullBackOff: …``, ``CreateContainerConfigError: …``) or
    why it was not scheduled; exit codes 2 and 3 fail without retries, as with the local backend.
    """

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, *TEMPLATE_FIELDS)

    def __init__(
        self,
        *,
        model_name: str,
        dataset_uri: str,
        mlflow_run_id: str,
        expected_fingerprint: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        mlflow_credentials_secret: MlflowCredentialsSecret | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("deferrable", True)
        kwargs.setdefault("termination_message_policy", "FallbackToLogsOnError")
        super().__init__(cmds=ENTRYPOINT, **kwargs)
        self.model_name = model_name
        self.dataset_uri = dataset_uri
        self.mlflow_run_id = mlflow_run_id
        self.expected_fingerprint = expected_fingerprint
        self.mlflow_conn_id = mlflow_conn_id
        self.mlflow_credentials_secret = mlflow_credentials_secret

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        self.arguments = command(self.model_name, self.dataset_uri, self.mlflow_run_id, self.expected_fingerprint)
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        container = pod.spec.containers[0]
        container.env = [e for e in container.env or [] if e.name not in _MLFLOW_ENV] + self._mlflow_env()
        return pod

    def cleanup(self, pod: k8s.V1Pod, remote_pod: k8s.V1Pod, xcom_result: dict | None = None,
                context: Any = None) -> None:
        """The provider's clean-up (delete the pod, fail on a failed pod), failing with the pod's reason."""
        live = remote_pod
        if remote_pod is not None and not self._killed and (remote_pod.status is None or remote_pod.status.phase != "Succeeded"):
            try:  # the provider may hold a stale copy (read before the pod failed to start)
                live = self.pod_manager.read_pod(remote_pod)
            except Exception:  # gone, or the API is unreachable: describe the copy we have
                self.log.warning("Could not read pod %s to say why it failed", remote_pod.metadata.name, exc_info=True)
        try:
            super().cleanup(pod, remote_pod, xcom_result, context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            raise _pod_failure(live, self.base_container_name) from exc

    def _mlflow_env(self) -> list[k8s.V1EnvVar]:
        """The pod's MLflow variables: the URI (its value, or from the Secret) and credentials from the Secret."""
        hook = MlflowHook(self.mlflow_conn_id)
        secret = self.mlflow_credentials_secret
        where = f"{self.model_name}.yaml: {SECRET_KEY}"
        env = []
        if secret is not None and secret.tracking_uri_key:
            env.append(_from_secret("MLFLOW_TRACKING_URI", secret.name, secret.tracking_uri_key))
        elif tracking_auth.has_password(hook.tracking_uri):
            raise AirflowFailException(
                f"the MLflow tracking URI of {hook.source} ({tracking_auth.redact(hook.tracking_uri)}) carries a "
                f"password that cannot be taken out of it; a pod spec must not hold it: put the whole URI in a "
                f"Kubernetes Secret and name its key in {where}.tracking_uri_key"
            )
        else:
            env.append(k8s.V1EnvVar(name="MLFLOW_TRACKING_URI", value=hook.tracking_uri))
        if secret is None:
            if hook.credentials is not None:
                raise AirflowFailException(
                    f"the MLflow server of {hook.source} needs credentials, and a training pod may only get them "
                    f"from a Kubernetes Secret: set {where} (name, username_key + password_key, or token_key) "
                    f"to a Secret in namespace {self.namespace!r}"
                )
            return env
        if secret.username_key and secret.password_key:
            env.append(_from_secret(tracking_auth.USERNAME_ENV, secret.name, secret.username_key))
            env.append(_from_secret(tracking_auth.PASSWORD_ENV, secret.name, secret.password_key))
        if secret.token_key:
            env.append(_from_secret(tracking_auth.TOKEN_ENV, secret.name, secret.token_key))
        return env
