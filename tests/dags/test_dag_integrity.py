"""Every DAG imports cleanly, follows the house rules, and parses fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_configured_model_has_its_dags(dagbag):
    from include.config import load_model_configs

    for name in load_model_configs():
        assert {f"train_{name}", f"promote_{name}"} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_ids_start_with_the_file_stem(dagbag, dag_file):
    ids = [d.dag_id for d in dagbag.dags.values() if Path(d.fileloc).name == dag_file.name]
    assert ids, f"{dag_file.name} defines no DAG"
    assert all(i == dag_file.stem or i.startswith(f"{dag_file.stem}_") for i in ids)


def test_tags_retries_docs_and_no_catchup(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.doc_md, f"{dag.dag_id} has no doc_md"
        assert not dag.catchup, f"{dag.dag_id} catches up"
        for task in dag.tasks:
            if task.task_type == "ApprovalOperator":
                continue  # a human answers once; retrying would ask again
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"


def test_promotions_never_overlap(dagbag):
    for dag in dagbag.dags.values():
        if dag.dag_id.startswith("promote_"):
            assert dag.max_active_runs == 1


# The DAG processor has Airflow loaded, and discovers the providers' asset URI handlers once per
# process (it imports e.g. the Amazon S3 hook, ~0.5 s): per-process costs, not this file's.
PARSE_TIMER = """
import json, runpy, sys, time
import airflow, airflow.sdk
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
ProvidersManagerTaskRuntime().initialize_providers_asset_uri_resources()
start = time.process_time()  # CPU time: another process busy on the same cores does not count
runpy.run_path(sys.argv[1])
print(json.dumps(time.process_time() - start))
"""


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_in_under_a_second(dag_file):
    out = subprocess.run(
        [sys.executable, "-c", PARSE_TIMER, str(dag_file)],
        capture_output=True, text=True, check=True, env={**os.environ}, cwd=ROOT,
    )
    seconds = json.loads(out.stdout.strip().splitlines()[-1])
    assert seconds < 1.0, f"{dag_file.name} took {seconds:.2f} CPU-s to parse"


def test_a_bad_config_is_an_import_error_naming_file_and_key(tmp_path, monkeypatch):
    import shutil

    shutil.copytree(ROOT / "config", tmp_path / "config")
    bad = tmp_path / "config" / "models" / "credit_approval.yaml"
    bad.write_text(bad.read_text().replace("minimum: 0.70", "minimum: high"))
    monkeypatch.setenv("MODELOPS_CONFIG_DIR", str(tmp_path / "config"))
    out = subprocess.run(
        [sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv[1])", str(ROOT / "dags" / "train.py")],
        capture_output=True, text=True, env={**os.environ}, cwd=ROOT,
    )
    assert out.returncode != 0
    assert "credit_approval.yaml: gates.minimum: Input should be a valid number" in out.stderr


def test_plugin_loader_does_not_import_the_modelops_package():
    """Airflow imports every .py file under plugins/ as a top-level module named after the file;
    modelops/hooks/mlflow.py would shadow the real mlflow. plugins/.airflowignore prevents it."""
    from airflow._shared.module_loading import find_path_from_directory

    loaded = [Path(p) for p in find_path_from_directory(str(ROOT / "plugins"), ".airflowignore", "glob")]
    assert not [p for p in loaded if "modelops" in p.parts]


def test_approval_sits_between_gates_and_promotion_when_configured(tmp_path, monkeypatch):
    import shutil

    import yaml

    from dags import promote as promote_module  # noqa: F401 - imported for its build() factory
    from include.config import load_model_config

    shutil.copytree(ROOT / "config", tmp_path / "config")
    path = tmp_path / "config" / "models" / "credit_approval.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["approval"] = {"required": True, "timeout_hours": 4}
    path.write_text(yaml.safe_dump(raw))
    dag = promote_module.build(load_model_config(path))

    approve = dag.get_task("approve")
    assert approve.task_type == "ApprovalOperator"
    assert approve.upstream_task_ids == {"check_gates"}
    assert "approve" in dag.get_task("promote").upstream_task_ids
    assert approve.response_timeout.total_seconds() == 4 * 3600
