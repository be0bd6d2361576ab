"""The Dockerfile and docker-compose.yaml stay consistent with the code and the lock."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pinned(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert match, f"{package} is not pinned in requirements.txt"
    return match.group(1)


def test_every_requirement_is_pinned_exactly():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            assert "==" in line, line


def test_dockerfile_base_image_matches_the_pinned_airflow_and_python():
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/airflow:(\S+)-python(\S+)$", dockerfile, re.M)
    assert base, "Dockerfile must start from apache/airflow:<version>-python<version>"
    assert base.group(1) == _pinned("apache-airflow")
    assert base.group(2) == "3.11"  # the version the lock is compiled for (make lock)


def test_dockerfile_copies_the_project_and_sets_the_import_path():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source, _dest in re.findall(r"^COPY (?:--chown=\S+ )?(\S+) (\S+)$", dockerfile, re.M):
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    for folder in ("include/", "plugins/", "dags/", "config/", "requirements.txt"):
        assert f" {folder} " in dockerfile, f"Dockerfile does not copy {folder}"
    assert "PYTHONPATH=/opt/airflow" in dockerfile  # python -m include.training.train in the training pod


def test_compose_points_airflow_at_the_compose_mlflow_server(monkeypatch):
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "mlflow", "airflow-apiserver", "airflow-scheduler", "airflow-worker"} <= set(services)
    env = services["airflow-scheduler"]["environment"]
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    from modelops.mlflow_hook import MlflowHook

    assert MlflowHook().tracking_uri == "http://mlflow:5000"
    assert "5000" in services["mlflow"]["entrypoint"]
    for name, service in services.items():
        for mount in service.get("volumes", []):
            host = mount.split(":")[0]
            if host.startswith("./config"):  # files the repo ships (./data, ./triton-models are runtime state)
                assert (ROOT / host).exists(), f"{name} mounts {host}, which does not exist"


def test_compose_triton_uses_the_pinned_onnxruntime():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    pinned = re.search(r"^onnxruntime==(\S+)$", (ROOT / "requirements-triton.txt").read_text(), re.M).group(1)
    assert f"onnxruntime=={pinned}" in " ".join(compose["services"]["triton"]["entrypoint"])
