"""What a model version was built from: code commit, dependency lock, parameters, training key."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from include import settings
from include.settings import PROJECT_ROOT


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=1)
def code_commit() -> str:
    """``MODELOPS_CODE_COMMIT`` (set in the image at build time), else ``git rev-parse HEAD``.

    A working tree with uncommitted changes gets a ``-dirty`` suffix, so a skipped retrain never
    hides an unreviewed code change behind a clean commit id.
    """
    if commit := settings.CODE_COMMIT.get():
        return commit
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "include", "dags", "plugins", "config"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


@lru_cache(maxsize=1)
def dependency_hash(lock_file: Path = PROJECT_ROOT / "requirements.txt") -> str:
    """Hash of the pinned dependency lock the code runs with."""
    return _sha256(lock_file.read_bytes()) if lock_file.is_file() else "unknown"


def params_hash(params: Mapping[str, object]) -> str:
    return _sha256(json.dumps(params, sort_keys=True, default=str).encode())


def training_key(*, data_fingerprint: str, commit: str, estimator: str, params: Mapping[str, object]) -> str:
    """Identity of a training run's inputs: same key, same model; used to skip redundant retrains."""
    payload = {"data": data_fingerprint, "code": commit, "estimator": estimator, "params": dict(params)}
    return _sha256(json.dumps(payload, sort_keys=True, default=str).encode())
