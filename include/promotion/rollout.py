"""Deployment decisions over the registry: which version may go live, rollback, and what Triton serves.

Aliases stay the only record of what is live: a deployment serves ``@champion``; a failed deployment
or a rollback moves ``@champion`` back and Triton follows. Every move writes an audit record.

Which versions a rollback may put live is decided here, before anything moves (:func:`plan_rollback`):
a target must exist, not be retired or quarantined, not come from data that failed validation, have
passed its gates, have been ``@champion`` before (per :func:`include.promotion.registry.champion_history`), and
not have been rolled back from, rejected or failed deployment since. ``force`` (with a reason)
overrides those checks, and the audit record lists what it overrode. The version tag
``serving.triton`` mirrors Triton's own status (:func:`record_serving`): ``live`` on the one
version that answers requests without a version, ``standby`` on other loaded ones, ``unloaded``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from include.dag_ids import Stage, dag_id
from include.governance import audit
from include.promotion.registry import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    ROLLBACK_ACTION,
    Because,
    ChampionChange,
    alias_version,
    champion_history,
    champion_lineage,
    move_alias,
    set_previous_champion,
)

log = logging.getLogger(__name__)

ROLLED_BACK = "rolled_back"  # alias on the version a rollback took out of service
RETIRED_TAG = "retired"
QUARANTINE_TAG = "quarantine"
GATES_TAG = "gates.result"
SERVING_TAG = "serving.triton"
LIVE, STANDBY, UNLOADED = "live", "standby", "unloaded"
DEPLOY_ACTION = "deploy"
DEPLOY_FAILED_ACTION = "deploy_failed"
REJECT_ACTION = "reject"
READY = "READY"
SEARCH_PAGE = 1000


class DeploymentError(RuntimeError):
    """A version cannot be deployed or rolled back to; nothing was changed. The message names the version and why."""


@dataclass(frozen=True)
class DeploymentPlan:
    """What a deploy or rollback run puts live; passed between tasks as :meth:`as_dict`.

    ``fallback``: what serves if ``version`` fails (deploy: the automatic rollback target;
    rollback: the champion it replaces, which keeps serving until the target is verified).
    ``standby``: versions kept loaded beside ``version`` while it is checked. ``replaced``: the
    champion a rollback replaces (None: the rollback moves nothing). ``overridden``: the checks a
    forced rollback overrides.
    """

    model: str
    version: str
    fallback: str | None
    standby: tuple[str, ...] = ()
    replaced: str | None = None
    force: bool = False
    overridden: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"model": self.model, "version": self.version, "fallback": self.fallback,
                "standby": list(self.standby), "replaced": self.replaced, "force": self.force,
                "overridden": list(self.overridden)}

    @classmethod
    def from_dict(cls, planned: Mapping) -> DeploymentPlan:
        """The plan from :meth:`as_dict` (as an XCom returns it); missing optional keys take their defaults."""
        return cls(model=planned["model"], version=str(planned["version"]), fallback=planned.get("fallback"),
                   standby=tuple(str(v) for v in planned.get("standby") or ()), replaced=planned.get("replaced"),
                   force=bool(planned.get("force")), overridden=tuple(planned.get("overridden") or ()))


@dataclass(frozen=True)
class RollbackResult:
    model: str
    target: str
    replaced: str | None
    changed: bool
    previous_champion: str | None = None  # the next rollback target after this one

    def as_dict(self) -> dict:
        return {"model": self.model, "target": self.target, "replaced": self.replaced, "changed": self.changed,
                "previous_champion": self.previous_champion}


# --- what may go live ------------------------------------------------------------------------


def _existing_version(client: MlflowClient, model: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(model, version)
    except MlflowException:
        raise DeploymentError(f"{model} has no version {version}") from None


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "false", "0", "no")


def _lineage_refusals(client: MlflowClient, found: ModelVersion) -> list[str]:
    """Retired, quarantined, or trained on data that failed validation (version tags, its run, other runs)."""
    refusals = []
    if _flag(found.tags.get(RETIRED_TAG)):
        refusals.append("it is retired")
    if _flag(found.tags.get(QUARANTINE_TAG)):
        refusals.append(f"it is quarantined ({QUARANTINE_TAG}={found.tags[QUARANTINE_TAG]})")
    if not found.run_id:
        return [*refusals, "it has no MLflow run, so its training data cannot be checked"]
    try:
        run = client.get_run(found.run_id)
    except MlflowException as exc:
        return [*refusals, f"its MLflow run {found.run_id} cannot be read ({exc.message})"]
    tags = run.data.tags
    if _flag(tags.get(QUARANTINE_TAG)) or tags.get("validation.status") == "failed":
        refusals.append(f"its training run {found.run_id} is quarantined: its data failed validation")
    fingerprint = found.tags.get("data_fingerprint") or tags.get("data_fingerprint")
    if fingerprint and "'" not in fingerprint:
        bad = client.search_runs([run.info.experiment_id], max_results=1,
                                 filter_string=f"tags.{QUARANTINE_TAG} = 'rejected' and "
                                               f"tags.data_fingerprint = '{fingerprint}'")
        if bad and bad[0].info.run_id != found.run_id:
            refusals.append(f"its training data ({fingerprint}) failed validation in MLflow run {bad[0].info.run_id}")
    return refusals


def _gate_refusals(found: ModelVersion) -> list[str]:
    result = found.tags.get(GATES_TAG)
    if result == "passed":
        return []
    if result is None:
        return [f"it has no {GATES_TAG} tag: the promotion gates never passed it"]
    return [f"{GATES_TAG}={result}"]


def _since(records: Iterable[dict], action: str, after: str) -> list[dict]:
    return [r for r in records if r.get("action") == action and r.get("at", "") > after]


def _first_line(text: str, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _history_refusals(version: str, history: Sequence[ChampionChange], records: Sequence[dict]) -> list[str]:
    """Never champion; or rolled back from, rejected or failed deployment since it last became champion."""
    terms = [c for c in history if c.version == version]
    if not terms:
        return ["it was never @champion (no promotion or rollback on record made it champion)"]
    since = terms[-1].at
    refusals = [f"it was rolled back from at {c.at} by {c.actor}: {_first_line(c.reason)}"
                for c in history if c.action == ROLLBACK_ACTION and c.replaced == version and c.at > since]
    refusals += [f"it was rejected at {r['at']} by {r.get('actor')}: {_first_line(r.get('reason', ''))}"
                 for r in _since(records, REJECT_ACTION, since)]
    refusals += [f"its deployment failed at {r['at']}: {_first_line(r.get('reason', ''))}"
                 for r in _since(records, DEPLOY_FAILED_ACTION, since)]
    return refusals


def rollback_refusals(client: MlflowClient, model: str, version: str,
                      history: Sequence[ChampionChange] | None = None) -> list[str]:
    """Why ``version`` may not be a rollback target (empty: it may). Raises DeploymentError if it does not exist.

    Checked: retired; quarantined (version or run tag); training data that failed validation (a
    quarantined run with the same ``data_fingerprint``); ``gates.result`` not ``passed``; never
    ``@champion`` on record; rolled back from, rejected (``reject`` audit record) or failed deployment
    (``deploy_failed``) after it last became champion. Sources: the version's tags and audit
    records, its MLflow run, and :func:`include.promotion.registry.champion_history`.
    """
    found = _existing_version(client, model, version)
    history = champion_history(client, model) if history is None else history
    records = audit.read(client, model, version)
    return [*_lineage_refusals(client, found), *_gate_refusals(found), *_history_refusals(version, history, records)]


def plan_deployment(client: MlflowClient, model: str, version: str | None = None) -> DeploymentPlan:
    """Deploy ``@champion``; ``version``, when given, must be it. Its fallback is the champion before it.

    Refused (:class:`DeploymentError`, nothing changed): no ``@champion``; ``version`` is not the
    champion (deploying another version would bypass promotion); the champion is retired,
    quarantined or from data that failed validation; it did not pass its gates (unless a forced,
    audited rollback made it champion); or no promotion or rollback on record made it champion (the
    alias was moved by hand). The fallback is the previous champion on record when it may be
    rolled back to (:func:`rollback_refusals`), else None. It stays loaded beside the new version
    (``standby``) only when its version number is lower: Triton answers requests without a version
    with the highest loaded one.
    """
    champion = alias_version(client, model, CHAMPION)
    if champion is None:
        raise DeploymentError(f"{model} has no @{CHAMPION} to deploy")
    current = str(champion.version)
    if version is not None and str(version) != current:
        _existing_version(client, model, str(version))
        raise DeploymentError(
            f"{model} version {version} is not @{CHAMPION} (version {current}): deploy only serves @{CHAMPION}. "
            f"Promote it with {dag_id(Stage.PROMOTE, model)}, or roll back to it with {dag_id(Stage.ROLLBACK, model)}")
    history = champion_history(client, model)
    lineage = champion_lineage(history)
    refusals = _lineage_refusals(client, champion)
    terms = [c for c in history if c.version == current]
    if not lineage or lineage[-1] != current:
        on_record = f"the last champion on record is version {lineage[-1]}" if lineage else "no champion is on record"
        refusals.append(f"no recorded promotion or rollback made it @{CHAMPION} ({on_record}); "
                        f"was the alias moved by hand? Promote it with {dag_id(Stage.PROMOTE, model)}")
    if not (terms and terms[-1].forced):
        refusals += _gate_refusals(champion)
    elif _gate_refusals(champion):
        log.warning("%s version %s did not pass its gates; deploying it because a forced rollback made it "
                    "@%s at %s (%s)", model, current, CHAMPION, terms[-1].at, terms[-1].reason)
    if refusals:
        raise DeploymentError(f"{model} version {current} (@{CHAMPION}) cannot be deployed: {'; '.join(refusals)}")
    fallback = lineage[-2] if len(lineage) >= 2 else None
    if fallback is not None:
        problems = rollback_refusals(client, model, fallback, history)
        if problems:
            log.warning("%s version %s cannot be the fallback of version %s: %s", model, fallback, current,
                        "; ".join(problems))
            fallback = None
    standby = (fallback,) if fallback is not None and int(fallback) < int(current) else ()
    return DeploymentPlan(model=model, version=current, fallback=fallback, standby=standby)


# --- rollback --------------------------------------------------------------------------------


def _rollback_of_run(history: Sequence[ChampionChange], run_id: str | None) -> ChampionChange | None:
    done = [c for c in history if run_id is not None and c.action == ROLLBACK_ACTION and c.run_id == run_id]
    return done[-1] if done else None


def _default_target(model: str, champion: str, lineage: Sequence[str]) -> str:
    if not lineage or lineage[-1] != champion:
        on_record = f"the last champion on record is version {lineage[-1]}" if lineage else "no champion is on record"
        raise DeploymentError(
            f"{model} cannot choose a rollback target: @{CHAMPION} is version {champion} but {on_record} "
            f"(the alias was moved without a promotion or rollback); give target_version")
    if len(lineage) < 2:
        raise DeploymentError(f"{model} has no champion before version {champion} on record to roll back to "
                              "(the ones before it were rolled back from); give target_version")
    return lineage[-2]


def plan_rollback(
    client: MlflowClient, model: str, *, target: str | None, force: bool = False, reason: str = "",
    expected_champion: str | None = None, run_id: str | None = None,
) -> DeploymentPlan | None:
    """Decide a rollback of ``@champion`` to ``target``, or refuse it before anything moves.

    ``target`` None: the champion before the current one on record (:func:`include.promotion.registry.champion_lineage`):
    after a rollback from 2 to 1 that is the champion before 1, never 2 and never 1. Returns a plan
    whose ``replaced`` is None when nothing is to move (``target`` already is the champion, or this
    Airflow run already rolled back), and None when ``expected_champion`` is given and no longer is
    the champion (a stale request: nothing to do). Raises :class:`DeploymentError` naming the target
    and every reason it is refused (:func:`rollback_refusals`), unless ``force`` with a non-empty
    ``reason`` overrides them.
    """
    champion_mv = alias_version(client, model, CHAMPION)
    if champion_mv is None:
        raise DeploymentError(f"{model} has no @{CHAMPION}: there is nothing to roll back")
    champion = str(champion_mv.version)
    history = champion_history(client, model)
    done = _rollback_of_run(history, run_id)
    if done is not None and done.version == champion:
        log.info("Run %s already rolled %s back to version %s", run_id, model, champion)
        return DeploymentPlan(model=model, version=champion, fallback=None)
    if done is not None and done.replaced == champion:  # this run recorded the rollback, then stopped short
        log.info("Run %s recorded the rollback of %s from %s to %s: completing it", run_id, model, champion,
                 done.version)
        return DeploymentPlan(model=model, version=done.version, fallback=champion, standby=(champion,),
                              replaced=champion, force=done.forced)
    if expected_champion is not None and str(expected_champion) != champion:
        log.info("%s @%s is version %s, no longer %s: this rollback has nothing to do", model, CHAMPION, champion,
                 expected_champion)
        return None
    target = _default_target(model, champion, champion_lineage(history)) if target is None else str(target)
    if target == champion:
        log.info("%s @%s already is version %s: nothing to roll back", model, CHAMPION, target)
        return DeploymentPlan(model=model, version=target, fallback=None)
    refusals = rollback_refusals(client, model, target, history)  # also: the target exists
    if refusals and not force:
        raise DeploymentError(
            f"{model} version {target} cannot be rolled back to: {'; '.join(refusals)}. Nothing changed: "
            f"@{CHAMPION} stays version {champion}. In an emergency, force=true with a reason overrides these "
            "checks (audited)")
    if force and not (reason or "").strip():
        raise DeploymentError(f"{model}: a forced rollback to version {target} needs a reason (it goes into the "
                              "audit record)")
    if refusals:
        log.warning("FORCED rollback of %s to version %s overrides: %s", model, target, "; ".join(refusals))
    return DeploymentPlan(model=model, version=target, fallback=champion, standby=(champion,), replaced=champion,
                          force=force, overridden=tuple(refusals))


def rollback(
    client: MlflowClient, model: str, *, target: str | None, actor: str, reason: str, force: bool = False,
    expected_champion: str | None = None, dag_id: str | None = None, run_id: str | None = None,
    details: Mapping | None = None,
) -> RollbackResult:
    """Point ``@champion`` at ``target`` (default: the champion before it on record), if :func:`plan_rollback` allows.

    Refusals raise :class:`DeploymentError` before anything moves. The audit record (``rollback``,
    on both versions, with ``from_version``, ``to_version``, ``forced`` and the overridden checks)
    is written before the aliases move, so a retry of the same Airflow run completes a move that
    was cut short and writes no second record. Then ``rolled_back`` marks the replaced version and
    ``previous_champion`` becomes the next rollback target (removed when there is none).
    Idempotent: once ``@champion`` is the target, the same rollback changes nothing. With
    ``expected_champion``, a champion that moved meanwhile is refused.
    """
    plan = plan_rollback(client, model, target=target, force=force, reason=reason,
                         expected_champion=expected_champion, run_id=run_id)
    if plan is None:
        current = alias_version(client, model, CHAMPION)
        raise DeploymentError(f"{model} @{CHAMPION} moved from version {expected_champion} to "
                              f"{current.version if current else 'none'} meanwhile; nothing changed")
    if plan.replaced is None:
        previous = alias_version(client, model, PREVIOUS_CHAMPION)
        return RollbackResult(model, plan.version, None, changed=False,
                              previous_champion=str(previous.version) if previous else None)
    history = champion_history(client, model)
    done = _rollback_of_run(history, run_id)
    if done is None or (done.version, done.replaced) != (plan.version, plan.replaced):  # else: an earlier try wrote it
        record = audit.AuditRecord(
            action=ROLLBACK_ACTION, model=model, version=plan.version, actor=actor, reason=reason, dag_id=dag_id,
            run_id=run_id,
            details={"from_version": plan.replaced, "to_version": plan.version, "forced": bool(plan.overridden),
                     **({"overridden": "; ".join(plan.overridden)} if plan.overridden else {}), **(details or {})},
        )
        audit.write_on(client, record, [plan.version, plan.replaced])
        history = [*history, ChampionChange(record.at, plan.version, plan.replaced, ROLLBACK_ACTION, actor, reason,
                                            run_id, bool(plan.overridden))]
    because = Because(actor, reason, dag_id, run_id)
    move_alias(client, model, CHAMPION, plan.version, because)
    move_alias(client, model, ROLLED_BACK, plan.replaced, because)
    previous = set_previous_champion(client, model, champion_lineage(history), because)
    log.info("%s @%s: version %s -> %s; next rollback target: %s", model, CHAMPION, plan.replaced, plan.version,
             previous or "none")
    return RollbackResult(model, plan.version, plan.replaced, changed=True, previous_champion=previous)


def record_deployment(
    client: MlflowClient, plan: DeploymentPlan, parity: Mapping, *, actor: str, reason: str,
    dag_id: str | None = None, run_id: str | None = None, target: str = "triton",
) -> None:
    """A ``deploy`` audit record on the plan's version: it went live on ``target`` after passing ``parity``.

    ``details``: ``fallback``, ``standby`` (the plan's), ``parity`` (:func:`include.serving.onnx.check_parity`'s
    result) and ``target``.
    """
    audit.write(client, audit.AuditRecord(
        action=DEPLOY_ACTION, model=plan.model, version=plan.version, actor=actor, reason=reason, dag_id=dag_id,
        run_id=run_id, details={"fallback": plan.fallback, "standby": list(plan.standby), "parity": dict(parity),
                                "target": target}))


def record_deploy_failure(
    client: MlflowClient, model: str, version: str, *, actor: str, reason: str, dag_id: str | None = None,
    run_id: str | None = None, details: Mapping | None = None,
) -> None:
    """A ``deploy_failed`` audit record on ``version``: it may not be a rollback target until promoted again."""
    audit.write(client, audit.AuditRecord(action=DEPLOY_FAILED_ACTION, model=model, version=version, actor=actor,
                                          reason=reason, dag_id=dag_id, run_id=run_id, details=dict(details or {})))


# --- what Triton serves ----------------------------------------------------------------------


def triton_states(index: Iterable[Mapping], model: str) -> dict[str, str]:
    """``{version: state}`` of ``model`` from Triton's repository index (``POST /v2/repository/index``)."""
    return {str(entry["version"]): str(entry.get("state", "")) for entry in index
            if entry.get("name") == model and entry.get("version") not in (None, "")}


def _tagged_versions(client: MlflowClient, model: str) -> dict[str, str]:
    found: dict[str, str] = {}
    token = None
    while True:
        page = client.search_model_versions(f"name = '{model}'", max_results=SEARCH_PAGE, page_token=token)
        found.update((str(v.version), v.tags[SERVING_TAG]) for v in page if SERVING_TAG in v.tags)
        token = page.token
        if not token:
            return found


def ready_versions(states: Mapping[str, str]) -> list[str]:
    """The READY versions in ``states`` (:func:`triton_states`), lowest first: the last is the live one (Triton
    answers a request without a version with the highest version it has ready)."""
    return sorted((v for v, s in states.items() if s == READY and v.isdigit()), key=int)


def record_serving(client: MlflowClient, model: str, states: Mapping[str, str], *,
                   expected: str | None = None) -> str | None:
    """Make the ``serving.triton`` tags say what Triton serves; returns the live version (None: none is ready).

    ``states``: :func:`triton_states` of Triton's repository index. Live is the highest READY version
    (the one that answers requests without a version); other READY versions are ``standby``; a
    version tagged before that is not READY becomes ``unloaded``. Demotions are written before the
    new ``live`` tag, so at no time do two versions say ``live``. With ``expected``, a different live
    version raises :class:`DeploymentError` (after the tags are made true).
    """
    ready = ready_versions(states)
    live = ready[-1] if ready else None
    current = _tagged_versions(client, model)
    wanted = {v: UNLOADED for v in current}
    wanted.update({v: STANDBY for v in ready})
    if live is not None:
        wanted[live] = LIVE
    for version, value in sorted(wanted.items(), key=lambda item: item[1] == LIVE):
        if current.get(version) == value:
            continue
        try:
            client.set_model_version_tag(model, version, SERVING_TAG, value)
        except MlflowException as exc:
            log.warning("%s version %s is on Triton (%s) but not in the registry: %s", model, version, value, exc)
    log.info("%s on Triton: live %s, standby %s", model, live or "none", [v for v in ready if v != live] or "none")
    if expected is not None and live != str(expected):
        raise DeploymentError(f"Triton answers {model} requests with version {live or 'none'}, not version {expected} "
                              f"(ready: {ready or 'none'})")
    return live
