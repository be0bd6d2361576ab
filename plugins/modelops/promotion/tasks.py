"""Task functions of the promotion DAG: resolve the candidate → gates → (human approval) → move ``champion``."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from include.config import get_model_config
from modelops.context import actor, ids
from modelops.mlflow_hook import MlflowHook

log = logging.getLogger(__name__)

# mlflow is imported inside the tasks: this module is imported while DAGs are parsed.


def _candidate_from_events(events: Any) -> str | None:
    versions = [
        str(event.extra["version"])
        for asset_events in (events or {}).values()
        for event in asset_events
        if (event.extra or {}).get("version")
    ]
    return max(versions, key=int, default=None)


@task
def resolve_candidate(model: str, version: str | None = None, **context: Any) -> str:
    """The version to consider: the ``version`` param, else the triggering asset event, else ``@challenger``."""
    from include.promotion import registry

    client = MlflowHook().client
    if version:
        try:
            client.get_model_version(model, str(version))
        except Exception as exc:  # noqa: BLE001 - MLflow raises its generic exception for a missing version
            raise AirflowFailException(f"{model} has no version {version}: {exc}") from None
        return str(version)
    candidate = _candidate_from_events(context.get("triggering_asset_events"))
    if candidate is None:
        challenger = registry.alias_version(client, model, registry.CHALLENGER)
        if challenger is None:
            raise AirflowFailException(f"{model} has no @{registry.CHALLENGER} and no version was given")
        candidate = str(challenger.version)
    log.info("Candidate: %s version %s", model, candidate)
    return candidate


@task
def check_gates(model: str, version: str, **context: Any) -> str:
    """Evaluate every gate, record the results on the version; a failing gate stops the promotion."""
    from include.governance import audit
    from include.governance.gates import evaluate_gates
    from include.governance.history import passed_validation
    from include.promotion import registry

    config = get_model_config(model)
    client = MlflowHook().client
    if config.evidence is not None:  # the version carries its run's evidence tags (shap.top_features, calibration.method)
        from include.evaluation.evidence import tag_version

        tag_version(client, model, version)
    candidate = client.get_model_version(model, version)
    champion = registry.alias_version(client, model, registry.CHAMPION)
    if champion is not None and str(champion.version) == version:
        champion = None  # re-checking the live version: nothing to compare against
    fingerprint = (candidate.tags or {}).get("data_fingerprint")
    validated = passed_validation(model, fingerprint) if fingerprint else None
    report = evaluate_gates(
        config,
        candidate_metrics=registry.run_metrics(client, candidate) or {},
        candidate_tags=candidate.tags,
        champion_metrics=registry.run_metrics(client, champion),
        validation=validated.as_dict() if validated else None,
    )
    registry.record_gates(client, model, version, report)
    keys = ids(context)
    if not report.passed:
        audit.write(
            client,
            audit.AuditRecord(
                action="reject", model=model, version=version, actor=actor(context), reason=report.summary(),
                dag_id=keys["dag_id"], run_id=keys["run_id"],
                details={"gates": report.as_dicts(), "champion": str(champion.version) if champion else None},
            ),
        )
        raise AirflowFailException(f"{model} version {version} not promoted: {report.summary()}")
    log.info("%s version %s: %s", model, version, report.summary())
    return report.summary()


@task
def promote(model: str, version: str, gate_summary: str, **context: Any) -> dict[str, str | None]:
    """Point ``champion`` at the version (one call); the replaced champion becomes ``previous_champion``."""
    from include.promotion import registry
    from modelops.assets import champion_asset

    keys = ids(context)
    client = MlflowHook().client
    previous = registry.promote(
        client, model, version, actor=actor(context), reason=gate_summary,
        dag_id=keys["dag_id"], run_id=keys["run_id"],
    )
    # What the Assets view shows for this event: which version became champion, from which run.
    context["outlet_events"][champion_asset(model)].extra = {
        "model": model, "version": version, "previous_champion": previous,
        "run_id": client.get_model_version(model, version).run_id, "dag_run_id": keys["run_id"],
    }
    return {"champion": version, "previous_champion": previous}


# --- live evidence: the challenger in shadow or canary, then the shadow gate -------------------------


@task
def start_challenger(model: str, version: str, gate_summary: str, **context: Any) -> dict | None:
    """Put the candidate (it passed the offline gates) on live traffic beside the champion (``serving.challenger``)."""
    from include.promotion import registry
    from include.serving import shadow
    from modelops.serving.hooks import TritonHook

    config = get_model_config(model)
    client = MlflowHook().client
    champion = registry.alias_version(client, model, registry.CHAMPION)
    if champion is None or str(champion.version) == version:
        log.info("%s: no other champion to compare version %s with on live traffic", model, version)
        return None
    keys, hook = ids(context), TritonHook()
    return shadow.start(client, hook.client, hook.model_repository, config, version, actor=actor(context),
                        reason=f"passed the offline gates; compared with champion {champion.version} on live traffic",
                        dag_id=keys["dag_id"], run_id=keys["run_id"])


@task
def check_shadow_gate(model: str, version: str, evidence: dict, gate_summary: str, **context: Any) -> str:
    """Judge the live evidence; recorded on the version beside the offline gates. A failure stops the challenger."""
    import json

    from include.governance import audit
    from include.governance.gates import shadow_gate
    from include.promotion import registry
    from include.serving import shadow
    from modelops.serving.hooks import TritonHook

    config = get_model_config(model)
    client = MlflowHook().client
    champion = registry.alias_version(client, model, registry.CHAMPION)
    champion_version = None if champion is None or str(champion.version) == version else str(champion.version)
    result = shadow_gate(config, evidence, champion=champion_version)
    tags = client.get_model_version(model, version).tags or {}
    detail = [r for r in json.loads(tags.get("gates.detail") or "[]") if r.get("gate") != "shadow"]
    detail.append({"gate": result.gate, "passed": result.passed, "value": result.value,
                   "threshold": result.threshold, "detail": result.detail})
    client.set_model_version_tag(model, version, "gate.shadow", "passed" if result.passed else "failed")
    client.set_model_version_tag(model, version, "gates.detail", json.dumps(detail, default=str))
    client.set_model_version_tag(model, version, "gates.result",
                                 "passed" if all(r["passed"] for r in detail) else "failed")
    summary = f"{gate_summary}\n- {'PASS' if result.passed else 'FAIL'} shadow: {result.detail}"
    if result.passed:
        log.info("%s version %s: %s", model, version, result.detail)
        return summary
    keys, hook = ids(context), TritonHook()
    audit.write(client, audit.AuditRecord(
        action="reject", model=model, version=version, actor=actor(context), reason=summary,
        dag_id=keys["dag_id"], run_id=keys["run_id"], details={"gates": [result.__dict__], "evidence": evidence,
                                                               "champion": champion_version}))
    shadow.stop(client, hook.client, hook.model_repository, config, actor=actor(context), only_version=version,
                reason=f"version {version} failed the shadow gate", dag_id=keys["dag_id"], run_id=keys["run_id"])
    raise AirflowFailException(f"{model} version {version} not promoted: {result.detail}")
