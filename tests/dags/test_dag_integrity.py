"""Every DAG imports cleanly, follows the house rules, and parses fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from include.dag_ids import AUDIT_LEDGER, INSTALLATION_DAGS, Stage, dag_id

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
# DAGs of the installation, not of a model: one each, their id the file's stem.
INSTALLATION_DAG_SPECS = {AUDIT_LEDGER: {"tags": ("modelops", "governance"), "upstream": {
    "verify": set(), "anchor": {"verify"}, "apply_retention": {"anchor"}}}}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


# Each family's tags after "modelops" (the stage, the system; then the model name), manual-run params, and
# every task with its direct upstream tasks: the lifecycle as each DAG file wires it.
FAMILIES = {
    "train": {
        "tags": ("training",),
        "params": {"dataset_uri", "force", "alert"},
        "upstream": {
            "validate": set(), "fingerprint": {"validate"}, "needs_training": {"fingerprint"},
            "train": {"fingerprint", "needs_training"}, "evaluate": {"fingerprint", "train"},
            "register": {"fingerprint", "evaluate"},
        },
    },
    "promote": {
        "tags": ("promotion",),
        "params": {"version"},
        "upstream": {
            "resolve_candidate": set(), "check_gates": {"resolve_candidate"},
            "promote": {"resolve_candidate", "check_gates"},
        },
    },
    "deploy": {
        "tags": ("deployment", "triton"),
        "params": {"version"},
        "upstream": {
            "plan": set(), "export": {"plan"}, "load": {"plan", "export"}, "wait_ready": {"plan", "load"},
            "verify": {"plan", "wait_ready"}, "mark_live": {"plan", "verify"}, "stop_challenger": {"plan", "mark_live"},
            "roll_back_failed_deployment": {"export", "load", "wait_ready", "verify"},
        },
    },
    "rollback": {
        "tags": ("rollback", "triton"),
        "params": {"target_version", "reason", "force", "from_version"},
        "upstream": {
            "roll_back": set(), "export": {"roll_back"}, "load": {"roll_back", "export"},
            "wait_ready": {"roll_back", "load"}, "verify": {"roll_back", "wait_ready"},
            "switch": {"roll_back", "verify"},
            "restore_after_failed_rollback": {"export", "load", "wait_ready", "verify"},
        },
    },
    "monitor": {
        "tags": ("monitoring",),
        "params": {"hour"},
        "upstream": {
            "assess": set(), "route": {"assess"}, "trigger_rollback": {"assess", "route"},
            "trigger_retrain": {"assess", "route"},
            "notify": {"assess", "route", "trigger_rollback", "trigger_retrain"},
        },
    },
    "batch_score": {
        "tags": ("batch", "spark"),
        "params": set(),
        "upstream": {"pin_champion": set(), "score": {"pin_champion"}},
    },
    "retire": {
        "tags": ("retirement", "archive"),
        "params": {"dry_run"},
        "upstream": {
            "evaluate": set(), "notify_owners": {"evaluate"},
            "retire_version.archive": {"notify_owners"},
            "retire_version.verify": {"notify_owners", "retire_version.archive"},
            "retire_version.unload": {"notify_owners", "retire_version.verify"},
            "retire_version.mark_retired": {"notify_owners", "retire_version.verify", "retire_version.unload"},
        },
    },
    "restore": {
        "tags": ("retirement", "archive"),
        "params": {"version", "reason"},
        "upstream": {"check_archive": set(), "restore": {"check_archive"}},
    },
    "freshness": {
        "tags": ("training", "freshness"),
        "params": {"dry_run"},
        "upstream": {
            "check": set(), "route": {"check"}, "propose": {"check", "route"}, "trigger_retrain": {"propose"},
            "notify": {"check", "route", "trigger_retrain"},
        },
    },
}
# Tasks that do not simply follow success: the recoveries run only when the main flow failed, and notify
# reports whatever the monitoring or freshness branch chose (the branches not taken are skipped). All others: all_success.
TRIGGER_RULES = {
    "roll_back_failed_deployment": "one_failed",
    "restore_after_failed_rollback": "one_failed",
    "notify": "none_failed_min_one_success",
}


def _family_dags(dagbag):
    """(family, model config, DAG) for every DAG the configured models should have."""
    from include.config import load_model_configs

    for name, config in load_model_configs().items():
        for family in FAMILIES:
            if family == "batch_score" and config.batch is None:
                assert dag_id(Stage.BATCH_SCORE, name) not in dagbag.dag_ids  # online-only model
                continue
            yield family, config, dagbag.dags[dag_id(family, name)]


def test_every_configured_model_has_its_dags(dagbag):
    from include.config import load_model_configs

    configs = load_model_configs()
    assert configs
    expected = {dag_id(family, name) for family in FAMILIES for name, config in configs.items()
                if family != "batch_score" or config.batch is not None}
    assert set(dagbag.dag_ids) == expected | set(INSTALLATION_DAG_SPECS)
    # a new DAG file gets its family (or its installation DAG) described above
    assert set(FAMILIES) | set(INSTALLATION_DAG_SPECS) == {p.stem for p in DAG_FILES}
    assert set(FAMILIES) == set(Stage) and set(INSTALLATION_DAG_SPECS) == set(INSTALLATION_DAGS)


def test_installation_dags_are_wired_as_described(dagbag):
    for installation_dag, spec in INSTALLATION_DAG_SPECS.items():
        dag = dagbag.dags[installation_dag]
        assert set(dag.tags) == set(spec["tags"])
        assert {t.task_id: set(t.upstream_task_ids) for t in dag.tasks} == spec["upstream"]
        assert all(t.retries >= 1 for t in dag.tasks) and dag.max_active_runs == 1 and not dag.catchup


def test_each_dag_alerts_about_its_own_model_through_its_channel(dagbag):
    """The failure notifier is built for the DAG's model from its ``alerts:`` config (not parsed from the id)."""
    from modelops.notify import DagFailureNotifier

    for _family, config, dag in _family_dags(dagbag):
        notifier = dag.on_failure_callback
        assert isinstance(notifier, DagFailureNotifier), dag.dag_id
        assert (notifier.model, notifier.slack_conn_id, notifier.channel) == (
            config.name, config.alerts.slack_conn_id, config.alerts.channel), dag.dag_id


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_wires_the_lifecycle_steps(dagbag, family):
    spec = FAMILIES[family]
    dags = [(config, dag) for fam, config, dag in _family_dags(dagbag) if fam == family]
    assert dags, f"no {family} DAG"
    for config, dag in dags:
        assert dag.tags == {"modelops", *spec["tags"], config.name}, dag.dag_id
        assert set(dag.params.keys()) == spec["params"], dag.dag_id
        upstream = {task.task_id: task.upstream_task_ids for task in dag.tasks}
        if family == "promote" and config.approval.required:
            spec = {**spec, "upstream": {**spec["upstream"], "approve": {"check_gates"},
                                         "promote": spec["upstream"]["promote"] | {"approve"}}}
        assert upstream == spec["upstream"], dag.dag_id
        assert dag.max_active_runs == 1, dag.dag_id  # alias moves and Triton loads are last-writer-wins
        assert all(task.owner == config.owner for task in dag.tasks), dag.dag_id
        rules = {task.task_id: str(task.trigger_rule.value) for task in dag.tasks}
        assert rules == {t: TRIGGER_RULES.get(t, "all_success") for t in upstream}, dag.dag_id


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


def test_schedules_follow_the_lifecycle(dagbag):
    """Promotion on a new @challenger, deployment on a new @champion, monitoring hourly on data intervals,
    batch scoring, training and retirement on their configured schedules, the freshness check daily when
    training.max_age_days is set, rollback and restore only when triggered."""
    for family, config, dag in _family_dags(dagbag):
        timetable = dag.timetable
        if family in ("promote", "deploy"):
            alias = "challenger" if family == "promote" else "champion"
            assert [asset.uri for asset in dag.schedule] == [
                f"mlflow-model://{config.name}/{alias}"], dag.dag_id
        elif family in ("rollback", "restore"):
            assert type(timetable).__name__ == "NullTimetable", dag.dag_id
        elif family == "retire":
            assert dag.schedule == config.retirement.schedule, dag.dag_id
        elif family == "monitor":  # data intervals: a run covers the hour before it, a re-run the same hour
            from airflow.sdk import CronDataIntervalTimetable

            assert isinstance(timetable, CronDataIntervalTimetable), dag.dag_id
            assert timetable.expression == CronDataIntervalTimetable(config.monitoring.schedule, timezone="UTC").expression
        elif family == "batch_score":
            assert dag.schedule == config.batch.schedule, dag.dag_id
        elif family == "freshness":  # daily when the model has a maximum data age, else on demand
            assert dag.schedule == ("@daily" if config.training.max_age_days is not None else None), dag.dag_id
        else:
            assert dag.schedule == config.training.schedule, dag.dag_id


# The DAG processor is Airflow's own process: Airflow core (models, the DAG processing manager) is loaded,
# and the providers' asset URI handlers are discovered once per process (e.g. the Amazon S3 hook, ~0.5 s).
# Those are per-process costs, not a DAG file's, so the timer pays them first. Then it parses a bare DAG file
# (one @dag with one @task: what any DAG file costs, incl. the first use of the decorators) and then the
# project's file, both in CPU time (another process busy on the same cores does not count).
PARSE_TIMER = """
import json, runpy, sys, time
import airflow, airflow.sdk, airflow.dag_processing.manager
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
ProvidersManagerTaskRuntime().initialize_providers_asset_uri_resources()
def cpu_seconds(path):
    start = time.process_time()
    runpy.run_path(path)
    return time.process_time() - start
print(json.dumps([cpu_seconds(path) for path in sys.argv[1:]]))
"""
BARE_DAG = """
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["bare"])
def bare():
    @task
    def hello() -> str:
        return "hello"

    hello()


bare()
"""
# The project file may cost at most this many bare DAG files more than the bare one. Measured (2026-11, CPU-s,
# 2 busy cores): bare 0.023-0.031; each project file 0.04-0.08 more, i.e. 1.5-2.6 bare files (monitor.py
# and train.py the most). A DAG file importing pandas at the top costs ~0.67 more (22 bare files), one
# importing mlflow ~1.8 (60): over the bound, as is any registry or network call. Both sides scale with the
# machine, so a slow machine does not fail it.
EXTRA_BARE_FILES = 10


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_about_as_fast_as_a_bare_dag_file(dag_file, tmp_path):
    bare = tmp_path / "bare_dag.py"
    bare.write_text(BARE_DAG)
    out = subprocess.run(
        [sys.executable, "-c", PARSE_TIMER, str(bare), str(dag_file)],
        capture_output=True, text=True, check=True, env={**os.environ}, cwd=ROOT,
    )
    bare_s, project_s = json.loads(out.stdout.strip().splitlines()[-1])
    assert project_s - bare_s <= EXTRA_BARE_FILES * bare_s, (
        f"{dag_file.name} took {project_s:.3f} CPU-s to parse, a bare DAG file {bare_s:.3f}: "
        f"{(project_s - bare_s) / bare_s:.1f} bare files more (at most {EXTRA_BARE_FILES})")


def test_the_parse_timer_catches_a_dag_file_with_heavy_top_level_imports(tmp_path):
    """The bound is tight enough to fail a DAG file that imports pandas at the top."""
    bare, heavy = tmp_path / "bare_dag.py", tmp_path / "heavy_dag.py"
    bare.write_text(BARE_DAG)
    heavy.write_text("import pandas  # noqa: F401\n" + BARE_DAG.replace("def bare", "def heavy").replace("bare()", "heavy()"))
    out = subprocess.run(
        [sys.executable, "-c", PARSE_TIMER, str(bare), str(heavy)],
        capture_output=True, text=True, check=True, env={**os.environ}, cwd=ROOT,
    )
    bare_s, heavy_s = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy_s - bare_s > EXTRA_BARE_FILES * bare_s, (bare_s, heavy_s)


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
    assert approve.task_type == "AuditedApprovalOperator"  # Airflow's ApprovalOperator, its answer in the ledger
    assert approve.upstream_task_ids == {"check_gates"}
    assert "approve" in dag.get_task("promote").upstream_task_ids
    assert approve.response_timeout.total_seconds() == 4 * 3600
