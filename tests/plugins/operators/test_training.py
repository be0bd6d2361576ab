"""The training backends: the Kubernetes pod request (validated against Kubernetes' own schemas) and the local process."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml
from airflow.sdk import DAG
from kubernetes.client import ApiClient

from include.config import load_model_config
from include.train import command
from modelops.operators.training import LocalTrainingOperator, training_operator
from modelops.operators.training_pod import TrainingPodOperator

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
    assert container["command"] == ["python", "-m", "include.train"]
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
