"""Tests for include.promotion.registry and include.governance.audit against a real SQLite MLflow store."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from include.governance import audit
from include.governance.gates import GateReport, GateResult
from include.governance.history import ALIAS_ACTIONS
from include.promotion import registry
from include.promotion.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION

ACTOR = "tester"


def _register(client: MlflowClient, name: str, run: tuple[str, str], **tags: str) -> str:
    run_id, model_uri = run
    version = registry.register_challenger(
        client, name=name, description="a test model", model_uri=model_uri, run_id=run_id, tags=tags,
        actor=ACTOR, dag_id="train_dag", airflow_run_id="manual__1",
    )
    return str(version.version)


def _promote(client: MlflowClient, name: str, version: str, **kwargs) -> str | None:
    return registry.promote(client, name, version, actor=ACTOR, reason="gates passed", **kwargs)


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}


def _decisions(client: MlflowClient, name: str, version: str) -> list[dict]:
    """The version's audit records without the alias moves (test_alias_history covers those)."""
    return [r for r in audit.read(client, name, version) if r["action"] not in ALIAS_ACTIONS]


def _actions(client: MlflowClient, name: str, version: str) -> list[str]:
    return [r["action"] for r in _decisions(client, name, version)]


def test_register_creates_a_version_with_tags_alias_and_audit(client, runs, name) -> None:
    run_id, model_uri = runs[0]

    version = registry.register_challenger(
        client, name=name, description="a test model", model_uri=model_uri, run_id=run_id,
        tags={"training_key": "k1"}, actor=ACTOR, dag_id="train_dag", airflow_run_id="manual__1",
    )

    assert str(version.version) == "1"
    assert version.run_id == run_id
    assert version.tags["training_key"] == "k1"
    assert version.aliases == [CHALLENGER]
    assert client.get_registered_model(name).description == "a test model"
    (record,) = _decisions(client, name, "1")
    assert record["action"] == "register"
    assert (record["model"], record["version"], record["actor"]) == (name, "1", ACTOR)
    assert (record["dag_id"], record["run_id"]) == ("train_dag", "manual__1")
    assert run_id in record["reason"]
    assert record["details"] == {"alias": CHALLENGER, "model_uri": model_uri}


def test_register_is_idempotent_per_run(client, runs, name) -> None:
    first = _register(client, name, runs[0], training_key="k1")
    again = _register(client, name, runs[0], training_key="k1", extra="retry")

    assert again == first
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    assert client.get_model_version(name, first).tags["extra"] == "retry"
    assert str(registry.alias_version(client, name, CHALLENGER).version) == first
    assert _actions(client, name, first) == ["register"]  # the ledger keeps one record per run and action


def test_register_moves_challenger_to_the_new_version(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    v2 = _register(client, name, runs[1])

    assert (v1, v2) == ("1", "2")
    assert _aliases(client, name) == {CHALLENGER: "2"}
    assert str(registry.version_for_run(client, name, runs[1][0]).version) == "2"
    assert registry.version_for_run(client, name, runs[2][0]) is None


def test_first_promotion_makes_a_champion_and_clears_the_challenger(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])

    previous = _promote(client, name, v1, dag_id="promote_dag", run_id="manual__2", details={"gates": "ok"})

    assert previous is None
    assert _aliases(client, name) == {CHAMPION: v1}
    record = audit.read(client, name, v1)[-1]
    assert record["action"] == "promote"
    assert (record["actor"], record["reason"]) == (ACTOR, "gates passed")
    assert (record["dag_id"], record["run_id"]) == ("promote_dag", "manual__2")
    assert record["details"] == {"previous_champion": None, "changed": True, "gates": "ok"}


def test_promotion_keeps_the_replaced_champion_as_previous(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    _promote(client, name, v1)
    v2 = _register(client, name, runs[1])

    previous = _promote(client, name, v2)

    assert previous == v1
    assert _aliases(client, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    assert audit.read(client, name, v2)[-1]["details"]["previous_champion"] == v1
    assert _actions(client, name, v1) == ["register", "promote"]  # the demoted version gets no record


def test_promotion_leaves_a_challenger_on_another_version(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    v2 = _register(client, name, runs[1])

    _promote(client, name, v1)

    assert _aliases(client, name) == {CHAMPION: v1, CHALLENGER: v2}


def test_promoting_the_previous_champion_rolls_back(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    _promote(client, name, v1)
    v2 = _register(client, name, runs[1])
    _promote(client, name, v2)

    assert _promote(client, name, v1) == v2
    assert _aliases(client, name) == {CHAMPION: v1, PREVIOUS_CHAMPION: v2}


def test_repromoting_the_champion_changes_nothing(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    _promote(client, name, v1)
    v2 = _register(client, name, runs[1])
    _promote(client, name, v2)
    before = {v: audit.read(client, name, v) for v in (v1, v2)}

    _promote(client, name, v2)

    assert _aliases(client, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    after = {v: audit.read(client, name, v) for v in (v1, v2)}
    assert after[v1] == before[v1]
    # the new run is on record, saying that nothing changed
    assert after[v2][:-1] == before[v2]
    assert after[v2][-1]["action"] == "promote" and after[v2][-1]["details"]["changed"] is False


def test_repromoting_reports_the_actual_previous_champion(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    _promote(client, name, v1)
    v2 = _register(client, name, runs[1])
    _promote(client, name, v2)

    # v2 already is the champion: nothing moves, and the answer is the version still kept as
    # previous_champion (v1) - not None, and not v2 itself.
    assert _promote(client, name, v2) == v1
    assert _aliases(client, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    record = audit.read(client, name, v2)[-1]
    assert (record["action"], record["details"]["previous_champion"]) == ("promote", v1)


def test_repromoting_the_only_champion_reports_no_previous_champion(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    _promote(client, name, v1)

    assert _promote(client, name, v1) is None
    assert _aliases(client, name) == {CHAMPION: v1}


def test_retry_after_an_interrupted_promotion_completes_it(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    _promote(client, name, v1)
    v2 = _register(client, name, runs[1])
    # State left by a promotion of v2 that died right after moving the champion alias.
    client.set_registered_model_alias(name, PREVIOUS_CHAMPION, v1)
    client.set_registered_model_alias(name, CHAMPION, v2)

    _promote(client, name, v2)

    assert _aliases(client, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    assert _actions(client, name, v2) == ["register", "promote"]


def test_alias_version_is_none_for_a_missing_alias_or_model(client, runs, name) -> None:
    assert registry.alias_version(client, name, CHAMPION) is None  # no such model
    v1 = _register(client, name, runs[0])
    assert registry.alias_version(client, name, CHAMPION) is None  # model without that alias
    assert str(registry.alias_version(client, name, CHALLENGER).version) == v1


def test_find_version_by_tag(client, runs, name) -> None:
    v1 = _register(client, name, runs[0], training_key="aaa")
    v2 = _register(client, name, runs[1], training_key="bbb")
    v3 = _register(client, name, runs[2], training_key="aaa")

    assert str(registry.find_version_by_tag(client, name, "training_key", "bbb").version) == v2
    assert str(registry.find_version_by_tag(client, name, "training_key", "aaa").version) == v3  # the newest
    assert registry.find_version_by_tag(client, name, "training_key", "ccc") is None
    assert registry.find_version_by_tag(client, name, "other_tag", "aaa") is None
    assert registry.find_version_by_tag(client, f"{name}_missing", "training_key", "aaa") is None
    assert v1 == "1"


def test_run_metrics(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    client.log_metric(runs[0][0], "roc_auc", 0.81)

    assert registry.run_metrics(client, client.get_model_version(name, v1))["roc_auc"] == pytest.approx(0.81)
    assert registry.run_metrics(client, None) is None


def _report(*passed: bool) -> GateReport:
    gates = ("min_metric", "no_regression", "compliance")
    return GateReport(tuple(GateResult(g, ok, 0.8, 0.7, f"{g} detail") for g, ok in zip(gates, passed, strict=True)))


def test_record_gates_writes_one_tag_per_gate_and_the_detail(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    failing = _report(True, True, False)

    registry.record_gates(client, name, v1, failing)

    tags = client.get_model_version(name, v1).tags
    assert tags["gate.min_metric"] == tags["gate.no_regression"] == "passed"
    assert tags["gate.compliance"] == "failed"
    assert tags["gates.result"] == "failed"
    assert json.loads(tags["gates.detail"]) == failing.as_dicts()

    registry.record_gates(client, name, v1, _report(True, True, True))  # a re-check overwrites

    tags = client.get_model_version(name, v1).tags
    assert tags["gate.compliance"] == tags["gates.result"] == "passed"


def test_audit_records_are_read_in_chain_order_and_only_from_the_version(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    earlier = audit.AuditRecord("quarantine", name, v1, ACTOR, "bad batch")
    later = audit.AuditRecord("reject", name, v1, ACTOR, "gates failed")
    model_level = audit.AuditRecord("rollback", name, None, ACTOR, "no version")

    for record in (earlier, later, model_level):
        audit.write(client, record)

    records = _decisions(client, name, v1)
    assert [r["action"] for r in records] == ["register", "quarantine", "reject"]
    assert {k: records[-1][k] for k in json.loads(later.to_json())} == json.loads(later.to_json())
    assert records[-1]["versions"] == [v1] and records[-1]["prev_hash"] == records[-2]["hash"]
    model_tags = client.get_registered_model(name).tags
    assert [json.loads(v)["action"] for k, v in model_tags.items() if k.startswith(audit.AUDIT_PREFIX)] == ["rollback"]


def test_oversized_audit_details_are_kept_whole_in_the_ledger_and_cut_in_the_tag(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    record = audit.AuditRecord("reject", name, v1, ACTOR, "too much", details={"blob": "x" * 10_000})

    audit.write(client, record)

    stored = audit.read(client, name, v1)[-1]
    assert stored["details"] == {"blob": "x" * 10_000}
    tag = json.loads(client.get_model_version(name, v1).tags[f"{audit.AUDIT_PREFIX}{stored['at']}.reject"])
    assert tag["details"] == {"truncated": True}
    assert (tag["action"], tag["reason"]) == ("reject", "too much")


def test_oversized_audit_tags_keep_the_short_details_queries_rely_on(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    record = audit.AuditRecord("rollback", name, v1, ACTOR, "r" * 6000,
                               details={"from_version": "2", "to_version": v1, "forced": True, "blob": ["x"] * 3000})

    audit.write(client, record)

    stored = audit.read(client, name, v1)[-1]
    assert stored["reason"] == "r" * 6000 and len(stored["details"]["blob"]) == 3000
    tag = json.loads(client.get_model_version(name, v1).tags[f"{audit.AUDIT_PREFIX}{stored['at']}.rollback"])
    assert tag["details"] == {"from_version": "2", "to_version": v1, "forced": True, "truncated": True}
    assert tag["reason"] == "r" * audit.MAX_TRIMMED_REASON
    assert len(record.to_json()) <= audit.MAX_TAG_VALUE


def test_read_model_returns_one_record_per_event_in_chain_order(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    v2 = _register(client, name, runs[1])
    shared = audit.AuditRecord("rollback", name, v2, ACTOR, "both")
    audit.write_on(client, shared, [v2, v1, v2])

    records = [r for r in audit.read_model(client, name) if r["action"] not in ALIAS_ACTIONS]

    assert [(r["action"], r["version"]) for r in records] == [("register", v1), ("register", v2), ("rollback", v2)]
    assert records[-1]["versions"] == [v2, v1] and records[-1]["at"] == shared.at
    assert _actions(client, name, v1) == ["register", "rollback"]
    tag = f"{audit.AUDIT_PREFIX}{shared.at}.rollback"
    assert tag in client.get_model_version(name, v1).tags and tag in client.get_model_version(name, v2).tags
    assert audit.read_model(client, f"{name}_missing") == []


def test_champion_history_comes_from_promotion_and_rollback_records(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    _promote(client, name, v1, run_id="p1")
    v2 = _register(client, name, runs[1])
    _promote(client, name, v2, run_id="p2")
    _promote(client, name, v2, run_id="p3")  # a re-check of the live version: nothing moved
    rollback = audit.AuditRecord("rollback", name, v1, "oncall", "kpi drop", run_id="rb1",
                                 details={"from_version": v2, "to_version": v1, "forced": False})
    audit.write_on(client, rollback, [v1, v2])
    audit.write(client, audit.AuditRecord("reject", name, v2, ACTOR, "gates failed"))

    history = registry.champion_history(client, name)

    assert [(c.action, c.version, c.replaced, c.run_id) for c in history] == [
        ("promote", v1, None, "p1"), ("promote", v2, v1, "p2"), ("promote", v2, None, "p3"),
        ("rollback", v1, v2, "rb1")]
    assert (history[-1].actor, history[-1].reason, history[-1].forced) == ("oncall", "kpi drop", False)
    assert registry.champion_history(client, f"{name}_missing") == []


def _change(action: str, version: str, replaced: str | None = None) -> registry.ChampionChange:
    return registry.ChampionChange("t", version, replaced, action, ACTOR, "r")


@pytest.mark.parametrize(("changes", "lineage"), [
    ([], []),
    ([("promote", "1"), ("promote", "2"), ("promote", "3")], ["1", "2", "3"]),
    ([("promote", "1"), ("promote", "1")], ["1"]),  # a re-check of the champion
    ([("promote", "1"), ("promote", "2"), ("rollback", "1", "2")], ["1"]),  # nowhere back to 2
    ([("promote", "1"), ("promote", "2"), ("promote", "3"), ("rollback", "2", "3"), ("rollback", "1", "2")], ["1"]),
    ([("promote", "1"), ("promote", "2"), ("promote", "3"), ("rollback", "1", "3")], ["1"]),  # skips 2
    ([("promote", "1"), ("promote", "2"), ("rollback", "1", "2"), ("promote", "3")], ["1", "3"]),
    ([("promote", "1"), ("promote", "2"), ("rollback", "1", "2"), ("promote", "2")], ["1", "2"]),  # promoted again
    ([("promote", "1"), ("promote", "2"), ("promote", "1"), ("rollback", "2", "1")], ["2"]),  # 1 was rolled back from
    ([("promote", "1"), ("promote", "2"), ("rollback", "7", "2")], ["1", "7"]),  # a forced target never champion
])
def test_champion_lineage(changes, lineage) -> None:
    assert registry.champion_lineage([_change(*c) for c in changes]) == lineage


def test_set_previous_champion_follows_the_lineage(client, runs, name) -> None:
    v1 = _register(client, name, runs[0])
    _promote(client, name, v1)
    v2 = _register(client, name, runs[1])
    _promote(client, name, v2)

    assert registry.set_previous_champion(client, name, [v2], registry.Because(ACTOR)) is None
    assert _aliases(client, name) == {CHAMPION: v2}
    assert registry.set_previous_champion(client, name, [v2], registry.Because(ACTOR)) is None  # no alias to remove: fine
    assert registry.set_previous_champion(client, name, [v2, v1, v2], registry.Because(ACTOR)) == v1
    assert _aliases(client, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
