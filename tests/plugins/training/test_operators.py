"""The training backends: the Kubernetes pod request (validated against Kubernetes' own schemas) and the local process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import mlflow
import pytest
import yaml
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowTaskTimeout
from airflow.sdk.execution_time.task_runner import _run_execute_callable
from kubernetes.client import ApiClient

from include import tracking
from include.config import load_model_config
from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch
from include.training.train import MODEL_URI_TAG, command
from modelops.mlflow_hook import MlflowHook
from modelops.training.operators import LocalTrainingOperator, training_operator
from modelops.training.pod import TrainingPodOperator

ROOT = Path(__file__).resolve().parents[3]
K8S_VERSION = "1.33"


def _config(tmp_path: Path, **training):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    path = tmp_path / "config" / "models" / "credit_approval.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["training"].update(training)
    path.write_text(yaml.safe_dump(raw))
    return load_model_config(path)


def _render(op, dag):
    ti = SimpleNamespace(dag_id=dag.dag_id, task_id=op.task_id, map_index=-1, try_number=1)
    context = {"ti": ti, "run_id": "manual__2026-11-22T10:00:00+00:00", "dag": dag}
    pod = op.build_pod_request_obj(context, dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


ARGS = {"dataset_uri": "s3://lake/credit/2026-11-22.parquet", "mlflow_run_id": "abc123", "expected_fingerprint": "sha256:" + "0" * 64}


def test_kubernetes_backend_renders_a_valid_pod_with_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.mlops.svc:5000")
    kube = yaml.safe_load((ROOT / "config/models/credit_approval.yaml").read_text())["training"]["kubernetes"]
    kube["image"] = "registry.example.com/modelops:1.2.3"
    kube["limits"]["gpu"] = 1
    config = _config(tmp_path, backend="kubernetes", kubernetes=kube)
    with DAG("train_credit_approval", schedule=None) as dag:
        op = training_operator(config, task_id="train", **ARGS)
    assert isinstance(op, TrainingPodOperator)

    pod = _render(op, dag)
    kubernetes_validate.validate(pod, desired_version=K8S_VERSION, strict=True)

    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "registry.example.com/modelops:1.2.3"
    assert container["command"] == ["python", "-m", "include.training.train"]
    assert container["args"] == command("credit_approval", ARGS["dataset_uri"], "abc123", ARGS["expected_fingerprint"])
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops.svc:5000"
    assert env["MODELOPS_TRAINING_BACKEND"] == "kubernetes"
    assert pod["metadata"]["namespace"] == "ml-training"
    assert spec["serviceAccountName"] == "modelops-trainer"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    labels = pod["metadata"]["labels"]
    assert labels["dag_id"] == "train_credit_approval"
    assert labels["task_id"] == "train"
    assert labels["run_id"]  # sanitised for Kubernetes
    assert labels["modelops/model"] == "credit-approval"


def test_cpu_only_pod_has_no_gpu_request_or_toleration(tmp_path):
    config = _config(tmp_path, backend="kubernetes")
    with DAG("train_credit_approval", schedule=None) as dag:
        op = training_operator(config, task_id="train", **ARGS)
    pod = _render(op, dag)
    kubernetes_validate.validate(pod, desired_version=K8S_VERSION, strict=True)
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][0]["resources"]["limits"]
    assert not pod["spec"].get("tolerations")


def test_invalid_pod_is_caught_by_the_schema_check(tmp_path):
    """The schema check is real: a malformed pod fails it."""
    config = _config(tmp_path, backend="kubernetes")
    with DAG("train_credit_approval", schedule=None) as dag:
        op = training_operator(config, task_id="train", **ARGS)
    pod = _render(op, dag)
    pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"not": "a quantity"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, desired_version=K8S_VERSION, strict=True)


def test_local_backend_is_a_subprocess_operator(tmp_path):
    config = _config(tmp_path, backend="local")
    with DAG("train_credit_approval", schedule=None):
        op = training_operator(config, task_id="train", **ARGS)
    assert isinstance(op, LocalTrainingOperator)
    assert set(op.template_fields) >= {"dataset_uri", "mlflow_run_id", "expected_fingerprint"}


# --- MLflow credentials in the training pod: from a Secret, never in the spec ----------------

SECRET = {"name": "mlflow-credentials", "username_key": "username", "password_key": "password"}
PASSWORD = "pod-s3cret-Pa55"


def _pod_with(tmp_path, monkeypatch, conn: dict | None, secret: dict | None):
    """The rendered pod (validated against Kubernetes' schema) of a model whose YAML has ``secret``, with MLflow connection ``conn``."""
    if conn is not None:
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", **conn}))
    kube = yaml.safe_load((ROOT / "config/models/credit_approval.yaml").read_text())["training"]["kubernetes"]
    if secret is not None:
        kube["mlflow_credentials_secret"] = secret
    config = _config(tmp_path, backend="kubernetes", kubernetes=kube)
    with DAG("train_credit_approval", schedule=None) as dag:
        op = training_operator(config, task_id="train", **ARGS)
    pod = _render(op, dag)
    kubernetes_validate.validate(pod, desired_version=K8S_VERSION, strict=True)
    return pod


def _env(pod) -> dict[str, dict]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def _secret_ref(name: str, key: str) -> dict:
    return {"valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def test_pod_reads_basic_credentials_from_the_secret_and_never_holds_the_password(tmp_path, monkeypatch):
    conn = {"host": "mlflow.mlops.svc", "port": 5000, "login": "trainer", "password": PASSWORD}
    pod = _pod_with(tmp_path, monkeypatch, conn, SECRET)

    env = _env(pod)
    assert env["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.mlops.svc:5000"}
    assert env["MLFLOW_TRACKING_USERNAME"] == {"name": "MLFLOW_TRACKING_USERNAME", **_secret_ref("mlflow-credentials", "username")}
    assert env["MLFLOW_TRACKING_PASSWORD"] == {"name": "MLFLOW_TRACKING_PASSWORD", **_secret_ref("mlflow-credentials", "password")}
    assert PASSWORD not in json.dumps(pod)


def test_userinfo_in_the_connection_uri_is_stripped_from_the_pod(tmp_path, monkeypatch):
    conn = {"extra": {"tracking_uri": f"https://trainer:{PASSWORD}@mlflow.example.com/mlflow"}}
    pod = _pod_with(tmp_path, monkeypatch, conn, {"name": "mlflow-token", "token_key": "token"})

    env = _env(pod)
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.example.com/mlflow"
    assert env["MLFLOW_TRACKING_TOKEN"] == {"name": "MLFLOW_TRACKING_TOKEN", **_secret_ref("mlflow-token", "token")}
    assert "MLFLOW_TRACKING_PASSWORD" not in env
    serialized = json.dumps(pod)
    assert PASSWORD not in serialized
    assert "trainer:" not in serialized


def test_a_uri_whose_password_cannot_be_stripped_comes_whole_from_the_secret(tmp_path, monkeypatch):
    conn = {"extra": {"tracking_uri": f"postgresql://mlflow:{PASSWORD}@db.internal/mlflow"}}
    pod = _pod_with(tmp_path, monkeypatch, conn, {"name": "mlflow-db", "tracking_uri_key": "uri"})

    assert _env(pod)["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", **_secret_ref("mlflow-db", "uri")}
    assert PASSWORD not in json.dumps(pod)


@pytest.mark.parametrize(
    ("conn", "env", "source"),
    [
        ({"host": "mlflow.mlops.svc", "login": "trainer", "password": PASSWORD}, {}, "connection 'mlflow_default'"),
        ({"extra": {"tracking_uri": f"https://trainer:{PASSWORD}@mlflow.example.com"}}, {}, "connection 'mlflow_default'"),
        (None, {"MLFLOW_TRACKING_URI": "https://mlflow.example.com", "MLFLOW_TRACKING_TOKEN": PASSWORD}, "MLFLOW_TRACKING_URI"),
    ],
)
def test_an_authenticated_mlflow_without_a_secret_fails_naming_the_connection_and_key(tmp_path, monkeypatch, conn, env, source):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(AirflowFailException) as err:
        _pod_with(tmp_path, monkeypatch, conn, None)
    message = str(err.value)
    assert source in message
    assert "credit_approval.yaml: training.kubernetes.mlflow_credentials_secret" in message
    assert PASSWORD not in message


def test_a_database_uri_with_a_password_needs_tracking_uri_key(tmp_path, monkeypatch):
    conn = {"extra": {"tracking_uri": f"postgresql://mlflow:{PASSWORD}@db.internal/mlflow"}}
    with pytest.raises(AirflowFailException, match=r"credit_approval.yaml: training.kubernetes.mlflow_credentials_secret.tracking_uri_key") as err:
        _pod_with(tmp_path, monkeypatch, conn, SECRET)
    assert PASSWORD not in str(err.value)
    assert "postgresql://mlflow:***@db.internal/mlflow" in str(err.value)


# --- the local training process: dies with its task, attempts recorded, exit codes mapped -----

# Stands in for the entrypoint where a test needs a training process that runs until killed: it
# records its pid, starts a grandchild (as joblib or a shell would) and records that pid too.
SLEEPER = """\
import os, subprocess, sys, time
with open(os.environ["STAND_IN_PIDS"], "a") as f:
    f.write(f"{os.getpid()}\\n")
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.environ["STAND_IN_PIDS"], "a") as f:
    f.write(f"{grandchild.pid}\\n")
time.sleep(600)
"""

# A task process: the operator's execute() for attempt 1 with the stand-in, as a worker runs it.
TASK_PROCESS = """\
import sys
from types import SimpleNamespace
from modelops.training.operators import LocalTrainingOperator

class StandIn(LocalTrainingOperator):
    entrypoint = ("-c", sys.argv[2])

op = StandIn(task_id="train", model_name="credit_approval", dataset_uri="unused", mlflow_run_id=sys.argv[1])
op.execute({"ti": SimpleNamespace(try_number=1)})
"""
DEADLINE_S = 60


def _stand_in(script: str):
    class StandIn(LocalTrainingOperator):
        entrypoint = ("-c", script)

    return StandIn


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by whoever adopted it, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _group(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _until(predicate, what: str, deadline_s: float = DEADLINE_S):
    deadline = time.monotonic() + deadline_s
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {deadline_s} s: {what}")
        time.sleep(0.1)
    return result


def _pids(path: Path, count: int = 1) -> list[int]:
    """The first ``count`` pids the stand-in recorded (waits for them)."""
    def ready():
        lines = path.read_text().split() if path.exists() else []
        return [int(p) for p in lines[:count]] if len(lines) >= count else None

    return _until(ready, f"the stand-in training process recorded {count} pid(s) in {path}")


def _assert_all_gone(pids: list[int]) -> None:
    _until(lambda: not any(_alive(p) for p in pids), f"processes {pids} are gone")
    _until(lambda: not _group(pids[0]), f"process group {pids[0]} is empty")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('training-store')}/mlflow.db"


@pytest.fixture
def client(store, monkeypatch):
    """A real SQLite MLflow store, as the operator's hook sees it (no connection: MLFLOW_TRACKING_URI)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield tracking.configure(store)
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture
def run_id(client, request) -> str:
    """The Airflow run's MLflow run, as the validate task opens it."""
    return tracking.upsert_run(client, "training-operator-tests", {"test.case": request.node.name}, request.node.name)


@pytest.fixture
def pid_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "pids"
    monkeypatch.setenv("STAND_IN_PIDS", str(path))
    return path


@pytest.fixture(scope="module")
def dataset_uri(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("training-data") / "train.parquet")
    write_dataset(generate_batch(1500, seed=21), uri)
    return uri


def _ti(try_number: int):
    return {"ti": SimpleNamespace(try_number=try_number)}


def _tags(client, run_id: str) -> dict[str, str]:
    return client.get_run(run_id).data.tags


def _kill_task_process_while_training(run_id: str, pid_file: Path, tmp_path: Path) -> list[int]:
    """Attempt 1 in a task process of its own, SIGKILLed while its training process runs; the trainer's pids."""
    log = (tmp_path / "task.log").open("w")
    task = subprocess.Popen([sys.executable, "-c", TASK_PROCESS, run_id, SLEEPER], stdout=log, stderr=subprocess.STDOUT)
    try:
        pids = _pids(pid_file, 2)
        assert all(_alive(p) for p in pids)
    finally:
        task.kill()
        task.wait()
        log.close()
    return pids


def test_sigkill_of_the_task_process_takes_the_training_process_group_with_it(client, run_id, pid_file, tmp_path):
    pids = _kill_task_process_while_training(run_id, pid_file, tmp_path)

    _assert_all_gone(pids)  # the trainer and the grandchild it started
    assert _tags(client, run_id)["modelops.train.attempt.1"].startswith("running on ")  # it had no chance to say more


def test_the_next_attempt_closes_the_killed_one_and_trains_again_into_the_same_run(client, run_id, pid_file, tmp_path, dataset_uri):
    _kill_task_process_while_training(run_id, pid_file, tmp_path)

    op = LocalTrainingOperator(task_id="train", model_name="credit_approval", dataset_uri=dataset_uri, mlflow_run_id=run_id)
    op.execute(_ti(2))  # the real entrypoint

    run = client.get_run(run_id)
    tags = run.data.tags
    assert tags["modelops.train.killed_attempt"] == "1"
    assert tags["modelops.train.attempt.1"].startswith("killed: ended without recording its end")
    assert "found by attempt 2" in tags["modelops.train.attempt.1"]
    assert tags["modelops.train.attempt.2"] == "succeeded"
    assert tags[MODEL_URI_TAG].startswith("models:/")
    assert run.info.status == "FINISHED"  # the retry reopened the run and finished it


def test_execution_timeout_kills_the_process_group_and_closes_the_run_as_killed(client, run_id, pid_file):
    op = _stand_in(SLEEPER)(task_id="train", model_name="credit_approval", dataset_uri="unused", mlflow_run_id=run_id,
                            execution_timeout=timedelta(seconds=10))

    with pytest.raises(AirflowTaskTimeout):
        _run_execute_callable(_ti(1), op.execute, op)  # Airflow's own timeout path (it calls on_kill after)

    _assert_all_gone(_pids(pid_file, 2))
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["modelops.train.attempt.1"] == "killed: execution timeout"
    assert run.data.tags["modelops.train.killed_attempt"] == "1"


def test_on_kill_kills_the_process_group_and_closes_the_run_as_killed(client, run_id, pid_file):
    op = _stand_in(SLEEPER)(task_id="train", model_name="credit_approval", dataset_uri="unused", mlflow_run_id=run_id)
    pids: list[int] = []

    def kill_when_running():
        pids.extend(_pids(pid_file, 2))
        op.on_kill()  # what Airflow does when the task is stopped (SIGTERM)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    with pytest.raises(AirflowException, match="on_kill") as err:
        op.execute(_ti(3))
    killer.join()

    assert not isinstance(err.value, AirflowFailException)  # retried
    _assert_all_gone(pids)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["modelops.train.attempt.3"] == "killed: the task was killed (on_kill)"
    assert run.data.tags["modelops.train.killed_attempt"] == "3"


@pytest.mark.parametrize(
    ("model", "fingerprint", "outcome"),
    [
        ("no_such_model", None, "failed: exit 2 (bad input or configuration)"),
        ("credit_approval", "sha256:" + "0" * 64, "failed: exit 3 (data changed since validation)"),
    ],
)
def test_bad_input_exit_codes_fail_without_retry(client, run_id, dataset_uri, model, fingerprint, outcome):
    op = LocalTrainingOperator(task_id="train", model_name=model, dataset_uri=dataset_uri, mlflow_run_id=run_id,
                               expected_fingerprint=fingerprint)
    with pytest.raises(AirflowFailException, match=re.escape(outcome.split("(")[1].rstrip(")"))):
        op.execute(_ti(1))
    assert _tags(client, run_id)["modelops.train.attempt.1"] == outcome


@pytest.mark.parametrize(
    ("script", "message", "outcome"),
    [
        ("raise SystemExit(1)", "training process exit 1", "failed: exit 1"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "training process killed by SIGKILL",
         "failed: killed by SIGKILL"),
    ],
)
def test_other_failures_are_retried(client, run_id, script, message, outcome):
    op = _stand_in(script)(task_id="train", model_name="credit_approval", dataset_uri="unused", mlflow_run_id=run_id)
    with pytest.raises(AirflowException, match=message) as err:
        op.execute(_ti(1))
    assert not isinstance(err.value, AirflowFailException)
    assert _tags(client, run_id)["modelops.train.attempt.1"] == outcome


@pytest.mark.mlflow_server
def test_the_training_process_gets_mlflow_credentials_in_its_own_environment_only(monkeypatch, mlflow_auth_server):
    server = mlflow_auth_server
    monkeypatch.delenv("MLFLOW_TRACKING_AUTH", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])  # restored after mlflow rewrites it
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "login": server.username, "password": server.password}))
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        client = MlflowHook().client
        run = client.create_run(client.create_experiment(f"local-training-{time.time_ns()}"))
        writes_a_tag = ("import sys; from mlflow import MlflowClient; "
                        "MlflowClient().set_tag(sys.argv[sys.argv.index('--run-id') + 1], 'from_child', 'yes')")
        _stand_in(writes_a_tag)(task_id="train", model_name="credit_approval", dataset_uri="unused",
                                mlflow_run_id=run.info.run_id).execute(_ti(1))

        tags = client.get_run(run.info.run_id).data.tags
        assert tags["from_child"] == "yes"
        assert tags["modelops.train.attempt.1"] == "succeeded"
        assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
