"""Alias history, model history, lineage and exports, from alias moves made by the registry's own functions."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

from mlflow.tracking import MlflowClient

from include.governance import audit, history
from include.governance.ledger import chain_hash, default_ledger
from include.promotion import registry
from include.promotion.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION

ACTOR = "tester"


def _register(client: MlflowClient, name: str, run: tuple[str, str], run_id: str, **tags: str) -> str:
    version = registry.register_challenger(client, name=name, description="", model_uri=run[1], run_id=run[0],
                                           tags={"data_fingerprint": "sha256:abc", **tags}, actor=ACTOR,
                                           dag_id="train", airflow_run_id=run_id)
    return str(version.version)


def _promote(client: MlflowClient, name: str, version: str, run_id: str) -> None:
    registry.promote(client, name, version, actor=ACTOR, reason=f"gates passed ({run_id})", dag_id="promote",
                     run_id=run_id)


def _at(record: dict) -> datetime:
    return datetime.fromisoformat(record["at"].replace("Z", "+00:00"))


def test_which_version_was_champion_at_any_time(client, runs, name) -> None:
    before = datetime.now(UTC)
    v1 = _register(client, name, runs[0], "t1")
    _promote(client, name, v1, "p1")
    v2 = _register(client, name, runs[1], "t2")
    _promote(client, name, v2, "p2")
    _promote(client, name, v2, "p2")  # a retried task moves nothing and records nothing

    terms = history.alias_timeline(name, CHAMPION)

    assert [(t.version, t.end is None) for t in terms] == [(v1, False), (v2, True)]
    assert terms[0].end == terms[1].start and "p2" in terms[1].reason and terms[1].run_id == "p2"
    assert history.version_at(name, CHAMPION, before) is None
    assert history.version_at(name, CHAMPION, terms[0].start) == v1
    middle = datetime.fromisoformat(terms[0].start.replace("Z", "+00:00")) + (
        datetime.fromisoformat(terms[0].end.replace("Z", "+00:00"))
        - datetime.fromisoformat(terms[0].start.replace("Z", "+00:00"))) / 2
    assert history.version_at(name, CHAMPION, middle) == v1
    assert history.version_at(name, CHAMPION, terms[1].start) == v2
    assert history.version_at(name, CHAMPION, datetime.now(UTC) + timedelta(days=1)) == v2
    assert history.current_aliases(name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    assert [(t.alias, t.version) for t in history.alias_timeline(name, CHALLENGER)] == [(CHALLENGER, v1),
                                                                                        (CHALLENGER, v2)]
    assert all(t.end is not None for t in history.alias_timeline(name, CHALLENGER))  # promotion removed it


def test_a_rollback_shows_in_the_timeline_with_its_reason(client, runs, name) -> None:
    from include.promotion.rollout import rollback

    v1 = _register(client, name, runs[0], "t1")
    client.set_model_version_tag(name, v1, "gates.result", "passed")
    _promote(client, name, v1, "p1")
    v2 = _register(client, name, runs[1], "t2")
    client.set_model_version_tag(name, v2, "gates.result", "passed")
    _promote(client, name, v2, "p2")

    rollback(client, name, target=None, actor="oncall", reason="approval rate fell", dag_id="rollback", run_id="r1")

    champion = history.alias_timeline(name, CHAMPION)
    assert [t.version for t in champion] == [v1, v2, v1]
    assert (champion[-1].actor, champion[-1].reason) == ("oncall", "approval rate fell")
    assert history.current_aliases(name)["rolled_back"] == v2
    assert PREVIOUS_CHAMPION not in history.current_aliases(name)  # no version before v1 to step back to
    actions = [e.action for e in history.model_history(name)]
    assert actions == ["register", "promote", "register", "promote", "rollback"]


def test_lineage_and_evidence_pack_of_a_version(client, runs, name) -> None:
    v1 = _register(client, name, runs[0], "t1", dataset_uri="file:///data/train.parquet")
    audit.write(None, audit.AuditRecord("validated", name, None, "train", "passed",
                                        details={"data_fingerprint": "sha256:abc", "dataset_uri": "file:///x"}))
    audit.write(None, audit.AuditRecord("validated", name, None, "train", "passed",
                                        details={"data_fingerprint": "sha256:other"}))
    audit.write(client, audit.AuditRecord("approve", name, v1, "alice", "looks right", run_id="p1", dag_id="promote"))
    _promote(client, name, v1, "p1")

    lineage = history.version_lineage(client, name, v1)
    pack = zipfile.ZipFile(io.BytesIO(history.evidence_pack(client, name, v1)))

    assert lineage["data"]["data_fingerprint"] == "sha256:abc"
    assert [r["details"]["dataset_uri"] for r in lineage["validation"]] == ["file:///x"]
    assert [(r["action"], r["actor"]) for r in lineage["approvals"]] == [("approve", "alice")]
    assert {t["alias"] for t in lineage["alias_terms"]} == {CHALLENGER, CHAMPION}
    assert lineage["training_run"]["id"] == runs[0][0]
    assert {"lineage.json", "validation.json", "gates.json", "approvals.json", "alias_timeline.json",
            "records.jsonl", "data_fingerprint.txt", "index.json"} <= set(pack.namelist())
    assert pack.read("data_fingerprint.txt") == b"sha256:abc\n"
    lines = [json.loads(line) for line in pack.read("records.jsonl").decode().splitlines()]
    assert [r["seq"] for r in lines] == [e.seq for e in default_ledger().records(model=name, version=v1)]


def test_jsonl_export_is_every_record_with_its_chain_fields(client, runs, name) -> None:
    _register(client, name, runs[0], "t1")
    out = io.StringIO()

    count = history.export_jsonl(out, model=name)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == len(lines) == len(default_ledger().records(model=name)) >= 2
    assert all({"seq", "at", "actor", "action", "prev_hash", "hash"} <= set(line) for line in lines)
    for line in lines:  # each exported line carries what a log stack needs to recheck its hash
        content = {k: line[k] for k in ("at", "actor", "model", "version", "versions", "action", "reason",
                                        "details", "dag_id", "run_id", "idempotency_key")}
        assert chain_hash(line["prev_hash"], content) == line["hash"]
