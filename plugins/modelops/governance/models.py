"""Response bodies of the governance API (:mod:`modelops.governance.routes`): the audit ledger's answers.

The shapes follow :mod:`include.governance.ledger` (``Entry.as_dict()``), :mod:`include.governance.history`
(``AliasTerm``, ``version_lineage``) and :mod:`include.governance.integrity` (``VerifyReport.as_dict()``).
Times are the ledger's: UTC, ISO 8601 with microseconds and ``Z`` (``2026-11-20T10:00:00.000000Z``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LedgerRecord(BaseModel):
    """One audit ledger record as stored, with the fields of its hash chain."""

    seq: int = Field(description="Position in the chain, from 1.")
    at: str = Field(description="When it happened (UTC, ISO 8601).")
    actor: str = Field(description='Who or what: a user name, "scheduler", "asset:<uri>", "drift-webhook".')
    model: str
    version: str | None = Field(description="The version the record is about, if any.")
    versions: list[str] = Field(description="Every version it concerns (`version` first).")
    action: str = Field(description='e.g. "register", "alias_set", "promote", "deploy", "rollback", "retire".')
    reason: str
    details: dict[str, Any] | str = Field(description="A JSON object (text only when a stored row was tampered with).")
    dag_id: str | None = Field(description="The Airflow DAG whose run wrote it.")
    run_id: str | None = Field(description="The Airflow run that wrote it.")
    idempotency_key: str | None = Field(description='"sha256:<hex>": a retried task writes the record once.')
    prev_hash: str = Field(description="SHA-256 (hex) of the record before it; 64 zeros for the first.")
    hash: str = Field(description="SHA-256 (hex) of `prev_hash` and the record's canonical content.")


class AliasTerm(BaseModel):
    """One stretch of time during which `alias` pointed at `version`."""

    alias: str
    version: str
    start: str = Field(description="When the alias was set to the version (UTC, ISO 8601).")
    end: str | None = Field(description="When it moved away or was removed; null: it still points there.")
    set_by: int = Field(description="`seq` of the ledger record that began the term.")
    ended_by: int | None = Field(description="`seq` of the ledger record that ended it.")
    actor: str
    reason: str
    run_id: str | None


class AliasTimeline(BaseModel):
    """Every term of the model's aliases (or of one alias), in the order they began."""

    model: str
    alias: str | None = Field(description="The alias asked for; null: every alias.")
    terms: list[AliasTerm]
    current: dict[str, str] = Field(description="Where each alias of the timeline points now: {alias: version}.")


class AliasAt(BaseModel):
    """Which version an alias pointed at, at one time."""

    model: str
    alias: str
    time: str = Field(description="The time asked about, in UTC (ISO 8601). A move at exactly that time counts "
                                  "as done.")
    version: str


class ModelHistory(BaseModel):
    """What happened to a model, oldest first (alias moves only when asked: see the aliases route)."""

    model: str
    since: str | None = Field(description="Records from this time (inclusive, UTC); null: from the first.")
    actions: list[str] | None = Field(description="The actions asked for; null: every action.")
    records: list[LedgerRecord]


class Lineage(BaseModel):
    """Everything on record about one model version: what it was built from and what happened to it."""

    model_config = ConfigDict(extra="allow")

    model: str
    version: str
    source: str | None = Field(None, description="The version's artifact source in the registry.")
    created: int | None = Field(None, description="Registration time, Unix milliseconds (MLflow).")
    data: dict[str, str | None] = Field(description="`dataset_uri`, `data_fingerprint`, `schema_hash`.")
    validation: list[LedgerRecord] = Field(description="Validation records of its training data's fingerprint.")
    training_run: dict[str, Any] = Field(description="The training run: id, status, metrics, params, code commit…")
    gates: dict[str, Any] = Field(description="The promotion gates' result and values recorded on the version.")
    approvals: list[LedgerRecord]
    deployments: list[LedgerRecord]
    alias_terms: list[AliasTerm]
    hours_as_champion: float
    retirement: list[LedgerRecord]
    compliance: dict[str, str] = Field(description="The version's `compliance.*` tags.")
    records: list[LedgerRecord] = Field(description="Every ledger record that concerns the version.")


class ChainProblem(BaseModel):
    """One place the hash chain breaks."""

    kind: str = Field(description="edited, inserted, deleted, reordered, truncated or anchor_mismatch.")
    seq: int | None = Field(description="The record named (for `deleted`: the record after the gap).")
    detail: str


class VerifyReport(BaseModel):
    """Whether the ledger is intact: its hash chain recomputed, and checked against the anchors kept in MLflow."""

    ok: bool
    checked: int = Field(description="Records walked.")
    head_seq: int | None
    head_hash: str | None
    anchors_checked: int = Field(0, description="Head anchors the chain was checked against.")
    anchors_found: bool = Field(
        description="Whether the ledger's anchors run exists in MLflow. Without it only the chain itself is "
                    "checked, which cannot find a truncated tail or a fully recomputed chain.")
    problems: list[ChainProblem] = Field(description="Every break, in chain order; empty when `ok`.")
    summary: str = ""


class ErrorResponse(BaseModel):
    detail: str
