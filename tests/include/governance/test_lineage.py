"""Tests for include.governance.lineage: code commit, dependency hash, params hash and the training key."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.governance import lineage
from include.governance.lineage import code_commit, dependency_hash, params_hash, training_key

ROOT = Path(__file__).resolve().parents[3]
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


def test_training_key_is_a_stable_sha256() -> None:
    key = training_key(**BASE)
    assert SHA256.fullmatch(key)
    assert training_key(**{**BASE, "params": dict(BASE["params"])}) == key


def test_training_key_ignores_param_order() -> None:
    reordered = dict(reversed(list(BASE["params"].items())))
    assert list(reordered) != list(BASE["params"])
    assert training_key(**{**BASE, "params": reordered}) == training_key(**BASE)


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
def test_training_key_changes_with_each_input(change: dict) -> None:
    assert training_key(**{**BASE, **change}) != training_key(**BASE)


def test_inputs_do_not_bleed_into_each_other() -> None:
    """The same text in another field is another key (the payload is structured, not concatenated)."""
    swapped = {**BASE, "commit": BASE["estimator"], "estimator": BASE["commit"]}
    assert training_key(**swapped) != training_key(**BASE)


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
