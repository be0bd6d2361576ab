"""Tampering with the ledger's table through SQL, as an attacker with database access would, is named by verify."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.governance import integrity
from include.governance.integrity import Anchor, Genesis
from include.governance.ledger import Ledger, chain_hash, entry_from_row


class MemoryAnchors:
    """An anchor store outside the ledger's database (the product's is an MLflow run: see test_anchor_store)."""

    def __init__(self) -> None:
        self._anchors: list[Anchor] = []
        self._genesis: Genesis | None = None

    def anchors(self) -> list[Anchor]:
        return list(self._anchors)

    def add_anchor(self, anchor: Anchor) -> None:
        self._anchors.append(anchor)

    def genesis(self) -> Genesis | None:
        return self._genesis

    def set_genesis(self, genesis: Genesis) -> None:
        self._genesis = genesis


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    for i in range(1, 9):
        ledger.append(action="promote" if i % 2 else "deploy", model="credit", actor="scheduler", version=str(i),
                      reason=f"event {i}", details={"n": i}, run_id=f"run{i}", dag_id="promote_credit")
    return ledger


def _sql(ledger: Ledger, *statements: str) -> None:
    with sqlite3.connect(ledger.url.removeprefix("sqlite:///")) as conn:
        for statement in statements:
            conn.execute(statement)


def test_an_untouched_ledger_verifies(ledger: Ledger) -> None:
    report = integrity.verify(ledger, MemoryAnchors())

    assert report.ok and report.checked == 8 and report.head_seq == 8
    assert "intact" in report.summary()


def test_an_edited_record_is_named(ledger: Ledger) -> None:
    _sql(ledger, "UPDATE modelops_ledger SET reason = 'nothing to see' WHERE seq = 4")

    report = integrity.verify(ledger)

    assert not report.ok and (report.first.kind, report.first.seq) == ("edited", 4)
    assert "#4" in report.summary()


def test_an_edited_detail_is_named_even_with_equivalent_json(ledger: Ledger) -> None:
    _sql(ledger, """UPDATE modelops_ledger SET details = '{"n":40}' WHERE seq = 3""")

    assert (integrity.verify(ledger).first.kind, integrity.verify(ledger).first.seq) == ("edited", 3)


def test_an_edit_with_its_hash_recomputed_is_named_by_the_next_link(ledger: Ledger) -> None:
    row = next(r for r in ledger.rows() if r["seq"] == 5)
    forged = {**row, "reason": "forged"}
    digest = chain_hash(row["prev_hash"], entry_from_row(forged).content())
    _sql(ledger, f"UPDATE modelops_ledger SET reason = 'forged', hash = '{digest}' WHERE seq = 5")

    report = integrity.verify(ledger)

    assert (report.first.kind, report.first.seq) == ("edited", 5)


def test_a_deleted_record_is_named(ledger: Ledger) -> None:
    _sql(ledger, "DELETE FROM modelops_ledger WHERE seq = 6")

    report = integrity.verify(ledger)

    assert (report.first.kind, report.first.seq) == ("deleted", 7)
    assert "#6" in report.first.detail


def test_a_deleted_first_record_is_named(ledger: Ledger) -> None:
    _sql(ledger, "DELETE FROM modelops_ledger WHERE seq = 1")

    assert (integrity.verify(ledger).first.kind, integrity.verify(ledger).first.seq) == ("deleted", 2)


def test_an_inserted_record_is_named(ledger: Ledger) -> None:
    # the attacker shifts the records after 4 up and writes a well-formed record linked to #4 in the gap
    rows = ledger.rows()
    _sql(ledger, *[f"UPDATE modelops_ledger SET seq = {r['seq'] + 100} WHERE seq = {r['seq']}"
                   for r in reversed(rows) if r["seq"] > 4])
    _sql(ledger, *[f"UPDATE modelops_ledger SET seq = {r['seq'] + 1} WHERE seq = {r['seq'] + 100}"
                   for r in rows if r["seq"] > 4])
    four = rows[3]
    content = {**entry_from_row(four).content(), "reason": "inserted", "idempotency_key": None}
    digest = chain_hash(four["hash"], content)
    _sql(ledger, "INSERT INTO modelops_ledger (seq, at, actor, model, version, versions, action, reason, details, "
                 f"dag_id, run_id, idempotency_key, prev_hash, hash) VALUES (5, '{four['at']}', 'mallory', 'credit', "
                 f"'4', '[\"4\"]', 'deploy', 'inserted', '{{\"n\":4}}', 'promote_credit', 'run4', NULL, "
                 f"'{four['hash']}x', '{digest}')")
    # prev_hash is unique: a second record cannot link to #4 as stored, so the attacker's link is off by one
    # character there, or (the next test) the attacker rewrites #4's successor's link instead.
    report = integrity.verify(ledger)

    assert report.first.seq == 5 and report.first.kind in {"edited", "inserted"}


def test_an_inserted_record_with_a_consistent_link_is_named_as_inserted(ledger: Ledger) -> None:
    rows = ledger.rows()
    # move record #5 out of the way so the inserted one can take over its link to #4
    _sql(ledger, *[f"UPDATE modelops_ledger SET seq = {r['seq'] + 100} WHERE seq = {r['seq']}"
                   for r in reversed(rows) if r["seq"] > 4])
    _sql(ledger, *[f"UPDATE modelops_ledger SET seq = {r['seq'] + 1} WHERE seq = {r['seq'] + 100}"
                   for r in rows if r["seq"] > 4])
    four, five = rows[3], rows[4]
    _sql(ledger, "UPDATE modelops_ledger SET prev_hash = 'moved' WHERE seq = 6")  # #5 (now 6) keeps its hash
    content = {**entry_from_row(four).content(), "reason": "inserted", "idempotency_key": None}
    digest = chain_hash(four["hash"], content)
    _sql(ledger, "INSERT INTO modelops_ledger (seq, at, actor, model, version, versions, action, reason, details, "
                 f"dag_id, run_id, idempotency_key, prev_hash, hash) VALUES (5, '{four['at']}', 'mallory', 'credit', "
                 f"'4', '[\"4\"]', 'deploy', 'inserted', '{{\"n\":4}}', 'promote_credit', 'run4', NULL, "
                 f"'{four['hash']}', '{digest}')")
    # a unique prev_hash forces the attacker to break the old #5's link: it is named first
    report = integrity.verify(ledger)

    assert not report.ok
    assert report.first.seq == 5  # the inserted record, named as the one the chain no longer vouches for
    assert five["hash"] in {r["hash"] for r in ledger.rows()}


def test_reordered_records_are_named(ledger: Ledger) -> None:
    _sql(ledger, "UPDATE modelops_ledger SET seq = 100 WHERE seq = 3",
         "UPDATE modelops_ledger SET seq = 3 WHERE seq = 4",
         "UPDATE modelops_ledger SET seq = 4 WHERE seq = 100")

    report = integrity.verify(ledger)

    assert (report.first.kind, report.first.seq) == ("reordered", 3)


def test_a_truncated_tail_is_found_by_its_anchor(ledger: Ledger) -> None:
    anchors = MemoryAnchors()
    integrity.anchor(anchors, ledger)
    _sql(ledger, "DELETE FROM modelops_ledger WHERE seq >= 7")

    assert integrity.verify(ledger).ok  # the chain alone cannot see a shorter tail
    report = integrity.verify(ledger, anchors)

    assert (report.first.kind, report.first.seq) == ("truncated", 8)


def test_a_fully_recomputed_chain_is_found_by_its_anchor(ledger: Ledger) -> None:
    anchors = MemoryAnchors()
    integrity.anchor(anchors, ledger)
    rows = ledger.rows()
    prev = rows[1]["hash"]
    statements = ["UPDATE modelops_ledger SET reason = 'rewritten' WHERE seq = 3"]
    for row in rows[2:]:
        content = {**entry_from_row(row).content(), **({"reason": "rewritten"} if row["seq"] == 3 else {})}
        digest = chain_hash(prev, content)
        statements.append(f"UPDATE modelops_ledger SET prev_hash = 'tmp{row['seq']}', hash = 'h{row['seq']}' "
                          f"WHERE seq = {row['seq']}")
        statements.append(f"UPDATE modelops_ledger SET prev_hash = '{prev}', hash = '{digest}' WHERE seq = {row['seq']}")
        prev = digest
    _sql(ledger, *statements)

    assert integrity.verify(ledger).ok
    report = integrity.verify(ledger, anchors)

    assert (report.first.kind, report.first.seq) == ("anchor_mismatch", 8)


def test_pruning_keeps_the_chain_verifiable_and_refuses_a_short_retention(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'old.db'}")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    for days in (500, 450, 100, 10):
        ledger.append(action="deploy", model="credit", actor="scheduler", version=str(days),
                      at=now - timedelta(days=days))
    anchors = MemoryAnchors()

    with pytest.raises(ValueError, match="183"):
        integrity.prune(anchors, retention_days=30, now=now, ledger=ledger)
    assert integrity.prune(anchors, retention_days=400, now=now, ledger=ledger) == 2

    assert [r["version"] for r in ledger.rows()] == ["100", "10"]
    assert not integrity.verify(ledger).ok  # without the retention anchor the start looks cut
    assert integrity.verify(ledger, anchors).ok
    _sql(ledger, "DELETE FROM modelops_ledger WHERE seq = 3")  # a deletion past the cut is still found
    assert integrity.verify(ledger, anchors).first.kind == "deleted"


def test_anchor_store_keeps_anchors_on_an_mlflow_run(tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(client.tracking_uri)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.append(action="deploy", model="credit", actor="scheduler", version="1")
    store = integrity.MlflowAnchorStore(client, ledger)

    made = integrity.anchor(store, ledger)
    again = integrity.MlflowAnchorStore(client, ledger)

    assert again.anchors() == [made] and again.run_id == store.run_id
    tags = client.get_run(store.run_id).data.tags
    assert tags["modelops.kind"] == "ledger_anchors" and f"ledger.anchor.{1:012d}" in tags
