"""``python -m include.governance``: run as a user would, in a process of its own, against a real ledger and MLflow."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from include.governance.ledger import Ledger

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "MODELOPS_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "include.governance", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _seed(env: dict[str, str]) -> Ledger:
    ledger = Ledger(env["MODELOPS_LEDGER_URL"])
    for at, version, previous in (("2026-03-01T09:00:00Z", "1", None), ("2026-03-20T12:00:00Z", "2", "1")):
        ledger.append(action="promote", model="credit", actor="airflow", version=version, reason="gates passed",
                      at=at)
        ledger.append(action="alias_set", model="credit", actor="airflow", version=version, at=at,
                      reason="gates passed", details={"alias": "champion", "previous": previous})
    return ledger


def test_which_version_was_champion_at_a_time(env) -> None:
    _seed(env)

    march = _cli(env, "aliases", "credit", "--alias", "champion", "--at", "2026-03-15T00:00:00")
    before = _cli(env, "aliases", "credit", "--alias", "champion", "--at", "2026-02-01")
    timeline = _cli(env, "aliases", "credit", "--json")

    assert march.returncode == 0 and march.stdout.strip().endswith(": 1")
    assert before.returncode == 1 and "no version" in before.stdout
    terms = json.loads(timeline.stdout)
    assert [(t["version"], t["start"], t["end"]) for t in terms] == [
        ("1", "2026-03-01T09:00:00.000000Z", "2026-03-20T12:00:00.000000Z"), ("2", "2026-03-20T12:00:00.000000Z", None)]


def test_history_export_and_verify(env, tmp_path) -> None:
    ledger = _seed(env)

    history = _cli(env, "history", "credit")
    out = tmp_path / "ledger.jsonl"
    export = _cli(env, "export", "--out", str(out))
    verified = _cli(env, "verify", "--anchor")

    assert [line.split()[2] for line in history.stdout.splitlines()] == ["promote", "promote"]
    assert export.returncode == 0 and [json.loads(x)["seq"] for x in out.read_text().splitlines()] == [1, 2, 3, 4]
    assert verified.returncode == 0 and "intact" in verified.stdout and "anchored #4" in verified.stdout

    with sqlite3.connect(ledger.url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE modelops_ledger SET actor = 'someone else' WHERE seq = 3")
    tampered = _cli(env, "verify")

    assert tampered.returncode == 1
    assert "edited at record #3" in tampered.stdout and "promote credit v2" in tampered.stdout


def test_a_truncated_tail_is_found_against_the_anchor_in_mlflow(env) -> None:
    ledger = _seed(env)
    assert _cli(env, "verify", "--anchor").returncode == 0

    with sqlite3.connect(ledger.url.removeprefix("sqlite:///")) as conn:
        conn.execute("DELETE FROM modelops_ledger WHERE seq = 4")
    tampered = _cli(env, "verify", "--json")

    assert tampered.returncode == 1
    assert json.loads(tampered.stdout)["problems"][0]["kind"] == "truncated"


def test_bad_input_is_named(env) -> None:
    _seed(env)

    bad_time = _cli(env, "aliases", "credit", "--alias", "champion", "--at", "last tuesday")
    unknown = _cli(env, "lineage", "credit", "9")

    assert bad_time.returncode == 2 and "last tuesday" in bad_time.stderr
    assert unknown.returncode == 2 and "error:" in unknown.stderr
