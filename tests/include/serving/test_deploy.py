"""Tests for include.serving.deploy: the deploy, rollback and recovery steps against a real SQLite MLflow store.

Triton is a stand-in that keeps the repository API's semantics (the versions the last export listed load
on ``load``, the others unload) and the export is recorded rather than converted: the registry's models
here are tiny LogisticRegressions of no configured model. The real export and server are in triton/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from include.config import load_model_config
from include.governance import audit
from include.governance.gates import GateReport, GateResult
from include.promotion import registry, rollout
from include.promotion.registry import CHAMPION
from include.promotion.rollout import LIVE, SERVING_TAG, STANDBY, UNLOADED, DeploymentError
from include.serving import deploy

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
ACTOR = "tester"
IDS = {"dag_id": "deploy_test", "run_id": "manual__1"}


class FakeTriton:
    """Triton's repository API over the versions the last (fake) export listed."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.listed: set[str] = set()
        self.states: dict[str, str] = {}
        self.loads = 0

    def load(self, name: str) -> None:
        assert name == self.model
        self.loads += 1
        self.states = {**{v: "UNAVAILABLE" for v in self.states}, **{v: "READY" for v in self.listed}}

    def wait_ready(self, name: str, version: str, timeout: float) -> None:
        assert self.states.get(str(version)) == "READY", f"version {version} is not ready: {self.states}"

    def repository_index(self) -> list[dict]:
        return [{"name": self.model, "version": v, "state": s} for v, s in self.states.items()]


@pytest.fixture
def triton(name: str, monkeypatch: pytest.MonkeyPatch) -> FakeTriton:
    fake = FakeTriton(name)
    exports = []

    def export_version(client, model, version, config, repo, keep_versions=()):
        exports.append((model, str(version), [str(v) for v in keep_versions]))
        fake.listed = {str(version), *(str(v) for v in keep_versions)}
        return Path(repo) / model / str(version)

    monkeypatch.setattr(deploy, "export_version", export_version)
    fake.exports = exports
    return fake


def _config(name: str):
    return CONFIG.model_copy(update={"name": name})


def _live(client, name: str, runs, n: int) -> list[str]:
    """n versions with passing gates, each promoted in turn: @champion is the last."""
    versions = []
    for i in range(n):
        run_id, model_uri = runs[i % len(runs)]
        registry.ensure_registered_model(client, name)
        v = str(client.create_model_version(name, source=model_uri, run_id=run_id).version)
        registry.record_gates(client, name, v, GateReport((GateResult("min_metric", True, 0.8, 0.7, "detail"),)))
        registry.promote(client, name, v, actor=ACTOR, reason="gates passed")
        versions.append(v)
    return versions


def _serving(client, name: str) -> dict[str, str]:
    versions = client.search_model_versions(f"name = '{name}'")
    return {str(v.version): v.tags[SERVING_TAG] for v in versions if SERVING_TAG in v.tags}


def _champion(client, name: str) -> str:
    return str(registry.alias_version(client, name, CHAMPION).version)


def _actions(client, name: str, version: str) -> list[str]:
    return [r["action"] for r in audit.read(client, name, version)]


def _deployed(client, name, triton, plan) -> None:
    """The plan's export and load done: Triton serves its version and standby versions."""
    deploy.export(client, _config(name), plan, "/repo")
    triton.load(name)


def _champion_live(client, name, triton) -> None:
    """``@champion`` deployed and marked live, its fallback on standby."""
    plan = rollout.plan_deployment(client, name)
    _deployed(client, name, triton, plan)
    deploy.mark_live(client, triton, plan, {}, actor=ACTOR, **IDS)


def test_a_deployment_goes_live_with_its_fallback_on_standby(client, runs, name, triton):
    v1, v2 = _live(client, name, runs, 2)
    plan = rollout.plan_deployment(client, name)
    _deployed(client, name, triton, plan)

    deploy.mark_live(client, triton, plan, {"rows": 1, "max_abs_diff": 0.0, "tolerance": 1e-5}, actor=ACTOR, **IDS)

    assert triton.exports == [(name, v2, [v1])]
    assert _serving(client, name) == {v1: STANDBY, v2: LIVE}
    assert _actions(client, name, v2)[-1] == rollout.DEPLOY_ACTION


def test_a_version_triton_does_not_answer_with_is_not_marked_live(client, runs, name, triton):
    v1, v2 = _live(client, name, runs, 2)
    plan = rollout.plan_deployment(client, name)
    triton.listed = {v1}
    triton.load(name)

    with pytest.raises(DeploymentError, match=f"Triton answers {name} requests with version {v1}, not version {v2}"):
        deploy.mark_live(client, triton, plan, {}, actor=ACTOR, **IDS)

    assert _serving(client, name) == {v1: LIVE}
    assert rollout.DEPLOY_ACTION not in _actions(client, name, v2)


def test_a_failed_deployment_rolls_back_and_the_fallback_serves_alone(client, runs, name, triton):
    v1, v2 = _live(client, name, runs, 2)
    plan = rollout.plan_deployment(client, name)
    _deployed(client, name, triton, plan)

    recovery = deploy.recover_failed_deployment(client, triton, "/repo", _config(name), plan, actor=ACTOR, **IDS)

    assert recovery.ok and recovery.result["target"] == v1 and recovery.result["replaced"] == v2
    assert recovery.title == f"version {v2} failed deployment; rolled back to version {v1}"
    assert _champion(client, name) == v1
    assert triton.exports[-1] == (name, v1, []) and triton.states == {v1: "READY", v2: "UNAVAILABLE"}
    assert _serving(client, name) == {v1: LIVE}  # version 2 never went live: never tagged
    assert rollout.DEPLOY_FAILED_ACTION in _actions(client, name, v2)
    # the failed version may not be a rollback target now
    assert any("deployment failed" in r for r in rollout.rollback_refusals(client, name, v2))


def test_a_failed_first_deployment_has_nothing_to_fall_back_to(client, runs, name, triton):
    (v1,) = _live(client, name, runs, 1)
    plan = rollout.plan_deployment(client, name)
    triton.listed = set()

    recovery = deploy.recover_failed_deployment(client, triton, "/repo", _config(name), plan, actor=ACTOR, **IDS)

    assert not recovery.ok and recovery.error == f"{name} version {v1} failed to deploy; no fallback version"
    assert recovery.actions == (f"none: @champion stays version {v1}", "Triton serves version nothing")
    assert _champion(client, name) == v1 and triton.exports == []
    assert _actions(client, name, v1)[-1] == rollout.DEPLOY_FAILED_ACTION


def test_a_fallback_that_was_retired_meanwhile_is_not_rolled_back_to(client, runs, name, triton):
    v1, v2 = _live(client, name, runs, 2)
    plan = rollout.plan_deployment(client, name)
    _deployed(client, name, triton, plan)
    client.set_model_version_tag(name, v1, rollout.RETIRED_TAG, "true")

    recovery = deploy.recover_failed_deployment(client, triton, "/repo", _config(name), plan, actor=ACTOR, **IDS)

    assert not recovery.ok and f"version {v1} cannot be rolled back to: it is retired" in recovery.error
    assert recovery.actions == (f"Triton serves version {v2}",)
    assert _champion(client, name) == v2 and triton.exports == [(name, v2, [v1])]


def test_a_rollback_switches_the_champion_and_serves_the_target_alone(client, runs, name, triton):
    v1, v2 = _live(client, name, runs, 2)
    _champion_live(client, name, triton)
    plan = deploy.plan_requested_rollback(client, name, target=None, reason="kpi drop", force=False,
                                          from_version=v2, run_id="r1")
    _deployed(client, name, triton, plan)

    result = deploy.switch(client, triton, "/repo", _config(name), plan, {"rows": 1}, reason="kpi drop", actor=ACTOR,
                           dag_id="rollback_test", run_id="r1")

    assert result["changed"] and (result["target"], result["replaced"]) == (v1, v2)
    assert _champion(client, name) == v1 and triton.states == {v1: "READY", v2: "UNAVAILABLE"}
    assert _serving(client, name) == {v1: LIVE, v2: UNLOADED}
    [deployed] = [r for r in audit.read(client, name, v1) if r["action"] == rollout.DEPLOY_ACTION]
    assert deployed["reason"] == "rollback: kpi drop"


def test_a_rollback_that_failed_its_checks_restores_the_champion(client, runs, name, triton):
    v1, v2 = _live(client, name, runs, 2)
    _champion_live(client, name, triton)
    plan = deploy.plan_requested_rollback(client, name, target=v1, reason="kpi drop", force=False, from_version=None,
                                          run_id="r2")
    _deployed(client, name, triton, plan)

    recovery = deploy.restore_after_failed_rollback(client, triton, "/repo", _config(name), plan, actor=ACTOR,
                                                    dag_id="rollback_test", run_id="r2")

    assert recovery.ok and recovery.result == {"model": name, "champion": v2}
    assert _champion(client, name) == v2 and triton.states == {v1: "UNAVAILABLE", v2: "READY"}
    assert _serving(client, name) == {v1: UNLOADED, v2: LIVE}
    assert rollout.DEPLOY_FAILED_ACTION in _actions(client, name, v1)
    assert rollout.DEPLOY_FAILED_ACTION not in _actions(client, name, v2)


def test_a_forced_rollback_needs_a_reason_of_its_own(client, runs, name):
    _, v2 = _live(client, name, runs, 2)

    for reason in ("", "manual rollback"):
        with pytest.raises(DeploymentError, match="force=true needs a reason of its own"):
            deploy.plan_requested_rollback(client, name, target=None, reason=reason, force=True, from_version=None,
                                           run_id="r3", default_reason="manual rollback")
    assert _champion(client, name) == v2


def test_a_rollback_asked_for_another_champion_has_nothing_to_do(client, runs, name):
    v1, v2 = _live(client, name, runs, 2)

    assert deploy.plan_requested_rollback(client, name, target=None, reason="x", force=False, from_version=v1,
                                          run_id="r4") is None
    assert _champion(client, name) == v2
