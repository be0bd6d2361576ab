"""Rollback, deployment planning and the serving tags against a real SQLite MLflow store."""

from __future__ import annotations

import pytest

from include import tracking
from include.governance import audit
from include.governance.gates import GateReport, GateResult
from include.promotion import registry, rollout
from include.promotion.registry import CHAMPION, PREVIOUS_CHAMPION
from include.promotion.rollout import LIVE, ROLLED_BACK, SERVING_TAG, STANDBY, UNLOADED, DeploymentError

ACTOR = "tester"
EXPERIMENT = "registry-tests"


def _gates(passed: bool) -> GateReport:
    return GateReport((GateResult("min_metric", passed, 0.8, 0.7, "detail"),))


def _version(client, name, runs, i=0, *, gates: bool | None = True, **tags) -> str:
    """A new version of ``name`` from run ``i`` with its gates recorded (``gates=None``: never checked)."""
    run_id, model_uri = runs[i % len(runs)]
    registry.ensure_registered_model(client, name)
    v = str(client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags).version)
    if gates is not None:
        registry.record_gates(client, name, v, _gates(gates))
    return v


def _promote(client, name, v, run_id=None) -> None:
    registry.promote(client, name, v, actor=ACTOR, reason="gates passed", run_id=run_id)


def _live(client, name, runs, n):
    """n versions with passing gates, each promoted in turn: champion = n, previous_champion = n - 1."""
    versions = []
    for i in range(n):
        v = _version(client, name, runs, i)
        _promote(client, name, v)
        versions.append(v)
    return versions


def _aliases(client, name):
    return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


def _rollback(client, name, target=None, **kwargs):
    return rollout.rollback(client, name, target=target, actor=ACTOR, reason=kwargs.pop("reason", "kpi drop"),
                               **kwargs)


def _rollbacks(client, name, version):
    return [r for r in audit.read(client, name, version) if r["action"] == "rollback"]


# --- stepping back -------------------------------------------------------------------------


def test_after_a_rollback_from_2_to_1_there_is_no_way_back_to_2(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)

    first = _rollback(client, name, run_id="r1")

    assert (first.target, first.replaced, first.changed, first.previous_champion) == (v1, v2, True, None)
    # the previous champion is neither the champion nor the version just rolled back from: there is none
    assert _aliases(client, name) == {CHAMPION: v1, ROLLED_BACK: v2}
    before = _aliases(client, name)
    with pytest.raises(DeploymentError, match=f"no champion before version {v1} on record"):
        _rollback(client, name, run_id="r2")
    assert _aliases(client, name) == before


def test_rollbacks_step_back_through_the_champions_on_record(client, runs, name):
    v1, v2, v3 = _live(client, name, runs, 3)

    assert _rollback(client, name).target == v2
    assert _aliases(client, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1, ROLLED_BACK: v3}
    assert _rollback(client, name).target == v1
    assert _aliases(client, name) == {CHAMPION: v1, ROLLED_BACK: v2}


def test_a_promotion_after_a_rollback_makes_the_restored_version_the_next_target(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    _rollback(client, name)
    v3 = _version(client, name, runs, 2)
    _promote(client, name, v3)

    assert _aliases(client, name)[PREVIOUS_CHAMPION] == v1
    assert _rollback(client, name).target == v1  # never v2, which was rolled back from
    assert _aliases(client, name) == {CHAMPION: v1, ROLLED_BACK: v3}
    assert v2 != v3


def test_the_same_rollback_twice_changes_nothing_the_second_time(client, runs, name):
    v1, v2, _v3 = _live(client, name, runs, 3)
    _rollback(client, name, v1, run_id="r1")

    again = _rollback(client, name, v1, run_id="r2")

    assert again.changed is False
    assert _aliases(client, name)[CHAMPION] == v1
    assert len(_rollbacks(client, name, v1)) == 1
    assert v2 not in _aliases(client, name).values()


def test_a_rollback_run_retried_does_not_step_back_twice(client, runs, name):
    v1, v2, v3 = _live(client, name, runs, 3)
    assert _rollback(client, name, run_id="monitor__1").target == v2

    retried = _rollback(client, name, run_id="monitor__1")

    assert (retried.target, retried.changed) == (v2, False)
    assert _aliases(client, name)[CHAMPION] == v2
    assert len(_rollbacks(client, name, v2)) == 1


def test_a_rollback_cut_short_after_its_record_is_completed_by_the_retry(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    record = audit.AuditRecord("rollback", name, v1, ACTOR, "kpi drop", run_id="r7",
                               details={"from_version": v2, "to_version": v1, "forced": False})
    audit.write_on(client, record, [v1, v2])  # the try that wrote it died before moving the aliases

    result = _rollback(client, name, expected_champion=v2, run_id="r7")

    assert (result.target, result.changed) == (v1, True)
    assert _aliases(client, name) == {CHAMPION: v1, ROLLED_BACK: v2}
    assert len(_rollbacks(client, name, v1)) == len(_rollbacks(client, name, v2)) == 1


def test_a_stale_rollback_request_does_nothing(client, runs, name):
    v1, v2, v3 = _live(client, name, runs, 3)
    before = _aliases(client, name)

    assert rollout.plan_rollback(client, name, target=None, expected_champion=v2) is None
    with pytest.raises(DeploymentError, match=f"moved from version {v2} to {v3}"):
        _rollback(client, name, expected_champion=v2)
    assert _aliases(client, name) == before


def test_the_rollback_record_is_on_both_versions_and_in_the_history(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    _rollback(client, name, run_id="r1", dag_id="rollback_x")

    (on_target,) = _rollbacks(client, name, v1)
    (on_replaced,) = _rollbacks(client, name, v2)
    assert {**on_target, "version": None} == {**on_replaced, "version": None}
    assert on_target["details"] == {"from_version": v2, "to_version": v1, "forced": False}
    assert (on_target["actor"], on_target["reason"], on_target["run_id"]) == (ACTOR, "kpi drop", "r1")
    history = registry.champion_history(client, name)
    assert [(c.action, c.version, c.replaced) for c in history] == [
        ("promote", v1, None), ("promote", v2, v1), ("rollback", v1, v2)]


# --- refused targets -----------------------------------------------------------------------


def _refused(client, name, target, match, **kwargs):
    before = _aliases(client, name)
    with pytest.raises(DeploymentError, match=match) as caught:
        _rollback(client, name, target, **kwargs)
    assert f"version {target}" in str(caught.value) or f"no version {target}" in str(caught.value)
    assert _aliases(client, name) == before
    return str(caught.value)


@pytest.mark.parametrize("target", ["99", "not-a-version"])
def test_rollback_to_a_missing_version_changes_nothing(client, runs, name, target):
    _live(client, name, runs, 2)
    _refused(client, name, target, f"has no version {target}")


def test_rollback_to_a_version_whose_gates_failed_is_refused(client, runs, name):
    _live(client, name, runs, 3)
    v4 = _version(client, name, runs, gates=False)

    message = _refused(client, name, v4, "gates.result=failed")

    assert "never @champion" in message and "force=true" in message


def test_rollback_to_a_version_never_checked_by_the_gates_is_refused(client, runs, name):
    _live(client, name, runs, 2)
    v3 = _version(client, name, runs, gates=None)
    _refused(client, name, v3, "no gates.result tag")


def test_rollback_to_a_version_that_passed_but_never_was_champion_is_refused(client, runs, name):
    _live(client, name, runs, 2)
    v3 = _version(client, name, runs)
    _refused(client, name, v3, r"never @champion \(no promotion or rollback on record")


def test_rollback_to_a_retired_version_changes_nothing(client, runs, name):
    v1, _v2 = _live(client, name, runs, 2)
    client.set_model_version_tag(name, v1, rollout.RETIRED_TAG, "true")
    _refused(client, name, v1, "it is retired")
    with pytest.raises(DeploymentError, match="retired"):  # also as the default target
        _rollback(client, name)


def test_rollback_to_a_quarantined_version_is_refused(client, runs, name):
    v1, _v2 = _live(client, name, runs, 2)
    client.set_model_version_tag(name, v1, rollout.QUARANTINE_TAG, "compliance-hold")
    _refused(client, name, v1, r"quarantined \(quarantine=compliance-hold\)")


def test_rollback_to_a_version_of_a_quarantined_run_is_refused(client, runs, name):
    run_id = tracking.upsert_run(client, EXPERIMENT, {"test.run": f"{name}-failed"}, "failed-validation")
    client.set_tag(run_id, "validation.status", "failed")
    registry.ensure_registered_model(client, name)
    v1 = str(client.create_model_version(name, source=runs[0][1], run_id=run_id).version)
    registry.record_gates(client, name, v1, _gates(True))
    _promote(client, name, v1)
    _promote(client, name, _version(client, name, runs))
    _refused(client, name, v1, f"training run {run_id} is quarantined")


def test_rollback_to_a_version_trained_on_data_that_failed_validation_is_refused(client, runs, name):
    fingerprint = f"sha256:{name}"
    v1 = _version(client, name, runs, data_fingerprint=fingerprint)
    _promote(client, name, v1)
    _promote(client, name, _version(client, name, runs, 1))
    # the same data, validated again later (e.g. a stricter suite), failed: its run is quarantined
    bad = tracking.upsert_run(client, EXPERIMENT, {"test.run": f"{name}-revalidated"}, "revalidated")
    client.set_tag(bad, "quarantine", "rejected")
    client.set_tag(bad, "data_fingerprint", fingerprint)

    _refused(client, name, v1, f"training data \\({fingerprint}\\) failed validation in MLflow run {bad}")


def test_rollback_to_a_version_rejected_since_it_was_champion_is_refused(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    audit.write(client, audit.AuditRecord("reject", name, v1, "risk-officer", "Rejected in the approval step"))
    _refused(client, name, v1, "it was rejected at .* by risk-officer: Rejected in the approval step")


def test_rollback_to_a_version_whose_deployment_failed_is_refused(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    rollout.record_deploy_failure(client, name, v1, actor=ACTOR, reason="export failed: cannot convert")
    _refused(client, name, v1, "its deployment failed at .*: export failed: cannot convert")


def test_rollback_to_the_version_just_rolled_back_from_is_refused(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    _rollback(client, name)
    _refused(client, name, v2, "it was rolled back from at .* by tester: kpi drop")


def test_a_version_promoted_again_after_its_rollback_may_be_rolled_back_to(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    _rollback(client, name)
    _promote(client, name, v2)  # the promotion DAG passed it again
    v3 = _version(client, name, runs, 2)
    _promote(client, name, v3)

    assert _rollback(client, name, v2).changed is True
    assert _aliases(client, name)[CHAMPION] == v2


def test_the_default_target_is_refused_when_the_alias_was_moved_by_hand(client, runs, name):
    v1, v2, v3 = _live(client, name, runs, 3)
    client.set_registered_model_alias(name, CHAMPION, v1)
    before = _aliases(client, name)
    with pytest.raises(DeploymentError, match=f"@champion is version {v1} but the last champion on record is "
                                              f"version {v3}"):
        _rollback(client, name)
    assert _aliases(client, name) == before


def test_a_forced_rollback_overrides_the_checks_and_says_so_in_the_audit_record(client, runs, name):
    _v1, v2 = _live(client, name, runs, 2)
    v3 = _version(client, name, runs, gates=False)
    with pytest.raises(DeploymentError, match="needs a reason"):
        _rollback(client, name, v3, force=True, reason=" ")
    assert _aliases(client, name)[CHAMPION] == v2

    result = _rollback(client, name, v3, force=True, reason="incident 42: v2 leaks PII", run_id="r1")

    assert (result.target, result.replaced) == (v3, v2)
    assert _aliases(client, name)[CHAMPION] == v3
    (record,) = _rollbacks(client, name, v3)
    assert record["reason"] == "incident 42: v2 leaks PII"
    assert record["details"]["forced"] is True
    assert "gates.result=failed" in record["details"]["overridden"]
    assert "never @champion" in record["details"]["overridden"]
    assert registry.champion_history(client, name)[-1].forced is True


def test_force_is_not_recorded_as_forced_when_nothing_was_overridden(client, runs, name):
    v1, _v2 = _live(client, name, runs, 2)
    _rollback(client, name, v1, force=True, reason="drill")
    assert _rollbacks(client, name, v1)[0]["details"]["forced"] is False


def test_rollback_without_a_champion_says_so(client, runs, name):
    _version(client, name, runs)
    with pytest.raises(DeploymentError, match="has no @champion"):
        _rollback(client, name)


def test_rollback_with_one_champion_has_nowhere_to_go(client, runs, name):
    (v1,) = _live(client, name, runs, 1)
    with pytest.raises(DeploymentError, match=f"no champion before version {v1}"):
        _rollback(client, name)


# --- deployment plans ----------------------------------------------------------------------


def test_plan_deploys_the_champion_with_the_previous_as_fallback_and_standby(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    plan = rollout.plan_deployment(client, name)
    assert (plan.version, plan.fallback, plan.standby) == (v2, v1, (v1,))
    assert rollout.plan_deployment(client, name, v2) == plan
    with pytest.raises(DeploymentError, match="no @champion"):
        rollout.plan_deployment(client, f"{name}_empty")


def test_plan_refuses_an_explicit_version_that_is_not_the_champion(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    with pytest.raises(DeploymentError, match=f"version {v1} is not @champion \\(version {v2}\\).*rollback_{name}"):
        rollout.plan_deployment(client, name, v1)
    with pytest.raises(DeploymentError, match="has no version 99"):
        rollout.plan_deployment(client, name, "99")


def test_a_lower_numbered_champion_keeps_no_standby(client, runs, name):
    v1, v2, v3 = _live(client, name, runs, 3)
    _promote(client, name, v1)  # promoted again: lineage 1, 2, 3, 1

    plan = rollout.plan_deployment(client, name)

    assert (plan.version, plan.fallback, plan.standby) == (v1, v3, ())  # v3 loaded would answer instead of v1


def test_plan_refuses_a_champion_set_by_hand(client, runs, name):
    _v1, _v2 = _live(client, name, runs, 2)
    v3 = _version(client, name, runs, gates=False)
    client.set_registered_model_alias(name, CHAMPION, v3)
    with pytest.raises(DeploymentError, match=f"version {v3} \\(@champion\\) cannot be deployed: .*no recorded "
                                              "promotion or rollback.*gates.result=failed"):
        rollout.plan_deployment(client, name)


def test_plan_refuses_a_retired_champion(client, runs, name):
    _v1, v2 = _live(client, name, runs, 2)
    client.set_model_version_tag(name, v2, rollout.RETIRED_TAG, "true")
    with pytest.raises(DeploymentError, match=f"version {v2} \\(@champion\\) cannot be deployed: it is retired"):
        rollout.plan_deployment(client, name)


def test_plan_deploys_a_champion_put_live_by_a_forced_rollback(client, runs, name):
    _v1, v2 = _live(client, name, runs, 2)
    v3 = _version(client, name, runs, gates=False)
    _rollback(client, name, v3, force=True, reason="incident 42")

    plan = rollout.plan_deployment(client, name)

    assert (plan.version, plan.fallback) == (v3, _v1)  # v2 was rolled back from: not a fallback


def test_a_fallback_that_may_not_be_rolled_back_to_is_dropped(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    client.set_model_version_tag(name, v1, rollout.RETIRED_TAG, "true")
    plan = rollout.plan_deployment(client, name)
    assert (plan.version, plan.fallback, plan.standby) == (v2, None, ())


# --- serving tags --------------------------------------------------------------------------


def _serving(client, name):
    versions = client.search_model_versions(f"name = '{name}'")
    return {str(v.version): v.tags[SERVING_TAG] for v in versions if SERVING_TAG in v.tags}


def test_serving_tags_follow_triton_with_exactly_one_live(client, runs, name):
    v1, v2, v3 = _live(client, name, runs, 3)
    index = [{"name": name, "version": v1, "state": "READY"}, {"name": name, "version": v2, "state": "READY"},
             {"name": "other", "version": v3, "state": "READY"}]

    assert rollout.record_serving(client, name, rollout.triton_states(index, name), expected=v2) == v2
    assert _serving(client, name) == {v1: STANDBY, v2: LIVE}

    states = {v1: "READY", v2: "UNAVAILABLE"}  # rolled back: v2 unloaded
    assert rollout.record_serving(client, name, states, expected=v1) == v1
    assert _serving(client, name) == {v1: LIVE, v2: UNLOADED}

    with pytest.raises(DeploymentError, match=f"answers {name} requests with version none, not version {v1}"):
        rollout.record_serving(client, name, {v1: "UNAVAILABLE"}, expected=v1)
    assert _serving(client, name) == {v1: UNLOADED, v2: UNLOADED}  # the tags tell the truth anyway


def test_serving_tags_ignore_versions_unknown_to_the_registry(client, runs, name):
    (v1,) = _live(client, name, runs, 1)
    assert rollout.record_serving(client, name, {v1: "READY", "77": "READY"}) == "77"
    assert _serving(client, name) == {v1: STANDBY}


def test_a_plan_survives_its_trip_through_xcom(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    plan = rollout.plan_deployment(client, name)

    assert rollout.DeploymentPlan.from_dict(plan.as_dict()) == plan
    assert plan.standby == (v1,) and plan.version == v2
    assert rollout.DeploymentPlan.from_dict({"model": name, "version": 3, "fallback": None}) == rollout.DeploymentPlan(
        model=name, version="3", fallback=None)


def test_a_deployment_is_audited_on_its_version(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    plan = rollout.plan_deployment(client, name)

    rollout.record_deployment(client, plan, {"rows": 3, "max_abs_diff": 0.0, "tolerance": 1e-5}, actor=ACTOR,
                              reason="deployed", dag_id="deploy_x", run_id="r1")

    [record] = [r for r in audit.read(client, name, v2) if r["action"] == rollout.DEPLOY_ACTION]
    assert record["actor"] == ACTOR and record["reason"] == "deployed" and record["run_id"] == "r1"
    assert record["details"] == {"fallback": v1, "standby": [v1], "target": "triton",
                                 "parity": {"rows": 3, "max_abs_diff": 0.0, "tolerance": 1e-5}}
    assert not [r for r in audit.read(client, name, v1) if r["action"] == rollout.DEPLOY_ACTION]
