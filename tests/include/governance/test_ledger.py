"""The ledger's chain, its idempotency key, and concurrent writers in real processes on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from include.governance import integrity
from include.governance.ledger import GENESIS, Ledger, chain_hash, entry_from_row

ROOT = Path(__file__).resolve().parents[3]
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"

WRITER = """
import sys
from include.governance.ledger import Ledger
ledger = Ledger(sys.argv[1])
for i in range(int(sys.argv[3])):
    ledger.append(action="deploy", model="credit", actor=sys.argv[2], version=str(i), run_id=f"{sys.argv[2]}-{i}",
                  dag_id="deploy_credit", reason="concurrent")
    # the same record again, as a retried task would write it: stored once
    ledger.append(action="deploy", model="credit", actor=sys.argv[2], version=str(i), run_id=f"{sys.argv[2]}-{i}",
                  dag_id="deploy_credit", reason="concurrent")
"""


def test_records_chain_from_genesis_and_round_trip(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")

    first = ledger.append(action="register", model="credit", actor="airflow", version="1", details={"b": 2, "a": [1]})
    second = ledger.append(action="rollback", model="credit", actor="oncall", version="1", versions=["2"],
                           reason="kpi drop", details={"from_version": "2"})

    assert (first.seq, first.prev_hash) == (1, GENESIS) and second.prev_hash == first.hash
    assert first.hash == chain_hash(GENESIS, first.content())
    assert [entry_from_row(r) for r in ledger.rows()] == [first, second]
    assert second.versions == ("1", "2")
    assert [e.seq for e in ledger.records(model="credit", version="2")] == [2]
    assert ledger.records(model="other") == [] and ledger.models() == ["credit"]


def test_the_same_run_and_action_is_written_once(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")

    once = ledger.append(action="promote", model="credit", actor="a", version="3", dag_id="promote", run_id="r1")
    again = ledger.append(action="promote", model="credit", actor="a", version="3", dag_id="promote", run_id="r1",
                          reason="a retry")
    other_run = ledger.append(action="promote", model="credit", actor="a", version="3", dag_id="promote", run_id="r2")
    no_run = [ledger.append(action="alert.warning", model="credit", actor="a", version="3") for _ in range(2)]

    assert again == once and other_run.seq == 2
    assert [e.seq for e in no_run] == [3, 4]  # records no run wrote have no key: each is kept


def _writers(url: str, count: int, per_writer: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, f"w{n}", str(per_writer)], env=env,
                              stderr=subprocess.PIPE, text=True) for n in range(count)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err


def _assert_one_chain(ledger: Ledger, expected: int) -> None:
    rows = ledger.rows()
    assert len(rows) == expected
    assert [r["seq"] for r in rows] == list(range(1, expected + 1))
    assert len({r["prev_hash"] for r in rows}) == expected  # nothing forked
    assert integrity.verify(ledger).ok


def test_concurrent_processes_on_sqlite_never_fork_the_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    Ledger(url)  # the table exists before the race

    _writers(url, count=4, per_writer=15)

    _assert_one_chain(Ledger(url), 60)


@pytest.fixture
def pg_url() -> str:
    name = f"modelops_ledger_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is needed for this test: {exc}")
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_concurrent_processes_on_postgresql_never_fork_the_chain(pg_url: str) -> None:
    Ledger(pg_url)

    _writers(pg_url, count=4, per_writer=15)

    _assert_one_chain(Ledger(pg_url), 60)


def test_a_time_outside_the_calendar_once_in_utc_is_a_value_error_naming_it() -> None:
    from include.governance.ledger import as_time

    assert as_time("2026-03-01T10:00:00+01:00") == "2026-03-01T09:00:00.000000Z"
    with pytest.raises(ValueError, match="out of range"):
        as_time("0001-01-01T00:00:08+01:00")
