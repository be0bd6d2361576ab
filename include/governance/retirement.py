"""Monthly retirement of model versions, and their restore: which versions go, and each step, audited.

Which versions (:func:`candidates`), from the model's ``retirement:`` settings
(:class:`include.config.RetirementConfig`), each rule giving its reason:

* ``superseded``: the version has held none of ``@champion``, ``@previous_champion``, ``@challenger``
  for more than ``superseded_days``. Since when comes from the audit ledger's alias timeline
  (:func:`include.governance.history.alias_timeline`: the end of its last term), or, for a version
  that never held one, its creation time in the registry;
* ``quality_floor``: the mean of the KPI ``quality_floor.kpi`` over the version's last
  ``quality_floor.hours`` monitored hours (the monitoring run's per-hour ``kpi.<name>`` points whose
  ``model_version`` point names the version: :mod:`include.monitoring.history`) is below
  ``quality_floor.minimum``; a version with fewer assessed hours is not judged;
* ``unusable_data``: the version or its training run carries ``unusable_data_tag`` with the value
  ``true``, ``yes`` or ``1``;
* ``manual``: the version is listed in ``manual``.

Never a candidate, whatever the rules (the plan lists them as ``protected``, with why and which rules
they matched): the versions ``@champion``, ``@previous_champion`` and ``@challenger`` point at in MLflow,
any version Triton has loaded or is configured to load (``served_versions``, from the caller:
:func:`served_on_triton`), and a version already retired (tag ``retired``,
:data:`include.promotion.rollout.RETIRED_TAG`).

The steps, each safe to repeat and each writing an audit-ledger record (:mod:`include.governance.audit`):

* :func:`record_plan` → ``retire_planned``: the plan (with ``dry_run`` true it is all a run does);
* :func:`archive_version` → ``archived``: the version collected with its ledger records
  (``extra/ledger.jsonl``) and evidence pack (``extra/evidence.zip``) and uploaded
  (:mod:`include.governance.archive`);
* :func:`verify_archive` → ``archive_verified``: every file against the store's SHA-256, and the
  stored manifest against the one archived;
* :func:`unload_version` → ``unloaded``: the exported files of a version Triton has not loaded are
  removed from its model repository (one it has loaded is refused);
* :func:`mark_retired` → ``retired``: only after a verified archive; the aliases left on it are
  removed, and it is tagged ``retired=true``, ``retired.archive``, ``retired.at``, ``retired.reason``;
* :func:`restore_version` → ``restore``: the archive back as a NEW version, tagged ``restored_from``.

A step that fails writes ``retire_failed`` (``details.step``, ``details.error``) and raises; it has
changed nothing in the registry: a failed or partial upload leaves no manifest in the store, so the
archive does not verify, the version is not marked retired, and a retry sends what is missing. The
records before ``retired`` are written to the ledger only (no ``audit.*`` tag on the version), so a
version stays untouched in the registry until it is retired. A record of one Airflow run, action,
model, version and step is written once however often a task retries; outside Airflow, once per
archive content.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.governance import archive, audit
from include.governance.archive import ArchiveError, ArchiveStore, Manifest, archive_prefix
from include.governance.history import (
    ARCHIVE_VERIFIED,
    ARCHIVED,
    RESTORE,
    RETIRE_FAILED,
    RETIRE_PLANNED,
    RETIRED,
    RETIREMENT_ACTIONS,
    UNLOADED,
    alias_timeline,
    evidence_pack,
    jsonl_lines,
)
from include.governance.ledger import Entry, Ledger, canonical, default_ledger, utc_now
from include.promotion.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, Because, remove_alias
from include.promotion.rollout import RETIRED_TAG

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from include.config import ModelConfig
    from include.monitoring.alerts import Alert
    from include.serving.triton.client import TritonClient

log = logging.getLogger(__name__)

# ledger actions (named in include.governance.history, which reads them back)
ACTIONS = RETIREMENT_ACTIONS

# version tags a retirement writes (``retired`` last, so a version that says it is retired has the others)
RETIRED_ARCHIVE_TAG = "retired.archive"  # "<store uri>/<model>/<version>"
RETIRED_AT_TAG = "retired.at"  # UTC, ISO 8601 (the ledger's format)
RETIRED_REASON_TAG = "retired.reason"
MAX_TAG_VALUE = 5000

# the rules
SUPERSEDED, QUALITY_FLOOR, UNUSABLE_DATA, MANUAL = "superseded", "quality_floor", "unusable_data", "manual"
RULES = (SUPERSEDED, QUALITY_FLOOR, UNUSABLE_DATA, MANUAL)

PROTECTED_ALIASES = (CHAMPION, PREVIOUS_CHAMPION, CHALLENGER)
TRUE_VALUES = frozenset({"true", "yes", "1"})
LEDGER_FILE = "ledger.jsonl"  # under the archive's extra/
EVIDENCE_FILE = "evidence.zip"
SEARCH_PAGE = 1000
MAX_ERROR = 2000  # characters of an error kept in a retire_failed record
# Triton's version states: UNAVAILABLE is "not loaded" (never loaded, unloaded, failed); anything else
# (READY, LOADING, UNLOADING) counts as loaded.
NOT_LOADED = "UNAVAILABLE"
_VERSIONS_LISTED = re.compile(r"version_policy:\s*\{\s*specific:\s*\{\s*versions:\s*\[([^\]]*)\]")


class RetirementError(RuntimeError):
    """A retirement step refused or could not act; nothing was retired. The message names the version and why."""


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """One rule that makes a version a candidate: ``rule`` (one of :data:`RULES`) and ``detail`` in words."""

    rule: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "detail": self.detail}


@dataclass(frozen=True)
class Candidate:
    """A version the rules retire, with every rule that applies."""

    version: str
    reasons: tuple[Reason, ...]

    @property
    def reason_text(self) -> str:
        """``superseded: ...; manual: ...``: what the ``retired.reason`` tag says."""
        return "; ".join(f"{r.rule}: {r.detail}" for r in self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "reasons": [r.as_dict() for r in self.reasons]}


@dataclass(frozen=True)
class Protected:
    """A version that is never retired now: ``why`` (e.g. ``@champion``, ``loaded on Triton (READY)``),
    and ``matched``: the rules that would otherwise have retired it."""

    version: str
    why: tuple[str, ...]
    matched: tuple[Reason, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "why": list(self.why), "matched": [r.as_dict() for r in self.matched]}


@dataclass(frozen=True)
class RetirementPlan:
    """What :func:`candidates` decided for ``model`` at ``evaluated_at`` (UTC, the ledger's format).

    ``unknown``: versions listed in ``manual`` that the registry does not have. Passed between
    Airflow tasks as :meth:`as_dict`.
    """

    model: str
    evaluated_at: str
    candidates: tuple[Candidate, ...] = ()
    protected: tuple[Protected, ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def versions(self) -> list[str]:
        """The candidates' versions, in version order."""
        return [c.version for c in self.candidates]

    def candidate(self, version: str) -> Candidate | None:
        return next((c for c in self.candidates if c.version == str(version)), None)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "evaluated_at": self.evaluated_at,
                "candidates": [c.as_dict() for c in self.candidates],
                "protected": [p.as_dict() for p in self.protected], "unknown": list(self.unknown)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetirementPlan:
        """The plan from :meth:`as_dict` (as an XCom returns it)."""
        def reasons(items: Sequence[Mapping]) -> tuple[Reason, ...]:
            return tuple(Reason(str(r["rule"]), str(r["detail"])) for r in items or ())

        return cls(
            model=str(data["model"]), evaluated_at=str(data["evaluated_at"]),
            candidates=tuple(Candidate(str(c["version"]), reasons(c.get("reasons"))) for c in data.get("candidates") or ()),
            protected=tuple(Protected(str(p["version"]), tuple(p.get("why") or ()), reasons(p.get("matched")))
                            for p in data.get("protected") or ()),
            unknown=tuple(str(u) for u in data.get("unknown") or ()))


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in TRUE_VALUES


def _retired(tags: Mapping[str, str]) -> bool:
    """As :func:`include.promotion.rollout.rollback_refusals` reads the tag: any value but empty/false/0/no."""
    value = tags.get(RETIRED_TAG)
    return value is not None and value.strip().lower() not in ("", "false", "0", "no")


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def all_versions(client: MlflowClient, model: str) -> list[ModelVersion]:
    """Every registered version of ``model`` (none when it is not registered), in version order."""
    found: list[ModelVersion] = []
    token = None
    while True:
        page = client.search_model_versions(f"name = '{model}'", max_results=SEARCH_PAGE, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return sorted(found, key=lambda v: int(v.version))


def registry_aliases(client: MlflowClient, model: str) -> dict[str, str]:
    """``{alias: version}`` of ``model`` in MLflow (empty when the model is not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(model).aliases or {}
    except MlflowException:
        return {}
    return {str(alias): str(version) for alias, version in dict(aliases).items()}


def _served(served_versions: Collection[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(served_versions, Mapping):
        return {str(v): str(why) for v, why in served_versions.items()}
    return {str(v): "loaded on Triton" for v in served_versions}


def _superseded(version: ModelVersion, terms: Sequence, now: datetime, days: float | None) -> Reason | None:
    if days is None:
        return None
    own = [t for t in terms if t.version == str(version.version)]
    if any(t.end is None for t in own):  # the ledger says it still holds one
        return None
    if own:
        last = max(own, key=lambda t: t.end)
        since, what = _parse(last.end), f"its last alias term (@{last.alias}) ended"
    else:
        since = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)
        what = "it never held an alias; registered"
    idle = now - since
    if idle <= timedelta(days=days):
        return None
    return Reason(SUPERSEDED, f"{what} {since.strftime('%Y-%m-%dT%H:%M:%SZ')}, {idle.total_seconds() / 86400:.1f} days "
                              f"before this evaluation (more than {days:g})")


def _metric_points(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """``{step: value}`` of a metric; the last write of a step wins (re-assessed hours)."""
    from mlflow.exceptions import MlflowException

    try:
        points = client.get_metric_history(run_id, key)
    except MlflowException:
        return {}
    return {p.step: p.value for p in sorted(points, key=lambda p: p.timestamp)}


def monitored_kpi(client: MlflowClient, config: ModelConfig, kpi: str) -> dict[str, list[tuple[int, float]]]:
    """``{version: [(hour step, kpi value), ...]}`` oldest first, from the model's monitoring run.

    The monitoring run (:func:`include.monitoring.history.monitoring_run`; found, never created here)
    holds one ``kpi.<kpi>`` point and one ``model_version`` point per assessed hour (step = hours since
    the epoch); an hour counts for the version its ``model_version`` point names. No monitoring run:
    ``{}``.
    """
    from include import tracking
    from include.monitoring.history import KIND_TAG, MODEL_TAG
    from include.monitoring.kpis import KPI_PREFIX

    run_id = tracking.find_run(client, config.experiment_name, {KIND_TAG: "monitoring", MODEL_TAG: config.name})
    if run_id is None:
        return {}
    served = _metric_points(client, run_id, "model_version")
    values = _metric_points(client, run_id, f"{KPI_PREFIX}{kpi}")
    hours: dict[str, list[tuple[int, float]]] = {}
    for step in sorted(values):
        if step in served:
            hours.setdefault(str(int(served[step])), []).append((step, values[step]))
    return hours


def _below_floor(hours: Sequence[tuple[int, float]], kpi: str, minimum: float, count: int) -> Reason | None:
    if len(hours) < count:
        return None  # not enough assessed hours to judge
    last = hours[-count:]
    mean = sum(v for _, v in last) / count
    if mean >= minimum:
        return None
    until = datetime.fromtimestamp(last[-1][0] * 3600, tz=UTC).strftime("%Y-%m-%dT%H:00Z")
    return Reason(QUALITY_FLOOR, f"mean {kpi} {mean:.4g} over its last {count} monitored hours (to {until}) "
                                 f"is below the floor {minimum:g}")


def _unusable(client: MlflowClient, version: ModelVersion, tag: str) -> Reason | None:
    from mlflow.exceptions import MlflowException

    if _is_true(version.tags.get(tag)):
        return Reason(UNUSABLE_DATA, f"the version carries {tag}={version.tags[tag]}")
    if version.run_id:
        try:
            run_tags = client.get_run(version.run_id).data.tags
        except MlflowException:
            return None
        if _is_true(run_tags.get(tag)):
            return Reason(UNUSABLE_DATA, f"its training run {version.run_id} carries {tag}={run_tags[tag]}")
    return None


def candidates(
    client: MlflowClient, config: ModelConfig, *, served_versions: Collection[str] | Mapping[str, str],
    now: datetime, ledger: Ledger | None = None,
) -> RetirementPlan:
    """The versions of ``config``'s model the retirement rules retire now, and the ones protected from it.

    ``config``: the model's :class:`include.config.ModelConfig` (its ``retirement:`` section, its
    monitoring KPIs and experiment). ``served_versions``: the versions Triton has loaded, as a set or
    as ``{version: why}`` (:func:`served_on_triton`). ``now``: the evaluation time (a naive datetime is
    UTC). Rules and protections: the module docstring. Reads the registry, the training runs' tags,
    the monitoring run's metrics and the ledger's alias records; writes nothing.
    """
    model, settings = config.name, config.retirement
    now = _utc(now)
    served = _served(served_versions)
    aliases = registry_aliases(client, model)
    held: dict[str, list[str]] = {}
    for alias in PROTECTED_ALIASES:
        if alias in aliases:
            held.setdefault(aliases[alias], []).append(alias)
    terms = [t for t in alias_timeline(model, ledger=ledger) if t.alias in PROTECTED_ALIASES]
    floor = settings.quality_floor
    monitored = monitored_kpi(client, config, floor.kpi) if floor is not None else {}
    manual = {str(v).strip() for v in settings.manual}

    chosen: list[Candidate] = []
    protected: list[Protected] = []
    versions = all_versions(client, model)
    for mv in versions:
        version, tags = str(mv.version), dict(mv.tags or {})
        why = [f"@{alias}" for alias in held.get(version, [])]
        if version in served:
            why.append(served[version])
        if _retired(tags):
            why.insert(0, f"already retired ({tags.get(RETIRED_ARCHIVE_TAG) or 'no archive recorded'})")
            protected.append(Protected(version, tuple(why)))
            continue
        reasons = [r for r in (
            _superseded(mv, terms, now, settings.superseded_days),
            _below_floor(monitored.get(version, []), floor.kpi, floor.minimum, floor.hours) if floor else None,
            _unusable(client, mv, settings.unusable_data_tag),
            Reason(MANUAL, "listed in retirement.manual") if version in manual else None,
        ) if r is not None]
        if why:
            protected.append(Protected(version, tuple(why), tuple(reasons)))
        elif reasons:
            chosen.append(Candidate(version, tuple(reasons)))
    known = {str(mv.version) for mv in versions}
    plan = RetirementPlan(model=model, evaluated_at=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), candidates=tuple(chosen),
                          protected=tuple(protected), unknown=tuple(sorted(manual - known, key=_version_order)))
    log.info("%s retirement plan: candidates %s; protected %s; unknown manual entries %s", model,
             plan.versions or "none", [p.version for p in plan.protected] or "none", list(plan.unknown) or "none")
    return plan


def _version_order(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 62, text)


# --- what Triton serves ----------------------------------------------------------------------


def listed_versions(repository: Path | str, model: str) -> list[str]:
    """The versions ``<repository>/<model>/config.pbtxt`` lists to load (``version_policy: specific``); [] without one.

    Triton loads them on the next load request (a deployment, a restart): they count as served.
    """
    path = Path(repository) / model / "config.pbtxt"
    try:
        text = path.read_text()
    except OSError:
        return []
    match = _VERSIONS_LISTED.search(text)
    if match is None:
        return []
    return [v.strip() for v in match.group(1).split(",") if v.strip()]


def served_on_triton(triton: TritonClient, repository: Path | str, model: str) -> dict[str, str]:
    """``{version: why}`` of the versions of ``model`` Triton serves or will: protected from retirement.

    From Triton's repository index (``POST /v2/repository/index``: a version in any state but
    ``UNAVAILABLE`` is loaded, loading or unloading) and from the model's ``config.pbtxt`` in
    ``repository`` (:func:`listed_versions`). Raises
    :class:`include.serving.triton.client.TritonError` when Triton does not answer: then nobody can
    tell what is loaded, and nothing may be retired.
    """
    from include.promotion.rollout import triton_states

    served: dict[str, str] = {}
    for version, state in triton_states(triton.repository_index(), model).items():
        if state and state != NOT_LOADED:
            served[version] = f"loaded on Triton ({state})"
    for version in listed_versions(repository, model):
        served.setdefault(version, "listed in Triton's config.pbtxt (it loads on the next load of the model)")
    return served


# --- the ledger records ----------------------------------------------------------------------


def _key(because: Because, action: str, model: str, versions: Sequence[str], discriminator: str | None) -> str:
    """As :func:`include.governance.ledger.idempotency_key`, also without an Airflow run (then per discriminator)."""
    payload = {"dag_id": because.dag_id, "run_id": because.run_id, "action": action, "model": model,
               "versions": list(versions), "discriminator": discriminator}
    return "sha256:" + hashlib.sha256(canonical(payload)).hexdigest()


def _record(client: MlflowClient | None, action: str, model: str, version: str | None, because: Because, *,
            reason: str, details: Mapping[str, Any], discriminator: str | None, versions: Sequence[str] = (),
            ledger: Ledger | None = None) -> dict:
    """One ledger record (tagged on the versions only when ``client`` is given); written once per key."""
    concerned = [v for v in dict.fromkeys([*([version] if version else []), *versions])]
    record = audit.AuditRecord(action=action, model=model, version=version, actor=because.actor, reason=reason,
                               dag_id=because.dag_id, run_id=because.run_id, details=dict(details))
    return audit.write(client, record, versions=concerned,
                       key=_key(because, action, model, concerned, discriminator), ledger=ledger)


def _records(model: str, version: str, action: str, ledger: Ledger | None) -> list[Entry]:
    return (ledger or default_ledger()).records(model=model, version=str(version), actions=(action,))


@contextmanager
def _step(model: str, version: str, step: str, because: Because, attempt: int | None,
          ledger: Ledger | None) -> Iterator[None]:
    """Run a step; on any error write ``retire_failed`` (ledger only) and re-raise."""
    try:
        yield
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        log.error("%s version %s: retirement step %s failed: %s", model, version, step, error)
        try:
            _record(None, RETIRE_FAILED, model, version, because, reason=f"{step} failed: {error.splitlines()[0]}",
                    details={"step": step, "error": error, "attempt": attempt},
                    discriminator=f"{step}#{attempt}" if attempt is not None else f"{step}:{error}", ledger=ledger)
        except Exception:  # the original error matters more than the record of it
            log.exception("%s version %s: could not record the failure of %s", model, version, step)
        raise


def record_plan(plan: RetirementPlan, *, dry_run: bool, because: Because, ledger: Ledger | None = None) -> dict:
    """Write the plan as one ``retire_planned`` record (ledger only: no version tag), concerning every candidate.

    ``details``: ``dry_run``, ``evaluated_at``, ``candidates`` (version, reasons), ``protected``
    (version, why, matched rules), ``unknown``. Once per Airflow run; outside one, once per evaluation.
    """
    what = f"{len(plan.candidates)} versions to retire" if plan.candidates else "nothing to retire"
    reason = f"{'dry run: ' if dry_run else ''}{what}" + (f" ({', '.join(plan.versions)})" if plan.candidates else "")
    versions = plan.versions
    return _record(None, RETIRE_PLANNED, plan.model, versions[0] if versions else None, because, reason=reason,
                   details={"dry_run": bool(dry_run), **plan.as_dict()}, versions=versions,
                   discriminator=None if because.run_id else plan.evaluated_at, ledger=ledger)


# --- archive and verify ----------------------------------------------------------------------


def archive_uri(store: ArchiveStore, model: str, version: str) -> str:
    """Where ``model`` ``version`` is archived: ``<store uri>/<model>/<version>``."""
    return f"{store.uri}/{archive_prefix(model, version)}"


def _archive_state(store: ArchiveStore, prefix: str) -> tuple[Manifest | None, bool]:
    """(the stored archive's manifest when it verifies, whether the store holds a manifest at all)."""
    try:
        return archive.verify(store, prefix), True
    except ArchiveError as exc:
        held = store.exists(f"{prefix}/{archive.MANIFEST}")
        if held:
            log.warning("The archive %s/%s does not verify (%s): it is collected and uploaded again", store.uri,
                        prefix, exc)
        return None, held


def version_extra(client: MlflowClient, model: str, version: str, *, ledger: Ledger | None = None) -> dict[str, bytes]:
    """What the archive keeps beside the version: ``ledger.jsonl`` (its ledger records, hash-chained fields
    included: :func:`include.governance.history.jsonl_lines`) and ``evidence.zip``
    (:func:`include.governance.history.evidence_pack`)."""
    entries = (ledger or default_ledger()).records(model=model, version=str(version))
    return {LEDGER_FILE: "".join(jsonl_lines(entries)).encode(),
            EVIDENCE_FILE: evidence_pack(client, model, str(version), ledger=ledger)}


def archive_version(
    client: MlflowClient, store: ArchiveStore, model: str, version: str, *, because: Because,
    attempt: int | None = None, ledger: Ledger | None = None,
) -> dict[str, Any]:
    """Archive ``model`` ``version`` in ``store`` under ``<model>/<version>``; an ``archived`` record.

    A complete archive already there (it verifies) is kept (``reused``). Otherwise the version is
    collected into a temporary folder (:func:`include.governance.archive.collect`, with
    :func:`version_extra`) and uploaded (:func:`include.governance.archive.upload`: files the store
    already holds are not sent again; the manifest goes last); a stored manifest that does not verify
    is replaced. Returns ``{"archive", "prefix", "manifest_sha256", "files", "bytes", "absent", "reused"}``.
    Raises :class:`include.governance.archive.ArchiveError` (after a ``retire_failed`` record) when the
    version cannot be collected or the store refuses a file; the registry is not changed.
    """
    version = str(version)
    prefix = archive_prefix(model, version)
    with _step(model, version, "archive", because, attempt, ledger):
        manifest, held = _archive_state(store, prefix)
        reused = manifest is not None
        if manifest is None:
            with tempfile.TemporaryDirectory(prefix="modelops-retire-") as tmp:
                workdir = Path(tmp) / "archive"
                archive.collect(client, model, version, workdir, extra=version_extra(client, model, version,
                                                                                      ledger=ledger))
                manifest = archive.upload(store, prefix, workdir, replace=held)
        result = {"archive": archive_uri(store, model, version), "prefix": prefix, "manifest_sha256": manifest.sha256,
                  "files": len(manifest.files), "bytes": sum(f.size for f in manifest.files),
                  "absent": list(manifest.absent), "reused": reused}
        _record(None, ARCHIVED, model, version, because,
                reason=f"archived to {result['archive']} ({result['files']} files, {result['bytes']} bytes)",
                details=result, discriminator=manifest.sha256, ledger=ledger)
    return result


def _latest(entries: Sequence[Entry], uri: str) -> Entry | None:
    matching = [e for e in entries if e.details.get("archive") == uri]
    return matching[-1] if matching else None


def verify_archive(
    client: MlflowClient | None, store: ArchiveStore, model: str, version: str, *, because: Because,
    attempt: int | None = None, ledger: Ledger | None = None,
) -> dict[str, Any]:
    """Check the archive of ``model`` ``version``; an ``archive_verified`` record. ``client`` is not used.

    Every file the stored manifest lists is checked against the store's SHA-256
    (:func:`include.governance.archive.verify`), and the stored manifest against the one the last
    ``archived`` record names (``manifest_sha256``). Returns ``{"archive", "manifest_sha256", "files"}``.
    Raises :class:`RetirementError` when no ``archived`` record names this archive, or the manifest
    differs; :class:`~include.governance.archive.ArchiveError` when the archive is incomplete or a file
    differs (both after a ``retire_failed`` record).
    """
    version = str(version)
    uri = archive_uri(store, model, version)
    with _step(model, version, "verify", because, attempt, ledger):
        archived = _latest(_records(model, version, ARCHIVED, ledger), uri)
        if archived is None:
            raise RetirementError(f"{model} version {version}: no {ARCHIVED} record names {uri}: archive it first")
        manifest = archive.verify(store, archive_prefix(model, version))
        if manifest.sha256 != archived.details.get("manifest_sha256"):
            raise RetirementError(f"{uri}: the stored manifest (sha256 {manifest.sha256}) is not the one archived "
                                  f"(sha256 {archived.details.get('manifest_sha256')}, ledger record #{archived.seq})")
        result = {"archive": uri, "manifest_sha256": manifest.sha256, "files": len(manifest.files)}
        _record(None, ARCHIVE_VERIFIED, model, version, because,
                reason=f"{uri}: {len(manifest.files)} files match their SHA-256", details=result,
                discriminator=manifest.sha256, ledger=ledger)
    return result


# --- unload ----------------------------------------------------------------------------------


def unload_version(
    triton: TritonClient, repository: Path | str, model: str, version: str, *, because: Because,
    attempt: int | None = None, ledger: Ledger | None = None,
) -> dict[str, Any]:
    """Remove ``model`` ``version``'s exported files from Triton's model repository; an ``unloaded`` record.

    Right before, Triton is asked again what it serves (:func:`served_on_triton`): a version it has
    loaded (or its ``config.pbtxt`` lists) is refused with :class:`RetirementError`, and a Triton that
    does not answer with its ``TritonError``, both after a ``retire_failed`` record. A version with no
    files there is fine (``removed`` false). Returns ``{"repository", "removed", "intact_export"}``.
    """
    from include.serving.triton.repository import exported_versions, remove_version

    version = str(version)
    with _step(model, version, "unload", because, attempt, ledger):
        served = served_on_triton(triton, repository, model)
        if version in served:
            raise RetirementError(f"{model} version {version} is {served[version]}: it is not unloaded or retired "
                                  "(deploy or roll back to another version first)")
        intact = int(version) in exported_versions(repository, model)
        removed = remove_version(repository, model, version)
        result = {"repository": str(repository), "removed": removed, "intact_export": intact}
        _record(None, UNLOADED, model, version, because,
                reason=f"exported files removed from {repository}" if removed else f"no exported files in {repository}",
                details=result, discriminator=f"{repository}:{removed}", ledger=ledger)
    log.info("%s version %s: not loaded on Triton; exported files %s", model, version,
             "removed" if removed else "absent")
    return result


# --- mark retired ----------------------------------------------------------------------------


def mark_retired(
    client: MlflowClient, store: ArchiveStore, model: str, version: str, *, reason: str, because: Because,
    served_versions: Collection[str] | Mapping[str, str] = (), attempt: int | None = None,
    ledger: Ledger | None = None,
) -> dict[str, Any]:
    """Tag ``model`` ``version`` retired, once its archive is verified; a ``retired`` record (also tagged on it).

    Refused with :class:`RetirementError` (after a ``retire_failed`` record, nothing changed) when the
    version holds ``@champion``, ``@previous_champion`` or ``@challenger`` now, is in
    ``served_versions``, has no ``archive_verified`` record for its archive, or its archive no longer
    verifies or holds another manifest than the verified one. Then every other alias on it is removed
    (:func:`include.promotion.registry.remove_alias`, recorded) and the tags are set:
    ``retired.archive`` (:func:`archive_uri`), ``retired.at`` (kept from an earlier try),
    ``retired.reason`` (``reason``, cut to 5,000 characters) and ``retired=true`` last. Safe to repeat.
    Returns ``{"archive", "manifest_sha256", "retired_at", "aliases_removed"}``.
    """
    version = str(version)
    uri = archive_uri(store, model, version)
    with _step(model, version, "mark_retired", because, attempt, ledger):
        aliases = [a for a, v in registry_aliases(client, model).items() if v == version]
        held = [a for a in aliases if a in PROTECTED_ALIASES]
        if held:
            raise RetirementError(f"{model} version {version} is {', '.join('@' + a for a in held)}: never retired")
        served = _served(served_versions)
        if version in served:
            raise RetirementError(f"{model} version {version} is {served[version]}: never retired")
        verified = _latest(_records(model, version, ARCHIVE_VERIFIED, ledger), uri)
        if verified is None:
            raise RetirementError(f"{model} version {version}: its archive {uri} was never verified "
                                  f"(no {ARCHIVE_VERIFIED} record): not retired")
        manifest = archive.verify(store, archive_prefix(model, version))
        if manifest.sha256 != verified.details.get("manifest_sha256"):
            raise RetirementError(f"{uri}: the stored manifest (sha256 {manifest.sha256}) is not the verified one "
                                  f"(sha256 {verified.details.get('manifest_sha256')}): not retired")
        for alias in aliases:
            remove_alias(client, model, alias, Because(because.actor, f"retiring version {version}", because.dag_id,
                                                       because.run_id))
        tags = dict(client.get_model_version(model, version).tags or {})
        retired_at = tags.get(RETIRED_AT_TAG) or utc_now()
        for key, value in ((RETIRED_ARCHIVE_TAG, uri), (RETIRED_AT_TAG, retired_at),
                           (RETIRED_REASON_TAG, (reason or "retired")[:MAX_TAG_VALUE]), (RETIRED_TAG, "true")):
            if tags.get(key) != value:
                client.set_model_version_tag(model, version, key, value)
        result = {"archive": uri, "manifest_sha256": manifest.sha256, "retired_at": retired_at,
                  "aliases_removed": aliases}
        _record(client, RETIRED, model, version, because, reason=reason or "retired", details=result,
                discriminator=f"{uri}:{manifest.sha256}", ledger=ledger)
    log.info("%s version %s retired; archive %s", model, version, uri)
    return result


# --- restore ---------------------------------------------------------------------------------


def restore_version(
    client: MlflowClient, store: ArchiveStore, model: str, version: str, *, because: Because,
    ledger: Ledger | None = None,
) -> ModelVersion:
    """Bring the archive of ``model`` ``version`` back as a NEW version of ``model``; returns it.

    :func:`include.governance.archive.restore` fetches the archive, checks every file's SHA-256
    against its manifest (an :class:`~include.governance.archive.ArchiveError` names the first that
    differs; nothing is registered then) and registers the model with the original's description and
    tags, ``restored_from`` = ``<model>/<version>`` and ``restored_archive`` = the archive's URI; no
    alias is set. A ``restore`` record (tagged) concerns the new version and the archived one:
    ``details``: ``restored_from``, ``archive``, ``manifest_sha256``, ``new_version``. Safe to repeat: an
    earlier restore of the same archive that is not retired is returned, and its record not written again.
    """
    version = str(version)
    uri = archive_uri(store, model, version)
    restored = archive.restore(client, store, archive_prefix(model, version), model)
    new = str(restored.version)
    manifest = archive.verify(store, archive_prefix(model, version))
    details = {"restored_from": f"{model}/{version}", "archive": uri, "manifest_sha256": manifest.sha256,
               "new_version": new}
    _record(client, RESTORE, model, new, because, versions=[version],
            reason=because.reason or f"restored version {version} from {uri}", details=details,
            discriminator=f"{uri}->{new}", ledger=ledger)
    log.info("%s version %s restored from %s as version %s", model, version, uri, new)
    return restored


# --- the owners' notice ----------------------------------------------------------------------

MAX_NOTICE_LINES = 20


def plan_alert(plan: RetirementPlan, *, dry_run: bool, run: str | None = None,
               links: Mapping[str, str] | None = None) -> Alert:
    """The notice to the model's owners (an :class:`include.monitoring.alerts.Alert`, level ``info``).

    The summary lists each candidate with its reasons, then the protected versions a rule matched
    (with why they stay), then ``manual`` entries naming no version; at most
    :data:`MAX_NOTICE_LINES` lines each. ``run`` names the Airflow run that acts on it.
    """
    from include.monitoring.alerts import Alert  # noqa: F811 - the runtime import of the annotation's class

    def capped(lines: list[str]) -> list[str]:
        return lines if len(lines) <= MAX_NOTICE_LINES else [*lines[:MAX_NOTICE_LINES],
                                                             f"… and {len(lines) - MAX_NOTICE_LINES} more"]

    count = len(plan.candidates)
    lines = capped([f"• version {c.version}: {c.reason_text}" for c in plan.candidates]) or ["No version to retire."]
    matched = [p for p in plan.protected if p.matched]
    if matched:
        lines.append("Protected (never retired while so):")
        lines += capped([f"• version {p.version}: {', '.join(p.why)}; would match "
                         f"{', '.join(r.rule for r in p.matched)}" for p in matched])
    if plan.unknown:
        lines.append(f"retirement.manual names versions the registry does not have: {', '.join(plan.unknown)}")
    if dry_run:
        title = f"retirement dry run: {count} version{'s' if count != 1 else ''} would be retired"
        actions = ("dry run: nothing was archived, unloaded or retired",)
    else:
        title = f"retirement: {count} version{'s' if count != 1 else ''} to retire"
        actions = ((f"archiving, verifying, unloading and retiring version{'s' if count != 1 else ''} "
                    f"{', '.join(plan.versions)}" + (f" in run {run}" if run else ""),) if count else
                   ("nothing to retire",))
    return Alert(level="info", model=plan.model, version=None, title=title, summary="\n".join(lines),
                 actions=actions, links=dict(links or {}))


__all__ = [
    "ACTIONS", "ARCHIVED", "ARCHIVE_VERIFIED", "Candidate", "MANUAL", "PROTECTED_ALIASES", "Protected", "QUALITY_FLOOR",
    "RESTORE", "RETIRED", "RETIRED_ARCHIVE_TAG", "RETIRED_AT_TAG", "RETIRED_REASON_TAG", "RETIRED_TAG", "RETIRE_FAILED",
    "RETIRE_PLANNED", "RULES", "Reason", "RetirementError", "RetirementPlan", "SUPERSEDED", "UNLOADED", "UNUSABLE_DATA",
    "all_versions", "archive_uri", "archive_version", "candidates", "listed_versions", "mark_retired",
    "monitored_kpi", "plan_alert", "record_plan", "registry_aliases", "restore_version", "served_on_triton",
    "unload_version", "verify_archive", "version_extra",
]
