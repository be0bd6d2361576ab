"""Tests for include.governance.lineage: code commit, dependency hash, params hash, the idempotency key and the
tag sets of a training run and of a registered version."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.config import load_model_config
from include.governance import lineage
from include.governance.lineage import code_commit, dependency_hash, idempotency_key, params_hash

ROOT = Path(__file__).resolve().parents[3]
CFG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
BASE = {
    "data_fingerprint": "sha256:" + "a" * 64,
    "commit": "0123abc",
    "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
    "params": {"max_iter": 150, "learning_rate": 0.08},
}


@pytest.fixture(autouse=True)
def _fresh_commit_cache() -> Iterator[None]:
    """code_commit() and dependency_hash() are cached per process: start and leave every test with empty caches."""
    code_commit.cache_clear()
    dependency_hash.cache_clear()
    yield
    code_commit.cache_clear()
    dependency_hash.cache_clear()


def test_idempotency_key_is_a_stable_sha256() -> None:
    key = idempotency_key(**BASE)
    assert SHA256.fullmatch(key)
    assert idempotency_key(**{**BASE, "params": dict(BASE["params"])}) == key


def test_idempotency_key_keeps_the_value_versions_were_tagged_with() -> None:
    """Versions carry the key as a tag: a change in how it is computed would retrain everything once, silently."""
    assert idempotency_key(**BASE) == "sha256:69aa556a84878d49ad85fc3708246eff8bc74b9b4dfab4af0345a4ffe0a4fdd5"


def test_idempotency_key_ignores_param_order() -> None:
    reordered = dict(reversed(list(BASE["params"].items())))
    assert list(reordered) != list(BASE["params"])
    assert idempotency_key(**{**BASE, "params": reordered}) == idempotency_key(**BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"data_fingerprint": "sha256:" + "b" * 64},
        {"commit": "0123abc-dirty"},
        {"estimator": "sklearn.ensemble.RandomForestClassifier"},
        {"params": {"max_iter": 151, "learning_rate": 0.08}},
        {"params": {"max_iter": 150}},
        {"params": {"max_iter": 150, "learning_rate": 0.08, "max_leaf_nodes": 31}},
        {"params": {"max_iter": "150", "learning_rate": 0.08}},
    ],
)
def test_idempotency_key_changes_with_each_input(change: dict) -> None:
    assert idempotency_key(**{**BASE, **change}) != idempotency_key(**BASE)


def test_inputs_do_not_bleed_into_each_other() -> None:
    """The same text in another field is another key (the payload is structured, not concatenated)."""
    swapped = {**BASE, "commit": BASE["estimator"], "estimator": BASE["commit"]}
    assert idempotency_key(**swapped) != idempotency_key(**BASE)


def test_params_hash_ignores_order_and_sees_values() -> None:
    assert SHA256.fullmatch(params_hash({"a": 1, "b": 2}))
    assert params_hash({"a": 1, "b": 2}) == params_hash({"b": 2, "a": 1})
    assert params_hash({"a": 1, "b": 2}) != params_hash({"a": 1, "b": 3})


def test_env_overrides_code_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELOPS_CODE_COMMIT", "image-build-42")
    assert code_commit() == "image-build-42"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo, check=True, capture_output=True)


def test_an_empty_code_commit_env_falls_back_to_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "model.py").write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setattr(lineage, "PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("MODELOPS_CODE_COMMIT", "")  # as the Dockerfile sets it when built without CODE_COMMIT

    assert code_commit() == head


def test_dependency_hash_follows_the_lock_content_not_its_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    lock_a, lock_b = tmp_path / "a" / "requirements.txt", tmp_path / "b" / "requirements.txt"
    lock_a.write_text("mlflow==3.17.0\nnumpy==2.3.0\n")
    lock_b.write_text("mlflow==3.17.0\nnumpy==2.3.0\n")

    assert dependency_hash(lock_a) == dependency_hash(lock_b)  # same pins, same hash wherever the file is

    lock_b.write_text("mlflow==3.17.0\nnumpy==2.3.1\n")  # one pin bumped
    dependency_hash.cache_clear()  # cached per process: a new process sees the new lock
    assert dependency_hash(lock_b) != dependency_hash(lock_a)
    assert dependency_hash(lock_b) == "sha256:" + hashlib.sha256(b"mlflow==3.17.0\nnumpy==2.3.1\n").hexdigest()


def test_code_commit_defaults_to_git_head(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELOPS_CODE_COMMIT", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(re.escape(head) + r"(-dirty)?", code_commit())


def test_code_commit_marks_uncommitted_code_changes_dirty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELOPS_CODE_COMMIT", raising=False)
    monkeypatch.setattr(lineage, "PROJECT_ROOT", tmp_path)
    for name in ("include/model.py", "docs/notes.md"):
        (tmp_path / name).parent.mkdir()
        (tmp_path / name).write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    assert code_commit() == head

    (tmp_path / "docs" / "notes.md").write_text("v2\n")  # not code
    code_commit.cache_clear()
    assert code_commit() == head

    (tmp_path / "include" / "model.py").write_text("v2\n")
    code_commit.cache_clear()
    assert code_commit() == f"{head}-dirty"


def test_code_commit_outside_a_repository_is_unknown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELOPS_CODE_COMMIT", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setattr(lineage, "PROJECT_ROOT", tmp_path)
    assert code_commit() == "unknown"


def test_dependency_hash_is_the_sha256_of_the_lock_file(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.txt"
    lock.write_text("mlflow==3.17.0\n")
    assert dependency_hash(lock) == "sha256:" + hashlib.sha256(b"mlflow==3.17.0\n").hexdigest()
    assert dependency_hash(tmp_path / "missing.txt") == "unknown"


def test_default_dependency_hash_covers_the_project_lock() -> None:
    value = dependency_hash()
    assert SHA256.fullmatch(value)
    assert value == "sha256:" + hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()


# --- the key of a model's configuration -----------------------------------------------------------

FINGERPRINT = "sha256:" + "c" * 64


def _changed(**sections) -> object:
    """CFG with some sections' fields changed: ``dataset={"target": ...}``, ``model={"params": ...}``..."""
    return CFG.model_copy(update={name: getattr(CFG, name).model_copy(update=fields) for name, fields in sections.items()})


@pytest.mark.parametrize(
    "changed",
    [
        _changed(model={"params": {**CFG.model.params, "max_iter": 7}}),
        _changed(model={"estimator": "sklearn.ensemble.RandomForestClassifier"}),
        _changed(model={"holdout_fraction": 0.5}),
        _changed(dataset={"features": CFG.dataset.features[:-1]}),
        _changed(dataset={"target": CFG.dataset.target.model_copy(update={"name": "other"})}),
    ],
    ids=["params", "estimator", "holdout", "features", "target"],
)
def test_a_models_key_changes_with_what_changes_the_fitted_model(changed) -> None:
    key = lineage.model_idempotency_key(CFG, data_fingerprint=FINGERPRINT, commit="abc")
    assert lineage.model_idempotency_key(changed, data_fingerprint=FINGERPRINT, commit="abc") != key


def test_a_models_key_ignores_what_does_not_change_the_fitted_model() -> None:
    key = lineage.model_idempotency_key(CFG, data_fingerprint=FINGERPRINT, commit="abc")
    same_model = CFG.model_copy(update={
        "description": "another description",
        "gates": CFG.gates.model_copy(update={"minimum": 0.99}),
        "batch": None,
        "compliance": CFG.compliance.model_copy(update={"labels": {}}),
    })
    assert lineage.model_idempotency_key(same_model, data_fingerprint=FINGERPRINT, commit="abc") == key
    assert lineage.model_idempotency_key(CFG, data_fingerprint=FINGERPRINT, commit="abd") != key
    assert lineage.model_idempotency_key(CFG, data_fingerprint="sha256:" + "d" * 64, commit="abc") != key


# --- tag sets ----------------------------------------------------------------------------------


def test_a_training_run_records_its_commit_lock_and_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELOPS_CODE_COMMIT", "image-build-7")
    monkeypatch.setenv("MODELOPS_TRAINING_BACKEND", "kubernetes")

    assert lineage.training_run_tags() == {
        "code_commit": "image-build-7",
        "dependency_hash": "sha256:" + hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest(),
        "training_backend": "kubernetes",
    }
    monkeypatch.delenv("MODELOPS_TRAINING_BACKEND")
    assert lineage.training_run_tags()["training_backend"] == "local"


def _version_tags(**changes) -> dict[str, str]:
    args = {
        "dataset_uri": "/data/applications.parquet",
        "data_fingerprint": FINGERPRINT,
        "schema_hash": "sha256:" + "5" * 64,
        "key": "sha256:" + "e" * 64,
        "run_tags": {"code_commit": "abc", "dependency_hash": "sha256:" + "9" * 64, "training_backend": "kubernetes",
                     "mlflow.user": "someone"},
        "metrics": {"roc_auc": 0.8123456789, "accuracy": 0.7},
        "airflow_ids": {"dag_id": "train_credit_approval", "run_id": "manual__1"},
        **changes,
    }
    return lineage.version_tags(CFG, **args)


def test_a_version_carries_its_data_code_model_metric_labels_and_airflow_run() -> None:
    assert _version_tags() == {
        "dataset_uri": "/data/applications.parquet",
        "data_fingerprint": FINGERPRINT,
        "schema_hash": "sha256:" + "5" * 64,
        "idempotency_key": "sha256:" + "e" * 64,
        "code_commit": "abc",
        "dependency_hash": "sha256:" + "9" * 64,
        "training_backend": "kubernetes",
        "estimator": CFG.model.estimator,
        "params": json.dumps(CFG.model.params, sort_keys=True),
        "metric.roc_auc": "0.812346",
        "compliance.data_classification": "internal",
        "compliance.pii_reviewed": "true",
        "compliance.model_card": "docs/credit_approval.md",
        "airflow.dag_id": "train_credit_approval",
        "airflow.run_id": "manual__1",
    }


def test_a_version_from_a_run_without_lineage_tags_says_unknown() -> None:
    tags = _version_tags(run_tags={})
    assert (tags["code_commit"], tags["dependency_hash"]) == ("unknown", "unknown")
    assert tags["training_backend"] == CFG.training.backend
    assert "training_key" not in tags  # the legacy name is read, never written
    with pytest.raises(KeyError, match="roc_auc"):
        _version_tags(metrics={"accuracy": 0.7})


def test_a_version_is_found_by_its_key_under_the_current_or_the_legacy_tag(client, runs, name) -> None:
    def version(run: tuple[str, str], **tags: str) -> str:
        return str(client.create_model_version(name, source=run[1], run_id=run[0], tags=tags).version)

    client.create_registered_model(name)
    legacy = version(runs[0], training_key="k-old")  # registered before the key was renamed
    current = version(runs[1], idempotency_key="k-new")
    version(runs[2], idempotency_key="k-other")

    assert str(lineage.find_version_with_key(client, name, "k-old").version) == legacy
    assert str(lineage.find_version_with_key(client, name, "k-new").version) == current
    assert lineage.find_version_with_key(client, name, "k-missing") is None
    newer = version(runs[2], idempotency_key="k-old")  # retrained with force: the newest version wins
    assert str(lineage.find_version_with_key(client, name, "k-old").version) == newer


def test_calibration_is_part_of_a_models_key_only_when_it_can_apply() -> None:
    calibration = CFG.evidence.calibration.model_copy(update={"method": "sigmoid"})
    calibrated = CFG.model_copy(update={"evidence": CFG.evidence.model_copy(update={"calibration": calibration})})
    key = lineage.model_idempotency_key(calibrated, data_fingerprint=FINGERPRINT, commit="abc")
    stricter = CFG.model_copy(update={"evidence": CFG.evidence.model_copy(update={
        "calibration": calibration.model_copy(update={"max_ece": 0.01})})})
    off = CFG.model_copy(update={"evidence": CFG.evidence.model_copy(update={
        "calibration": calibration.model_copy(update={"method": "none"})})})
    without = CFG.model_copy(update={"evidence": None})

    assert lineage.model_idempotency_key(stricter, data_fingerprint=FINGERPRINT, commit="abc") != key
    assert lineage.model_idempotency_key(off, data_fingerprint=FINGERPRINT, commit="abc") == \
        lineage.model_idempotency_key(without, data_fingerprint=FINGERPRINT, commit="abc") != key
