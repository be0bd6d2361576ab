"""The MLflow model registry as the system of record: versions, tags and the aliases that decide what is live.

Aliases: ``challenger`` (the newest candidate), ``champion`` (live), ``previous_champion`` (what
rollback returns to). Stages are deprecated in MLflow and not used.

MLflow keeps no history of aliases (mlflow/mlflow#2169), so every alias this project moves goes
through :func:`move_alias` / :func:`remove_alias`, which record the move in the audit ledger
(``alias_set`` / ``alias_removed``); :mod:`include.governance.history` answers "which version was
``@champion`` at time T" from those records. :func:`champion_history` reads the ``promote`` and
``rollback`` records, the decisions behind the moves, for rollback's lineage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from include.governance import audit
from include.governance.gates import GateReport

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def ensure_registered_model(client: MlflowClient, name: str, description: str = "") -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        client.create_registered_model(name, description=description or None)


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _not_found(exc) or f"alias {alias} not found" in str(exc):
            return None
        raise


@dataclass(frozen=True)
class Because:
    """Why an alias moves and who moved it: what the ledger's alias record carries."""

    actor: str
    reason: str = ""
    dag_id: str | None = None
    run_id: str | None = None


def _ledger_alias(name: str, alias: str) -> str | None:
    from include.governance.history import current_aliases

    return current_aliases(name).get(alias)


def move_alias(client: MlflowClient, name: str, alias: str, version: str, because: Because) -> None:
    """Point ``alias`` of ``name`` at ``version`` in MLflow, and record the move in the audit ledger.

    The ``alias_set`` record (``details``: ``alias``, ``previous``) is written when the ledger's
    timeline does not already show ``alias`` at ``version``, so a retry after a crash between the
    two writes completes the record, and re-pointing an alias where it is writes nothing.
    """
    previous = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    if _ledger_alias(name, alias) != str(version):
        audit.write(None, audit.AuditRecord(
            action="alias_set", model=name, version=str(version), actor=because.actor, reason=because.reason,
            dag_id=because.dag_id, run_id=because.run_id,
            details={"alias": alias, "previous": str(previous.version) if previous else None}),
            discriminator=alias)


def remove_alias(client: MlflowClient, name: str, alias: str, because: Because) -> None:
    """Delete ``alias`` of ``name`` in MLflow (if set) and record ``alias_removed`` when the ledger shows it set."""
    current = alias_version(client, name, alias)
    if current is not None:
        client.delete_registered_model_alias(name, alias)
    recorded = _ledger_alias(name, alias)
    if recorded is not None or current is not None:
        audit.write(None, audit.AuditRecord(
            action="alias_removed", model=name, version=recorded or str(current.version), actor=because.actor,
            reason=because.reason, dag_id=because.dag_id, run_id=because.run_id, details={"alias": alias}),
            discriminator=alias)


def find_version_by_tag(client: MlflowClient, name: str, key: str, value: str) -> ModelVersion | None:
    versions = client.search_model_versions(f"name = '{name}' and tags.`{key}` = '{value}'")
    return max(versions, key=lambda v: int(v.version), default=None)


def version_for_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return max(versions, key=lambda v: int(v.version), default=None)


def run_metrics(client: MlflowClient, version: ModelVersion | None) -> dict[str, float] | None:
    if version is None or not version.run_id:
        return None
    return dict(client.get_run(version.run_id).data.metrics)


def register_challenger(
    client: MlflowClient,
    *,
    name: str,
    description: str,
    model_uri: str,
    run_id: str,
    tags: dict[str, str],
    actor: str,
    dag_id: str | None = None,
    airflow_run_id: str | None = None,
) -> ModelVersion:
    """Register the run's model as a new version (once per run) and point ``challenger`` at it."""
    ensure_registered_model(client, name, description)
    version = version_for_run(client, name, run_id)
    if version is None:
        # A tracking server accepts a logged model's URI (models:/<model_id>) as the source only with its
        # model_id; the embedded SQLite store does not check.
        logged = model_uri.removeprefix("models:/") if model_uri.startswith("models:/") else ""
        version = client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags,
                                              model_id=logged if logged and "/" not in logged else None)
        log.info("Registered %s version %s from run %s", name, version.version, run_id)
    else:
        log.info("Run %s is already registered as %s version %s; reusing it", run_id, name, version.version)
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
    move_alias(client, name, CHALLENGER, str(version.version),
               Because(actor, f"new candidate from run {run_id}", dag_id, airflow_run_id))
    audit.write(
        client,
        audit.AuditRecord(
            action="register", model=name, version=str(version.version), actor=actor,
            reason=f"new candidate from run {run_id}", dag_id=dag_id, run_id=airflow_run_id,
            details={"alias": CHALLENGER, "model_uri": model_uri},
        ),
    )
    return client.get_model_version(name, version.version)


def record_gates(client: MlflowClient, name: str, version: str, report: GateReport) -> None:
    """Gate outcomes as version tags: ``gate.<name>`` = passed/failed, plus the values as JSON."""
    for result in report.results:
        client.set_model_version_tag(name, version, f"gate.{result.gate}", "passed" if result.passed else "failed")
    client.set_model_version_tag(name, version, "gates.result", "passed" if report.passed else "failed")
    client.set_model_version_tag(name, version, "gates.detail", json.dumps(report.as_dicts(), default=str))


def promote(
    client: MlflowClient, name: str, version: str, *, actor: str, reason: str, dag_id: str | None = None,
    run_id: str | None = None, details: dict | None = None,
) -> str | None:
    """Move ``champion`` to ``version``; the champion it replaces becomes ``previous_champion``.

    Returns the version now at ``previous_champion``. Safe to retry, also after a crash half-way:
    the aliases are moved in an order that a retry completes, and the audit record is written once
    per Airflow run. Callers must serialise promotions per model (alias moves are last-writer-wins).
    """
    current = alias_version(client, name, CHAMPION)
    moved = current is None or str(current.version) != version
    because = Because(actor, reason, dag_id, run_id)
    if moved:
        if current is not None:
            move_alias(client, name, PREVIOUS_CHAMPION, str(current.version), because)
        move_alias(client, name, CHAMPION, version, because)
    else:
        log.info("%s version %s already is the champion", name, version)
        if _ledger_alias(name, CHAMPION) != version:  # a retry after a crash between the alias and its record
            move_alias(client, name, CHAMPION, version, because)
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        remove_alias(client, name, CHALLENGER, because)
    previous = alias_version(client, name, PREVIOUS_CHAMPION)
    previous_version = str(previous.version) if previous else None
    audited = run_id is not None and any(
        r["action"] == "promote" and r.get("run_id") == run_id for r in audit.read(client, name, version)
    )
    if not audited:  # a retry of a run that crashed after moving the aliases still gets its record
        audit.write(
            client,
            audit.AuditRecord(
                action="promote", model=name, version=version, actor=actor, reason=reason, dag_id=dag_id,
                run_id=run_id, details={"previous_champion": previous_version, "changed": moved, **(details or {})},
            ),
        )
    return previous_version


ROLLBACK_ACTION = "rollback"
PROMOTE_ACTION = "promote"


@dataclass(frozen=True)
class ChampionChange:
    """One recorded move of ``@champion`` (or a promotion run confirming it)."""

    at: str  # UTC time of the record, ISO 8601 with microseconds ("2026-11-30T10:00:00.000000Z")
    version: str  # the version that is @champion after the change
    replaced: str | None  # the champion it replaced (None: the first one, or nothing moved)
    action: str  # "promote" | "rollback"
    actor: str
    reason: str
    run_id: str | None = None  # the Airflow run that made the change
    forced: bool = False  # a rollback that overrode the target checks (``force``)


def champion_history(client: MlflowClient, name: str) -> list[ChampionChange]:
    """Every recorded change of ``name``'s ``@champion``, oldest first.

    Source: the audit records on the model's versions (:func:`include.governance.audit.read_model`):
    ``promote`` records (the version they are on became champion; ``details.previous_champion`` is
    the one it replaced when ``details.changed``) and ``rollback`` records (``details.to_version``
    replaced ``details.from_version``). A rollback record stored on both versions counts once. The
    governance ledger replaces this function; callers only rely on its result.
    """
    changes: dict[tuple, ChampionChange] = {}
    for record in audit.read_model(client, name):
        details = record.get("details") or {}
        if record["action"] == PROMOTE_ACTION and record.get("version") is not None:
            moved = details.get("changed", True)
            replaced = details.get("previous_champion") if moved else None
            change = ChampionChange(record["at"], str(record["version"]), _text(replaced), PROMOTE_ACTION,
                                    record.get("actor", ""), record.get("reason", ""), record.get("run_id"))
            key: tuple = (PROMOTE_ACTION, change.version, change.at)
        elif record["action"] == ROLLBACK_ACTION and details.get("to_version") is not None:
            change = ChampionChange(record["at"], str(details["to_version"]), _text(details.get("from_version")),
                                    ROLLBACK_ACTION, record.get("actor", ""), record.get("reason", ""),
                                    record.get("run_id"), bool(details.get("forced", False)))
            # one event, one record per version it concerns (older code wrote them a moment apart)
            key = (ROLLBACK_ACTION, change.version, change.replaced, change.run_id or change.at)
        else:
            continue
        changes.setdefault(key, change)
    return sorted(changes.values(), key=lambda c: c.at)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def champion_lineage(history: Sequence[ChampionChange]) -> list[str]:
    """The champions a rollback can step back through, oldest first; the last is the current champion.

    A promotion puts its version on top; a rollback steps down to the latest term of its target
    (or, for a target that was never below, replaces the top with it), and a version that was
    rolled back from leaves the lineage until it is promoted again. So the second-to-last entry is
    the next rollback target: after a rollback from 2 to 1 it is the champion before 1, never 2.
    """
    lineage: list[str] = []
    for change in history:
        if change.action == ROLLBACK_ACTION:
            if change.version in lineage:
                del lineage[len(lineage) - lineage[::-1].index(change.version):]
            else:
                lineage.append(change.version)
            if change.replaced is not None and change.replaced != change.version:
                lineage = [v for v in lineage if v != change.replaced]
        elif not lineage or lineage[-1] != change.version:
            lineage.append(change.version)
    return lineage


def set_previous_champion(client: MlflowClient, name: str, lineage: Sequence[str], because: Because) -> str | None:
    """Point ``previous_champion`` at the lineage's second-to-last version, or remove it when there is none."""
    previous = lineage[-2] if len(lineage) >= 2 else None
    if previous is not None:
        move_alias(client, name, PREVIOUS_CHAMPION, previous, because)
    else:
        remove_alias(client, name, PREVIOUS_CHAMPION, because)
    return previous
