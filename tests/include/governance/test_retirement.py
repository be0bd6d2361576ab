"""Tests for include.governance.retirement against a real SQLite MLflow store, a local archive folder and,
for the unload step, a real Triton server.

Every test registers a model of its own (``name``) in the module's store and ledger; versions are the
conftest's tiny logged models, registered as often as a scenario needs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow.artifacts
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import QualityFloor, RetirementConfig, get_model_config
from include.governance import archive, retirement
from include.governance.archive import ArchiveError, LocalArchiveStore
from include.governance.ledger import default_ledger
from include.governance.retirement import RetirementError
from include.monitoring.history import KIND_TAG, MODEL_TAG
from include.promotion import registry, rollout
from include.promotion.registry import Because
from include.serving.triton import repository
from include.serving.triton.client import TritonClient, TritonError
from include.serving.triton.model import MARKER, ONNX_FILE
from tests.fakes.archive_store import FaultyStore

BASE = get_model_config("credit_approval")
RUN = Because("tester", "monthly retirement", "retire_test", "scheduled__2026-12-01T00:00:00+00:00")
EXPERIMENT = "retirement-tests"


def _config(name: str, **settings) -> object:
    """The credit model's config under this test's model name, with its own ``retirement:`` settings."""
    return BASE.model_copy(update={"name": name, "retirement": RetirementConfig(**settings)})


def _version(client: MlflowClient, name: str, model_uri: str, run_id: str, **tags: str) -> str:
    registry.ensure_registered_model(client, name)
    created = client.create_model_version(name, model_uri, run_id=run_id, tags=tags or None,
                                          model_id=model_uri.removeprefix("models:/"))
    return str(created.version)


def _bare_run(client: MlflowClient, **tags: str) -> str:
    experiment_id = tracking.ensure_experiment(client, EXPERIMENT)
    return client.create_run(experiment_id, tags=tags).info.run_id


def _actions(name: str, version: str) -> list[str]:
    return [e.action for e in default_ledger().records(model=name, version=version) if e.action in retirement.ACTIONS]


def _state(client: MlflowClient, name: str) -> dict:
    """Everything a retirement could change in the registry: each version's tags, the model's aliases."""
    return {"tags": {str(v.version): dict(v.tags) for v in retirement.all_versions(client, name)},
            "aliases": retirement.registry_aliases(client, name)}


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _model_files(client: MlflowClient, name: str, version: str, dest: Path) -> dict[str, str]:
    local = Path(mlflow.artifacts.download_artifacts(client.get_model_version_download_uri(name, version),
                                                     dst_path=str(dest)))
    return {p.relative_to(local).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in local.rglob("*") if p.is_file() and p.name != archive.REGISTERED_MODEL_META}


def _fake_export(repo: Path, name: str, version: str) -> Path:
    """An intact export folder as :func:`include.serving.triton.repository.read_marker` checks it (never loaded)."""
    folder = repo / name / version
    folder.mkdir(parents=True)
    (folder / ONNX_FILE).write_bytes(b"an exported model")
    shutil.copyfile(repository.MODEL_SOURCE, folder / "model.py")
    shutil.copyfile(repository.LOG_SOURCE, folder / repository.LOG_FILE)
    marker = {"format": repository.FORMAT, "key": {"exporter": "test"}, "inputs": [],
              "onnx_sha256": hashlib.sha256((folder / ONNX_FILE).read_bytes()).hexdigest(),
              "model_py_sha256": hashlib.sha256((folder / "model.py").read_bytes()).hexdigest(),
              "request_log_sha256": hashlib.sha256((folder / repository.LOG_FILE).read_bytes()).hexdigest()}
    (folder / MARKER).write_text(json.dumps(marker))
    return folder


@pytest.fixture(scope="module")
def triton(triton_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonClient, Path]]:
    """A real Triton server (explicit model control: it loads nothing by itself) and its repository folder."""
    from include.serving.triton.server import TritonServer

    tmp = tmp_path_factory.mktemp("retire-triton")
    repo = tmp / "models"
    repo.mkdir()
    with TritonServer(venv=triton_venv, log_path=tmp / "tritonserver.log").start(repo) as server:
        server.wait_ready(60)
        with TritonClient(server.url) as client:
            yield client, repo


# --- which versions ------------------------------------------------------------------------------


def _hours(client: MlflowClient, config, version_values: list[tuple[str, float]]) -> None:
    """Monitored hours on the model's monitoring run, as monitoring writes them: ``model_version`` + ``kpi.<name>``."""
    run_id = tracking.upsert_run(client, config.experiment_name, {KIND_TAG: "monitoring", MODEL_TAG: config.name},
                                 f"monitoring-{config.name}")
    start = 490_000  # hours since the epoch (2025-11)
    metrics = []
    for i, (version, value) in enumerate(version_values):
        step = start + i
        metrics += [Metric("model_version", float(version), step * 3_600_000, step),
                    Metric("kpi.approval_rate", value, step * 3_600_000, step)]
    client.log_batch(run_id, metrics=metrics)


def test_each_rule_makes_a_candidate_with_its_reason(client, runs, name) -> None:
    uri, run = runs[0][1], runs[0][0]
    manual = _version(client, name, uri, run)
    tagged = _version(client, name, uri, run, **{"data.unusable": "true"})
    run_tagged = _version(client, name, uri, _bare_run(client, **{"data.unusable": "YES"}))
    not_unusable = _version(client, name, uri, _bare_run(client, **{"data.unusable": "false"}))
    below = _version(client, name, uri, run)
    too_few = _version(client, name, uri, run)
    above = _version(client, name, uri, run)
    config = _config(name, manual=[manual, "99"], quality_floor=QualityFloor(kpi="approval_rate", minimum=0.5, hours=3))
    # "below": its last 3 hours average 0.4 (an earlier good hour does not count); "too_few": 2 bad hours only.
    _hours(client, config, [(below, 0.9), (below, 0.3), (too_few, 0.1), (below, 0.4), (above, 0.6), (below, 0.5),
                            (too_few, 0.1), (above, 0.55), (above, 0.5)])

    plan = retirement.candidates(client, config, served_versions=set(), now=datetime.now(UTC))

    rules = {c.version: [r.rule for r in c.reasons] for c in plan.candidates}
    assert rules == {manual: ["manual"], tagged: ["unusable_data"], run_tagged: ["unusable_data"],
                     below: ["quality_floor"]}
    assert not_unusable not in rules and too_few not in rules and above not in rules
    details = {c.version: c.reason_text for c in plan.candidates}
    assert "data.unusable=true" in details[tagged]
    assert f"training run {client.get_model_version(name, run_tagged).run_id} carries data.unusable=YES" in details[run_tagged]
    assert "mean approval_rate 0.4 over its last 3 monitored hours" in details[below]
    assert "below the floor 0.5" in details[below]
    assert plan.unknown == ("99",)
    assert plan.protected == ()
    assert retirement.RetirementPlan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan


def test_superseded_counts_from_the_end_of_the_last_alias_term_or_from_creation(client, runs, name) -> None:
    uri, run = runs[0][1], runs[0][0]
    never = _version(client, name, uri, run)
    was_champion = _version(client, name, uri, run)
    champion = _version(client, name, uri, run)
    registry.move_alias(client, name, "champion", was_champion, RUN)
    time.sleep(1.5)
    registry.move_alias(client, name, "champion", champion, RUN)  # ends was_champion's term now
    config = _config(name, superseded_days=1 / 86400)  # one second
    ended = datetime.now(UTC)

    soon = retirement.candidates(client, config, served_versions=set(), now=ended + timedelta(seconds=0.5))
    later = retirement.candidates(client, config, served_versions=set(), now=ended + timedelta(seconds=3))
    off = retirement.candidates(client, _config(name, superseded_days=None), served_versions=set(),
                                now=ended + timedelta(days=3650))

    assert soon.versions == [never]  # registered > 1.5 s before; was_champion left @champion 0.5 s before
    assert "it never held an alias; registered" in soon.candidates[0].reason_text
    assert later.versions == [never, was_champion]
    assert "its last alias term (@champion) ended" in later.candidate(was_champion).reason_text
    assert [p.version for p in later.protected] == [champion]
    assert off.versions == []


def test_champion_previous_champion_challenger_served_and_retired_versions_are_protected(client, runs, name) -> None:
    uri, run = runs[0][1], runs[0][0]
    versions = [_version(client, name, uri, run, **{"data.unusable": "1"}) for _ in range(6)]
    champion, previous, challenger, served, retired, plain = versions
    for alias, version in (("champion", champion), ("previous_champion", previous), ("challenger", challenger)):
        registry.move_alias(client, name, alias, version, RUN)
    client.set_model_version_tag(name, retired, "retired", "true")
    config = _config(name, manual=versions)  # every rule says retire, and far in the future

    plan = retirement.candidates(client, config, served_versions={served: "loaded on Triton (READY)"},
                                 now=datetime.now(UTC) + timedelta(days=3650))

    assert plan.versions == [plain]
    why = {p.version: p.why for p in plan.protected}
    assert why == {champion: ("@champion",), previous: ("@previous_champion",), challenger: ("@challenger",),
                   served: ("loaded on Triton (READY)",), retired: ("already retired (no archive recorded)",)}
    matched = {p.version: {r.rule for r in p.matched} for p in plan.protected}
    assert matched[champion] == {"unusable_data", "manual"}  # not superseded: it holds an alias now
    assert matched[served] == {"superseded", "unusable_data", "manual"}
    assert matched[retired] == set()  # not judged again
    alert = retirement.plan_alert(plan, dry_run=False, run="run-1")
    assert f"version {champion}: @champion; would match" in alert.summary
    assert alert.actions == (f"archiving, verifying, unloading and retiring version {plain} in run run-1",)


def test_the_steps_refuse_a_protected_version_even_with_a_verified_archive(client, runs, name, tmp_path) -> None:
    uri, run = runs[0][1], runs[0][0]
    champion = _version(client, name, uri, run)
    store = LocalArchiveStore(tmp_path / "archive")
    retirement.archive_version(client, store, name, champion, because=RUN)
    retirement.verify_archive(client, store, name, champion, because=RUN)
    registry.move_alias(client, name, "champion", champion, RUN)
    before = _state(client, name)

    with pytest.raises(RetirementError, match=f"{name} version {champion} is @champion: never retired"):
        retirement.mark_retired(client, store, name, champion, reason="manual", because=RUN)
    registry.remove_alias(client, name, "champion", RUN)
    with pytest.raises(RetirementError, match="is loaded on Triton \\(READY\\): never retired"):
        retirement.mark_retired(client, store, name, champion, reason="manual", because=RUN,
                                served_versions={champion: "loaded on Triton (READY)"})

    assert _state(client, name)["tags"] == before["tags"]
    failed = [e for e in default_ledger().records(model=name, version=champion) if e.action == "retire_failed"]
    assert [e.details["step"] for e in failed] == ["mark_retired", "mark_retired"]
    assert "is @champion" in failed[0].details["error"]


# --- dry run ---------------------------------------------------------------------------------------


def test_a_dry_run_only_writes_its_plan_record(client, runs, name, tmp_path) -> None:
    uri, run = runs[0][1], runs[0][0]
    old, champion = _version(client, name, uri, run), _version(client, name, uri, run)
    registry.move_alias(client, name, "champion", champion, RUN)
    config = _config(name, manual=[old, champion])
    archive_root = tmp_path / "archive"
    before, records_before = _state(client, name), default_ledger().records(model=name)

    plan = retirement.candidates(client, config, served_versions=set(), now=datetime.now(UTC))
    written = retirement.record_plan(plan, dry_run=True, because=RUN)
    again = retirement.record_plan(plan, dry_run=True, because=RUN)  # a retried task: the same record

    assert plan.versions == [old]
    assert _state(client, name) == before
    assert _files(archive_root) == []
    new = default_ledger().records(model=name)[len(records_before):]
    assert [(e.action, e.version, e.versions) for e in new] == [("retire_planned", old, (old,))]
    assert again["seq"] == written["seq"] == new[0].seq
    assert new[0].details["dry_run"] is True
    assert new[0].details["candidates"] == [{"version": old, "reasons": [
        {"rule": "manual", "detail": "listed in retirement.manual"}]}]
    assert new[0].details["protected"][0]["why"] == ["@champion"]
    assert not any(k.startswith("audit.") for k in client.get_model_version(name, old).tags)


# --- archive → verify → unload → retire → restore ----------------------------------------------------


def test_round_trip_archives_verifies_unloads_retires_and_restores(client, runs, name, tmp_path, triton) -> None:
    triton_client, repo = triton
    first, second, third = (_version(client, name, uri, run) for run, uri in runs)
    for version in (first, second, third):
        client.set_model_version_tag(name, version, "gates.result", "passed")
        registry.promote(client, name, version, actor="tester", reason=f"promote {version}")
    registry.move_alias(client, name, "rolled_back", first, RUN)  # an alias that does not protect
    assert rollout.rollback_refusals(client, name, first) == []  # a valid rollback target before retirement
    config = _config(name, manual=[first, second, third])
    store = LocalArchiveStore(tmp_path / "archive")
    _fake_export(repo, name, first)

    plan = retirement.candidates(client, config, served_versions=retirement.served_on_triton(triton_client, repo, name),
                                 now=datetime.now(UTC))
    assert plan.versions == [first]
    assert {p.version: p.why for p in plan.protected} == {second: ("@previous_champion",), third: ("@champion",)}
    retirement.record_plan(plan, dry_run=False, because=RUN)
    archived = retirement.archive_version(client, store, name, first, because=RUN)
    repeated = retirement.archive_version(client, store, name, first, because=RUN)
    verified = retirement.verify_archive(client, store, name, first, because=RUN)
    unloaded = retirement.unload_version(triton_client, repo, name, first, because=RUN)
    retired = retirement.mark_retired(client, store, name, first, reason=plan.candidate(first).reason_text,
                                      because=RUN)
    again = retirement.mark_retired(client, store, name, first, reason=plan.candidate(first).reason_text, because=RUN)
    assert (again["retired_at"], again["aliases_removed"]) == (retired["retired_at"], [])  # nothing left to do

    where = f"{store.uri}/{name}/{first}"
    assert (archived["archive"], archived["reused"], repeated["reused"]) == (where, False, True)
    assert repeated["manifest_sha256"] == verified["manifest_sha256"] == archived["manifest_sha256"]
    manifest = archive.verify(store, f"{name}/{first}")
    paths = {f.path for f in manifest.files}
    assert {"model/MLmodel", "version.json", "run/info.json", "extra/ledger.jsonl", "extra/evidence.zip"} <= paths
    ledger_lines = (store.path(f"{name}/{first}/extra/ledger.jsonl")).read_text().splitlines()
    assert [json.loads(line)["action"] for line in ledger_lines][-1] == "retire_planned"
    assert unloaded == {"repository": str(repo), "removed": True, "intact_export": True}
    assert not (repo / name / first).exists()
    tags = client.get_model_version(name, first).tags
    assert (tags["retired"], tags["retired.archive"], tags["retired.reason"]) == (
        "true", where, "manual: listed in retirement.manual")
    assert datetime.fromisoformat(tags["retired.at"].replace("Z", "+00:00")) <= datetime.now(UTC)
    assert retired["aliases_removed"] == ["rolled_back"]
    assert retirement.registry_aliases(client, name) == {"champion": third, "previous_champion": second}
    assert _actions(name, first) == ["retire_planned", "archived", "archive_verified", "unloaded", "retired"]
    retired_record = default_ledger().records(model=name, version=first, actions=("retired",))[0]
    assert retired_record.details["manifest_sha256"] == archived["manifest_sha256"]
    assert any(k.startswith("audit.") and k.endswith(".retired") for k in tags)

    # the rollback DAG's checks refuse it now, saying why
    assert rollout.rollback_refusals(client, name, first) == ["it is retired"]
    with pytest.raises(rollout.DeploymentError, match=f"{name} version {first} cannot be rolled back to: it is retired"):
        rollout.plan_rollback(client, name, target=first)
    # and it is never a candidate again
    assert retirement.candidates(client, config, served_versions=set(), now=datetime.now(UTC)).versions == []

    restore_because = Because("auditor", "audit of the retired version", "restore_test", "manual__restore")
    restored = retirement.restore_version(client, store, name, first, because=restore_because)
    restored_again = retirement.restore_version(client, store, name, first, because=restore_because)

    new = str(restored.version)
    assert str(restored_again.version) == new and new not in (first, second, third)
    assert restored.tags["restored_from"] == f"{name}/{first}"
    assert restored.tags["restored_archive"] == where
    assert not {"retired", "retired.archive", "retired.at", "retired.reason"} & set(restored.tags)
    assert retirement.registry_aliases(client, name) == {"champion": third, "previous_champion": second}
    assert (_model_files(client, name, new, tmp_path / "restored")
            == _model_files(client, name, first, tmp_path / "original"))
    restore_records = default_ledger().records(model=name, actions=("restore",))
    assert len(restore_records) == 1
    assert (restore_records[0].version, restore_records[0].versions) == (new, (new, first))
    assert restore_records[0].details == {"restored_from": f"{name}/{first}", "archive": where,
                                          "manifest_sha256": archived["manifest_sha256"], "new_version": new}
    assert restore_records[0].reason == "audit of the retired version"


def test_a_half_way_upload_failure_changes_nothing_and_the_retry_completes(client, runs, name, tmp_path) -> None:
    uri, run = runs[1][1], runs[1][0]
    version = _version(client, name, uri, run)
    registry.move_alias(client, name, "rolled_back", version, RUN)
    local = LocalArchiveStore(tmp_path / "archive")
    broken = FaultyStore(local, fail_on=7)
    before = _state(client, name)
    attempt = Because(RUN.actor, RUN.reason, RUN.dag_id, "manual__half_way")

    with pytest.raises(ConnectionError, match="injected"):
        retirement.archive_version(client, broken, name, version, because=attempt, attempt=1)

    sent = list(broken.puts)
    sent_model = {k for k in sent if k.split("/")[2] == "model"}
    assert len(sent) == 6 and sent_model and not local.exists(f"{name}/{version}/manifest.json")
    with pytest.raises(ArchiveError, match="incomplete archive"):
        archive.verify(local, f"{name}/{version}")
    with pytest.raises(RetirementError, match="no archived record"):
        retirement.verify_archive(client, local, name, version, because=attempt, attempt=1)
    with pytest.raises(RetirementError, match="was never verified"):
        retirement.mark_retired(client, local, name, version, reason="manual", because=attempt, attempt=1)
    assert _state(client, name) == before  # tags and aliases untouched
    failed = [e for e in default_ledger().records(model=name, version=version) if e.action == "retire_failed"]
    assert [e.details["step"] for e in failed] == ["archive", "verify", "mark_retired"]
    assert "ConnectionError: injected: connection reset" in failed[0].details["error"]

    retry = FaultyStore(local)
    archived = retirement.archive_version(client, retry, name, version, because=attempt, attempt=2)
    retirement.verify_archive(client, local, name, version, because=attempt, attempt=2)
    retirement.mark_retired(client, local, name, version, reason="manual", because=attempt, attempt=2)

    assert not sent_model & set(retry.puts)  # the model files stored before the failure were not sent again
    assert retry.puts[-1] == f"{name}/{version}/manifest.json"
    assert archive.verify(local, f"{name}/{version}").sha256 == archived["manifest_sha256"]
    assert client.get_model_version(name, version).tags["retired"] == "true"
    assert _actions(name, version) == ["retire_failed", "retire_failed", "retire_failed", "archived",
                                       "archive_verified", "retired"]


def test_a_corrupted_archive_file_fails_verification_and_blocks_retirement(client, runs, name, tmp_path) -> None:
    uri, run = runs[2][1], runs[2][0]
    version = _version(client, name, uri, run)
    store = LocalArchiveStore(tmp_path / "archive")
    retirement.archive_version(client, store, name, version, because=RUN)
    store.path(f"{name}/{version}/model/MLmodel").write_text("tampered\n")

    with pytest.raises(ArchiveError, match="checksum mismatch"):
        retirement.verify_archive(client, store, name, version, because=RUN)
    with pytest.raises(RetirementError, match="was never verified"):
        retirement.mark_retired(client, store, name, version, reason="manual", because=RUN)
    assert "retired" not in client.get_model_version(name, version).tags


# --- unload ----------------------------------------------------------------------------------------


def test_unload_removes_an_exported_version_triton_has_not_loaded(client, name, triton) -> None:
    triton_client, repo = triton
    _fake_export(repo, name, "7")
    assert repository.exported_versions(repo, name) == [7]

    assert retirement.unload_version(triton_client, repo, name, "7", because=RUN)["removed"] is True
    assert retirement.unload_version(triton_client, repo, name, "7", because=RUN)["removed"] is False
    assert repository.exported_versions(repo, name) == []
    unloaded = default_ledger().records(model=name, version="7", actions=("unloaded",))
    assert [e.details["removed"] for e in unloaded] == [True, False]


def test_unload_refuses_a_version_triton_is_configured_to_serve(client, name, triton) -> None:
    triton_client, repo = triton
    _fake_export(repo, name, "2")
    repository.set_served_versions(repo, name, ["2"])

    with pytest.raises(RetirementError, match="is listed in Triton's config.pbtxt"):
        retirement.unload_version(triton_client, repo, name, "2", because=RUN, attempt=1)

    assert repository.exported_versions(repo, name) == [2]
    assert retirement.served_on_triton(triton_client, repo, name) == {
        "2": "listed in Triton's config.pbtxt (it loads on the next load of the model)"}
    assert _actions(name, "2") == ["retire_failed"]


def test_unload_refuses_when_triton_does_not_answer(client, name, tmp_path) -> None:
    from include.serving.triton.server import free_port

    repo = tmp_path / "models"
    _fake_export(repo, name, "3")
    with TritonClient(f"http://127.0.0.1:{free_port()}", timeout=2) as nobody:
        with pytest.raises(TritonError):
            retirement.unload_version(nobody, repo, name, "3", because=RUN)

    assert repository.exported_versions(repo, name) == [3]
    assert _actions(name, "3") == ["retire_failed"]
