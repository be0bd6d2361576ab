"""Training on Kubernetes through the pod API: the operator's own clients against a Kubernetes API double.

No cluster runs here. :class:`tests.fakes.kubernetes.FakeKubernetes` answers the REST calls of the
provider's ``KubernetesPodOperator`` (``kubernetes`` client) and ``KubernetesPodTrigger``
(``kubernetes_asyncio``) on loopback, validates each pod against Kubernetes' OpenAPI schema, and
runs the pod's command as a local process from "the project's image" (the project folder mounted at
``/opt/airflow``, as the Dockerfile lays it out) with the pod's environment, so the MLflow run
really gets the trained model. Airflow reaches the double through the ``kubernetes_default``
connection (``AIRFLOW_CONN_KUBERNETES_DEFAULT`` with ``kube_config_path``), as a user configures it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pytest
import yaml
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from include import tracking
from include.config import load_model_config
from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch
from include.training.train import MODEL_URI_TAG, command
from modelops.training.operators import training_operator
from tests.fakes.kubernetes import FakeKubernetes, Image

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
MODEL = "credit_approval"
NAMESPACE = "ml-training"
IMAGE = "registry.example.com/modelops:test"
NO_CODE_IMAGE = "registry.example.com/modelops:no-code"  # an image built without the project's code
MISSING_IMAGE = "registry.example.com/modelops:missing"


def _image(root: Path, home: Path) -> Image:
    """The project's image as the Dockerfile builds it: code at /opt/airflow, its ENV, this virtualenv's Python."""
    return Image(root=root, mount="/opt/airflow", workdir="/opt/airflow", env={
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home), "LANG": "C.UTF-8", "PYTHONPATH": "/opt/airflow", "MODELOPS_CONFIG_DIR": "/opt/airflow/config",
        "GX_ANALYTICS_ENABLED": "false",
        # A pod gets its CPU limit's worth of cores; here every process shares the test machine's few cores,
        # where OpenMP's spinning threads make HistGradientBoosting many times slower.
        "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    empty, home = tmp_path_factory.mktemp("image-without-code"), tmp_path_factory.mktemp("pod-home")
    with FakeKubernetes(images={IMAGE: _image(ROOT, home), NO_CODE_IMAGE: _image(empty, home)}) as fake:
        fake.add_namespace(NAMESPACE, service_accounts=["modelops-trainer"])
        fake.kubeconfig_path = fake.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
        yield fake


@pytest.fixture(scope="module")
def store(tmp_path_factory, kube):
    """An MLflow store for the module, and Airflow pointed at the double by the ``kubernetes_default`` connection."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('pod-mlflow') / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kube.kubeconfig_path)}}))
    mp.delenv("KUBECONFIG", raising=False)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield tracking.configure(uri)
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])
    mp.undo()


@pytest.fixture(scope="module")
def dataset_uri(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("pod-data") / "train.parquet")
    write_dataset(generate_batch(2000, seed=31), uri)
    return uri


def _new_records(kube, before: int):
    return kube.records()[before:]


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


# --- the train DAG end to end, training in a pod -------------------------------------------------

@pytest.fixture
def train_dag(store, airflow_db, monkeypatch):
    """``train_credit_approval`` parsed with ``MODELOPS_TRAINING_BACKEND=kubernetes`` (each test sets the image first)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MODELOPS_TRAINING_BACKEND", "kubernetes")

    def load(image: str):
        monkeypatch.setenv("MODELOPS_IMAGE", image)
        bag = DagBag(dag_folder=str(ROOT / "dags" / "train.py"))
        assert bag.import_errors == {}
        dag = bag.get_dag(f"train_{MODEL}")
        train = dag.get_task("train")
        assert train.deferrable and train.image == image
        train.startup_check_interval_seconds = 1  # the kubelet here starts pods in a second
        train.poll_interval = 1
        return dag

    return load


def _mlflow_run(client, dag_run):
    (run,) = client.search_runs([client.get_experiment_by_name(f"modelops/{MODEL}").experiment_id],
                                filter_string=f"tags.`airflow.run_id` = '{dag_run.run_id}'")
    return run


def test_the_train_dag_trains_in_a_pod_through_the_pod_api(kube, store, train_dag, dataset_uri, capfd, caplog):
    dag = train_dag(IMAGE)
    before = len(kube.records())

    dag_run = dag.test(run_conf={"dataset_uri": dataset_uri, "force": True})  # whatever ran before on this data

    assert str(dag_run.state) == "success", _states(dag_run)
    (pod,) = _new_records(kube, before)
    # the operator's own client created it (the double validated it against the OpenAPI schema) …
    (container,) = pod.body["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "include.training.train"]
    run = _mlflow_run(store, dag_run)
    assert container["args"] == command(MODEL, dataset_uri, run.info.run_id, run.data.tags["data_fingerprint"])
    assert pod.body["metadata"]["labels"]["dag_id"] == dag.dag_id
    # … it went Pending → Running → Succeeded, running the entrypoint from the image with the pod's env …
    assert pod.phases == ["Pending", "Running", "Succeeded"]
    assert pod.exit_codes == {"base": 0}
    assert pod.argv["base"] == ["python", "-m", "include.training.train", *container["args"]]
    assert pod.env["base"]["MLFLOW_TRACKING_URI"] == tracking.tracking_uri()
    assert pod.env["base"]["PYTHONPATH"] == str(ROOT)  # /opt/airflow in the image
    # … and was deleted once the task had its log
    assert pod.deleted and kube.pods(NAMESPACE) == []
    # the model came from the pod: the run has it, and the registered version says so
    assert run.data.tags[MODEL_URI_TAG].startswith("models:/")
    assert run.data.tags["training_backend"] == "kubernetes"
    assert run.data.metrics["roc_auc"] > 0.7
    (version,) = store.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert version.name == MODEL and version.tags["training_backend"] == "kubernetes"
    # the pod's log is in the task log, and the task waited for the pod in the trigger
    out = capfd.readouterr().out
    logged = [line for line in out.splitlines() if "[base] logs:" in line]
    assert any(f"Logged model {run.data.tags[MODEL_URI_TAG]} to run {run.info.run_id}" in line for line in logged), out[-3000:]
    assert "[DAG TEST] running trigger in line" in caplog.text  # dag.test() runs the trigger as the triggerer would
    assert f"Checking pod '{pod.name}' in namespace '{NAMESPACE}'" in out + caplog.text


def test_a_failed_pod_fails_the_task_with_its_reason_and_nothing_is_registered(kube, store, train_dag, dataset_uri,
                                                                                 capfd):
    dag = train_dag(NO_CODE_IMAGE)
    dag.get_task("train").retries = 0  # it would fail the same way again, a minute later
    before = len(kube.records())
    versions_before = len(store.search_model_versions(f"name = '{MODEL}'"))

    dag_run = dag.test(run_conf={"dataset_uri": dataset_uri, "force": True})  # whatever ran before on this data

    states = _states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states["train"] == "failed" and states["register"] == "upstream_failed", states
    (pod,) = _new_records(kube, before)
    assert pod.phases == ["Pending", "Running", "Failed"] and pod.exit_codes == {"base": 1}
    assert "No module named 'include'" in pod.log_text()
    assert pod.deleted and kube.pods(NAMESPACE) == []
    # nothing trained, nothing registered; the MLflow run says why, in the pod's words
    run = _mlflow_run(store, dag_run)
    assert store.search_model_versions(f"run_id = '{run.info.run_id}'") == []
    assert len(store.search_model_versions(f"name = '{MODEL}'")) == versions_before
    assert MODEL_URI_TAG not in run.data.tags
    assert run.info.status == "FAILED"
    outcome = run.data.tags["modelops.outcome"]
    assert outcome.startswith("failed in task train: AirflowException: training pod ml-training/train-credit-approval-")
    assert "failed: exit 1 (Error); its last output:" in outcome and "No module named 'include'" in outcome


# --- the operator and its trigger, step by step ---------------------------------------------------

def _config(tmp_path: Path, **kubernetes):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    path = tmp_path / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["training"]["backend"] = "kubernetes"
    raw["training"]["kubernetes"].update(kubernetes)
    path.write_text(yaml.safe_dump(raw))
    return load_model_config(path)


class _TaskInstance:
    """What the operator reads from ``context["ti"]``."""

    def __init__(self, dag_id: str, task_id: str, run_id: str) -> None:
        self.dag_id, self.task_id, self.run_id = dag_id, task_id, run_id
        self.map_index, self.try_number, self.start_date = -1, 1, datetime.now(UTC)
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


def _operator(config, run_id: str, dataset_uri: str, **overrides):
    with DAG(f"train_{MODEL}", schedule=None) as dag:
        op = training_operator(config, task_id="train", dataset_uri=dataset_uri, mlflow_run_id=run_id)
    op.startup_check_interval_seconds = 1
    op.poll_interval = 1
    for name, value in overrides.items():
        setattr(op, name, value)
    ti = _TaskInstance(dag.dag_id, op.task_id, f"manual__{datetime.now(UTC).isoformat()}")
    return op, {"ti": ti, "run_id": ti.run_id, "dag": dag}


def _run_as_the_triggerer(trigger: KubernetesPodTrigger):
    """Serialize the trigger as the task runner does, rebuild it as the triggerer does, and take its first event."""
    from airflow.sdk.serde import deserialize, serialize

    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**deserialize(serialize(kwargs)))

    async def first_event():
        events = rebuilt.run()
        try:
            return await anext(events)
        finally:
            await events.aclose()
            await rebuilt.cleanup()

    return asyncio.run(first_event())


@pytest.fixture
def run_id(store, request) -> str:
    return tracking.upsert_run(store, "pod-api-tests", {"test.case": request.node.name}, request.node.name)


def test_the_task_defers_while_the_pod_runs_and_resumes_from_the_trigger_event(
        kube, store, run_id, dataset_uri, tmp_path, capfd):
    config = _config(tmp_path, image=IMAGE)
    op, context = _operator(config, run_id, dataset_uri)
    before = len(kube.records())
    kube.pause_scheduling()  # the pod cannot have run when the task gives its worker slot back
    try:
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context)
        (pod,) = _new_records(kube, before)
        assert pod.phases == ["Pending"] and pod.argv == {}
    finally:
        kube.resume_scheduling()
    trigger = deferred.value.trigger
    assert isinstance(trigger, KubernetesPodTrigger) and deferred.value.method_name == "trigger_reentry"
    assert (trigger.pod_namespace, trigger.pod_name) == (NAMESPACE, pod.name)
    requests_before_trigger = len(kube.requests)

    event = _run_as_the_triggerer(trigger)

    assert event.payload["status"] == "success" and event.payload["name"] == pod.name
    assert pod.exit_codes == {"base": 0}  # the pod ran while the task was deferred …
    polled = [r for r in kube.requests[requests_before_trigger:] if r.path.endswith(f"/pods/{pod.name}")]
    assert polled and all(r.method == "GET" for r in polled)  # … watched by the trigger's own (async) client
    assert not pod.deleted

    resumed, _ = _operator(config, run_id, dataset_uri)  # the worker that resumes the task builds it afresh
    resumed.trigger_reentry(context, event.payload)

    assert pod.deleted and kube.pods(NAMESPACE) == []
    tags = store.get_run(run_id).data.tags
    assert tags[MODEL_URI_TAG].startswith("models:/") and tags["training_backend"] == "kubernetes"
    out = capfd.readouterr().out
    assert "[base] logs:" in out and f"Logged model {tags[MODEL_URI_TAG]} to run {run_id}" in out


def _drive(op, context):
    """Run the task as Airflow does: execute, and if it defers, the trigger and the resumption."""
    try:
        return op.execute(context)
    except TaskDeferred as deferred:
        event = _run_as_the_triggerer(deferred.trigger)
        return getattr(op, deferred.method_name)(context, event.payload)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-the-worker"])
@pytest.mark.parametrize(
    ("registry_error", "expected"),
    [
        # the provider gives up at the first pull error that is not transient: ErrImagePull or already back-off
        (None, r"did not start: (ErrImagePull: |ImagePullBackOff: Back-off pulling image "
               r"\"registry.example.com/modelops:missing\": ErrImagePull: )rpc error: code = NotFound desc = failed to "
               r"pull and unpack image"),
        # transient: the kubelet keeps trying, the task waits out training.kubernetes.startup_timeout_seconds
        ("429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit",
         r"did not start: ImagePullBackOff: Back-off pulling image \"registry.example.com/modelops:missing\": "
         r"ErrImagePull: 429 Too Many Requests"),
    ],
    ids=["image-not-found", "registry-rate-limit"],
)
def test_a_pod_that_never_starts_fails_the_task_with_the_pull_error(kube, store, run_id, tmp_path, deferrable,
                                                                      registry_error, expected):
    """A missing image fails at once; a rate-limited registry (kubelet keeps retrying) when the startup timeout ends."""
    config = _config(tmp_path, image=MISSING_IMAGE, startup_timeout_seconds=3)
    if registry_error:
        kube.fail_pull(MISSING_IMAGE, registry_error)
    op, context = _operator(config, run_id, "unused", deferrable=deferrable)
    before = len(kube.records())
    try:
        with pytest.raises(AirflowException) as failed:
            _drive(op, context)
    finally:
        kube.fail_pull(MISSING_IMAGE, None)

    assert not isinstance(failed.value, AirflowFailException)  # retried: a registry can recover
    assert str(failed.value).startswith(f"training pod {NAMESPACE}/train-credit-approval-")
    assert re.search(expected, str(failed.value)), str(failed.value)
    (pod,) = _new_records(kube, before)
    assert pod.phases == ["Pending"] and pod.argv == {}  # nothing ran
    assert pod.deleted and kube.pods(NAMESPACE) == []
    assert MODEL_URI_TAG not in store.get_run(run_id).data.tags


def test_a_pod_no_node_can_take_fails_the_task_with_the_schedulers_reason(kube, store, run_id, tmp_path):
    """A GPU pod on a cluster without GPUs stays unscheduled; the task fails when the schedule timeout ends."""
    limits = {"cpu": "4", "memory": "8Gi", "gpu": 1}
    config = _config(tmp_path, image=IMAGE, limits=limits, startup_timeout_seconds=3)
    op, context = _operator(config, run_id, "unused")
    before = len(kube.records())

    with pytest.raises(AirflowException) as failed:
        _drive(op, context)

    (pod,) = _new_records(kube, before)
    assert str(failed.value) == (f"training pod {NAMESPACE}/{pod.name} was not scheduled: Unschedulable: 0/1 nodes are "
                                 f"available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No "
                                 f"preemption victims found for incoming pod.")
    assert pod.body["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod.argv == {} and pod.deleted


def test_a_pod_whose_secret_is_missing_fails_the_task_naming_the_secret(kube, store, run_id, tmp_path):
    """The credentials Secret the model's YAML names does not exist in the namespace: the kubelet cannot create the container."""
    config = _config(tmp_path, image=IMAGE, startup_timeout_seconds=3,
                     mlflow_credentials_secret={"name": "mlflow-credentials"})
    op, context = _operator(config, run_id, "unused")
    before = len(kube.records())

    with pytest.raises(AirflowException) as failed:
        _drive(op, context)

    (pod,) = _new_records(kube, before)
    assert str(failed.value) == (f"training pod {NAMESPACE}/{pod.name} did not start: CreateContainerConfigError: "
                                 f'secret "mlflow-credentials" not found')
    assert pod.argv == {} and pod.deleted


def test_in_the_worker_the_pod_log_is_followed_into_the_task_log_and_exit_2_is_final(
        kube, store, run_id, dataset_uri, tmp_path, capfd):
    """The non-deferrable path (PodManager follows the log while the pod runs); bad input fails without retries."""
    config = _config(tmp_path, image=IMAGE)
    op, context = _operator(config, run_id, dataset_uri, deferrable=False)
    op.model_name = "no_such_model"  # the entrypoint exits 2: bad input or configuration
    before = len(kube.records())

    with pytest.raises(AirflowFailException) as failed:
        _drive(op, context)

    (pod,) = _new_records(kube, before)
    assert pod.exit_codes == {"base": 2} and pod.deleted
    message = str(failed.value)
    assert f"training pod {NAMESPACE}/{pod.name} failed: exit 2 (Error, bad input or configuration)" in message
    assert "no_such_model" in message  # the entrypoint's own error, from the termination message
    out = capfd.readouterr().out
    assert any("[base]" in line and "no_such_model" in line for line in out.splitlines()), out[-3000:]
