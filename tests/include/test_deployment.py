"""Rollback and deployment planning against a real SQLite MLflow store."""

from __future__ import annotations

import pytest

from include import audit, deployment, registry
from include.deployment import ROLLED_BACK, DeploymentError
from include.registry import CHAMPION, PREVIOUS_CHAMPION

ACTOR = "tester"


def _live(client, name, runs, n):
    """n versions, each promoted in turn: champion = n, previous_champion = n - 1."""
    versions = []
    for run_id, model_uri in runs[:n]:
        v = str(registry.register_challenger(
            client, name=name, description="", model_uri=model_uri, run_id=run_id, tags={}, actor=ACTOR,
        ).version)
        registry.promote(client, name, v, actor=ACTOR, reason="test")
        versions.append(v)
    return versions


def _aliases(client, name):
    return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


def test_rollback_to_previous_champion_and_twice_is_a_no_op(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    first = deployment.rollback(client, name, target=None, actor=ACTOR, reason="kpi drop", run_id="r1")
    assert (first.target, first.replaced, first.changed) == (v1, v2, True)
    assert _aliases(client, name) == {CHAMPION: v1, PREVIOUS_CHAMPION: v1, ROLLED_BACK: v2}

    second = deployment.rollback(client, name, target=None, actor=ACTOR, reason="kpi drop", run_id="r2")
    assert second.changed is False
    assert _aliases(client, name) == {CHAMPION: v1, PREVIOUS_CHAMPION: v1, ROLLED_BACK: v2}
    actions = [r["action"] for r in audit.read(client, name, v1)]
    assert actions.count("rollback") == 1
    assert any(r["action"] == "rollback" and r["reason"] == "kpi drop" for r in audit.read(client, name, v2))


def test_rollback_to_an_explicit_version(client, runs, name):
    v1, _v2, v3 = _live(client, name, runs, 3)
    result = deployment.rollback(client, name, target=v1, actor=ACTOR, reason="manual")
    assert (result.target, result.replaced) == (v1, v3)
    assert _aliases(client, name)[CHAMPION] == v1


@pytest.mark.parametrize("target", ["99", "not-a-version"])
def test_rollback_to_a_missing_version_changes_nothing(client, runs, name, target):
    _live(client, name, runs, 2)
    before = _aliases(client, name)
    with pytest.raises(DeploymentError, match=f"has no version {target}"):
        deployment.rollback(client, name, target=target, actor=ACTOR, reason="x")
    assert _aliases(client, name) == before


def test_rollback_to_a_retired_version_changes_nothing(client, runs, name):
    v1, _v2 = _live(client, name, runs, 2)
    client.set_model_version_tag(name, v1, deployment.RETIRED_TAG, "true")
    before = _aliases(client, name)
    with pytest.raises(DeploymentError, match="retired"):
        deployment.rollback(client, name, target=None, actor=ACTOR, reason="x")
    assert _aliases(client, name) == before


def test_rollback_without_a_previous_champion_says_so(client, runs, name):
    _live(client, name, runs, 1)
    with pytest.raises(DeploymentError, match="no @previous_champion"):
        deployment.rollback(client, name, target=None, actor=ACTOR, reason="x")


def test_plan_deploys_the_champion_with_the_previous_as_fallback(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)
    plan = deployment.plan_deployment(client, name)
    assert (plan.version, plan.fallback) == (v2, v1)
    assert deployment.plan_deployment(client, name, v1).fallback is None  # v1 is the fallback itself
    with pytest.raises(DeploymentError, match="no @champion"):
        deployment.plan_deployment(client, f"{name}_empty")


def test_parity_check():
    assert deployment.check_parity([0.1, 0.2], [0.1, 0.2000001], tolerance=1e-5)["rows"] == 2
    with pytest.raises(DeploymentError, match="max"):
        deployment.check_parity([0.1, 0.2], [0.1, 0.3], tolerance=1e-5)
    with pytest.raises(DeploymentError, match="non-finite"):
        deployment.check_parity([0.1], [float("nan")], tolerance=1e-5)
    with pytest.raises(DeploymentError, match="outputs for"):
        deployment.check_parity([0.1, 0.2], [0.1], tolerance=1e-5)
