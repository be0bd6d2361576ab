"""Staleness: how old the champion's training data is, whether that is too old, and what to propose.

The daily freshness check (``freshness_<model>``) asks :func:`assess` as of its run's date. A model is
checked against ``training.max_age_days`` of its config (none: never stale, the age is still reported).

**How old is the champion's training data.** The age is ``as_of`` minus the newest moment the data the
``@champion`` version was trained on holds, taken from the first of these sources that answers
(:func:`data_age`):

1. ``data``: the newest value of ``dataset.timestamp_column`` in the version's training data, read
   at the version's ``dataset_uri`` tag, **only when that data still has the version's
   ``data_fingerprint``** (a full-content hash, :mod:`include.data.fingerprint`). The exact answer.
   The check matters: ``dataset.uri`` is meant to be kept on the feature pipeline's latest snapshot,
   so the path a version was trained from usually holds other data by the time anyone asks; its
   newest event would make an old champion look fresh.
2. ``training_run``: the start time of the version's training run (its ``run_id``). The validation
   refused events later than the run's logical date plus ``dataset.checks.max_future_minutes``, so
   the data's newest event is no later than this (give or take those minutes): the age is a lower
   bound; a champion reported stale is stale, one trained on data already old at training time may
   be reported younger than it is.
3. ``registered``: the version's creation time, for a version without a training run (registered
   from a path); a lower bound too, for the same reason.

The version's MLflow creation time is not used while a run is known: a version can be registered
long after its run (a restore re-registers an archived one).

**Stale**: the age is more than ``max_age_days``. A stale champion is warned about, once per day.

**What to propose**: a training run of ``train_<model>`` on the latest data (the model's
``dataset.uri``, the training DAG's default), which registers a ``@challenger`` that the promotion
DAG then judges through its gates like any other; nothing here moves an alias or sets ``force``.
No proposal (the warning says why) when:

* the latest data cannot be read (the run would fail at validation);
* it is the champion's own data (same fingerprint: the run would skip itself);
* a version was already trained on it with this code and parameters (same idempotency key,
  :func:`include.governance.lineage.model_idempotency_key`: the run would skip; that version's
  promotion decided);
* a proposed run is still queued or running (``run_active``, answered by the Airflow side);
* the last proposal is less than ``cooldown`` old (default :data:`DEFAULT_COOLDOWN`), so a run that
  failed, or data that changes daily, does not start a training every day.

A proposal is recorded in the audit ledger (:func:`record_proposal`, action :data:`RETRAIN_PROPOSED`)
under a key of the model, the champion and the day (:func:`day_key`): one stale day proposes once
however often the check runs, and a re-run of the same day gets the same proposal back (same run id:
the trigger then finds the run it started).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from include import dag_ids
from include.config import ModelConfig, resolve_uri

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from include.governance.ledger import Ledger
    from include.monitoring.alerts import Alert

log = logging.getLogger(__name__)

RETRAIN_PROPOSED = "retrain_proposed"  # audit action: a training run on the latest data was proposed
STALE_CHAMPION = "stale_champion"  # audit action: the stale champion was warned about (once per day)
STALE_LEVEL = "warning"
FINDING = "data_age"  # the alert's finding: value = age in days, threshold = max_age_days
DEFAULT_COOLDOWN = timedelta(days=7)
RUN_ID_PREFIX = "freshness__"
SOURCE_DATA, SOURCE_TRAINING_RUN, SOURCE_REGISTERED = "data", "training_run", "registered"
SECONDS_PER_DAY = 86400.0


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware, got {when!r}")
    return datetime.fromtimestamp(when.timestamp(), tz=UTC)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / SECONDS_PER_DAY


# --- what a dataset holds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A dataset as read now: its full-content ``fingerprint``, its newest event (``timestamp_column``;
    None when every value is null) and row count; or ``error`` (why it could not be read)."""

    uri: str
    fingerprint: str | None = None
    newest_event: datetime | None = None
    rows: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "newest_event": self.newest_event.isoformat() if self.newest_event else None}


def read_snapshot(config: ModelConfig, uri: str) -> Snapshot:
    """Read ``uri`` with ``config``'s declared columns: fingerprint (:func:`include.data.fingerprint.dataset_fingerprint`)
    and newest ``dataset.timestamp_column`` value. Never raises for the data: a missing, unreadable or
    undeclared dataset is a :class:`Snapshot` with ``error``."""
    import pandas as pd

    from include.data.dataset import read_dataset
    from include.data.fingerprint import dataset_fingerprint

    resolved = resolve_uri(uri)
    try:
        df = read_dataset(resolved, config.dataset.column_types)
        fingerprint = dataset_fingerprint(df, config.dataset.column_types)
    except (OSError, ValueError) as exc:  # FileNotFoundError, DatasetError, an unsupported URI scheme
        return Snapshot(uri=resolved, error=f"{type(exc).__name__}: {exc}"[:1000])
    newest = pd.to_datetime(df[config.dataset.timestamp_column], utc=True).max() if len(df) else pd.NaT
    return Snapshot(uri=resolved, fingerprint=fingerprint, rows=len(df),
                    newest_event=None if pd.isna(newest) else newest.to_pydatetime())


# --- how old the champion's training data is --------------------------------------------------------


@dataclass(frozen=True)
class DataAge:
    """How old ``version``'s training data is at ``as_of``: ``age_days`` since ``since`` (the data's
    newest event, or its upper bound), found from ``source`` (``data``, ``training_run`` or
    ``registered``, see the module docstring); ``note`` says why that source."""

    version: str
    since: datetime
    source: str
    age_days: float
    note: str

    def as_dict(self) -> dict:
        return {**asdict(self), "since": self.since.isoformat()}


def data_age(client: MlflowClient, config: ModelConfig, version: ModelVersion, *, as_of: datetime,
             read: Callable[[str], Snapshot] | None = None) -> DataAge:
    """The age of ``version``'s training data at ``as_of`` (aware), by the first source that answers
    (module docstring): its data when it still has the version's fingerprint, else its training run's
    start, else its creation. ``read`` reads a dataset URI (default :func:`read_snapshot` with ``config``;
    the check passes one that reads each URI once). ``age_days`` is negative when ``as_of`` precedes it.
    """
    as_of = _utc(as_of)
    read = read or (lambda uri: read_snapshot(config, uri))
    number, tags = str(version.version), dict(version.tags or {})
    uri, fingerprint = tags.get("dataset_uri"), tags.get("data_fingerprint")
    if not uri or not fingerprint:
        why = "the version has no dataset_uri / data_fingerprint tags"
    else:
        snapshot = read(uri)
        if snapshot.error:
            why = f"its training data at {uri} cannot be read ({snapshot.error})"
        elif snapshot.fingerprint != fingerprint:
            why = f"{uri} now holds other data than it was trained on (fingerprint {snapshot.fingerprint})"
        elif snapshot.newest_event is None:
            why = f"its training data at {uri} has no {config.dataset.timestamp_column} value"
        else:
            return DataAge(number, snapshot.newest_event, SOURCE_DATA, _days(as_of - snapshot.newest_event),
                           f"newest {config.dataset.timestamp_column} in its training data at {uri} "
                           f"(fingerprint {fingerprint} unchanged)")
    if version.run_id:
        from mlflow.exceptions import MlflowException

        try:
            start = _from_ms(client.get_run(version.run_id).info.start_time)
        except MlflowException as exc:
            why += f"; its training run {version.run_id} cannot be read ({exc.error_code})"
        else:
            return DataAge(number, start, SOURCE_TRAINING_RUN, _days(as_of - start),
                           f"start of its training run {version.run_id}, a lower bound of the age: {why}")
    created = _from_ms(version.creation_timestamp)
    return DataAge(number, created, SOURCE_REGISTERED, _days(as_of - created),
                   f"registration of the version, a lower bound of the age: {why}")


# --- the decision ----------------------------------------------------------------------------------


def day_key(action: str, model: str, version: str | None, day: str) -> str:
    """``sha256:<64 hex>`` naming ``action`` on ``model`` ``version`` for the UTC ``day`` (``YYYY-MM-DD``):
    the ledger writes a record with this key once (:meth:`include.governance.ledger.Ledger.append`)."""
    from include.governance.ledger import canonical

    payload = {"action": action, "model": model, "version": version, "day": day}
    return "sha256:" + hashlib.sha256(canonical(payload)).hexdigest()


def proposal_run_id(day: str, version: str) -> str:
    """The id of the ``train_<model>`` run proposed on ``day`` against champion ``version``:
    ``freshness__2026-11-05__v3``."""
    return f"{RUN_ID_PREFIX}{day}__v{version}"


@dataclass(frozen=True)
class Decision:
    """What :func:`assess` found for ``model`` as of ``as_of`` (ISO, UTC).

    ``champion``: the ``@champion`` version (None: nothing to judge); ``age``: its :class:`DataAge`;
    ``stale``: older than ``max_age_days``; ``reason``: the finding in a sentence; ``latest``: the
    latest data (``dataset.uri``) as read; ``propose``: whether to propose a training run, else
    ``why_not``; ``proposal``: ``{"key", "dag_id", "run_id", "conf"}`` of the run to start (``conf``
    is the training DAG's: ``dataset_uri`` and ``alert``, never ``force``).
    """

    model: str
    as_of: str
    max_age_days: float | None
    champion: str | None
    stale: bool
    reason: str
    age: DataAge | None = None
    latest: Snapshot | None = None
    propose: bool = False
    why_not: str | None = None
    proposal: dict | None = None

    @property
    def day(self) -> str:
        return self.as_of[:10]

    def as_dict(self) -> dict:
        """JSON-ready (the check task's XCom)."""
        out = asdict(self)
        out["age"] = self.age.as_dict() if self.age else None
        out["latest"] = self.latest.as_dict() if self.latest else None
        return out


def _last_proposal(ledger: Ledger, model: str):
    entries = ledger.records(model=model, actions=[RETRAIN_PROPOSED])
    return entries[-1] if entries else None


def assess(client: MlflowClient, config: ModelConfig, *, as_of: datetime, ledger: Ledger | None = None,
           run_active: Callable[[str], bool] | None = None, cooldown: timedelta = DEFAULT_COOLDOWN,
           commit: str | None = None) -> Decision:
    """Is ``config``'s champion stale at ``as_of`` (aware), and what to propose (module docstring).

    ``ledger``: the audit ledger holding earlier proposals (default: the installation's);
    ``run_active(run_id)``: whether that ``train_<model>`` run is queued or running (default: never);
    ``cooldown``: how long after a proposal no other is made; ``commit``: the code commit a training
    would record (default :func:`include.governance.lineage.code_commit`). Reads the registry and,
    for a stale champion, the latest data; writes nothing.
    """
    from include.governance import lineage
    from include.governance.ledger import default_ledger
    from include.promotion.registry import CHAMPION, alias_version

    as_of = _utc(as_of)
    model, limit = config.name, config.training.max_age_days
    base = Decision(model=model, as_of=as_of.isoformat(), max_age_days=limit, champion=None, stale=False, reason="")
    champion = alias_version(client, config.registered_model_name, CHAMPION)
    if champion is None:
        return replace(base, reason=f"{model} has no @{CHAMPION}: nothing to judge")
    number = str(champion.version)
    snapshots: dict[str, Snapshot] = {}

    def read(uri: str) -> Snapshot:
        resolved = resolve_uri(uri)
        if resolved not in snapshots:
            snapshots[resolved] = read_snapshot(config, resolved)
        return snapshots[resolved]

    age = data_age(client, config, champion, as_of=as_of, read=read)
    base = replace(base, champion=number, age=age)
    if limit is None:
        return replace(base, reason=f"v{number}'s training data is {age.age_days:.1f} days old ({age.source}); "
                                    "training.max_age_days is not set: never stale")
    if age.age_days <= limit:
        return replace(base, reason=f"v{number}'s training data is {age.age_days:.1f} days old ({age.source}), "
                                    f"within training.max_age_days={limit:g}")
    stale = replace(base, stale=True, reason=f"v{number}'s training data is {age.age_days:.1f} days old "
                                             f"({age.source}), more than training.max_age_days={limit:g}")

    latest = read(config.dataset.uri)
    stale = replace(stale, latest=latest)
    if latest.error:
        return replace(stale, why_not=f"the latest data ({latest.uri}, dataset.uri) cannot be read: {latest.error}")
    if latest.fingerprint == (champion.tags or {}).get("data_fingerprint"):
        return replace(stale, why_not=f"the latest data ({latest.uri}) is the data v{number} was trained on: "
                                      "the feature pipeline has delivered nothing newer")
    key = lineage.model_idempotency_key(config, data_fingerprint=latest.fingerprint,
                                        commit=commit or lineage.code_commit())
    trained = lineage.find_version_with_key(client, config.registered_model_name, key)
    if trained is not None:
        return replace(stale, why_not=f"version {trained.version} was already trained on the latest data "
                                      f"({latest.uri}) with this code and parameters; its promotion decided")

    ledger = ledger or default_ledger()
    today = day_key(RETRAIN_PROPOSED, model, number, stale.day)
    previous = _last_proposal(ledger, model)
    if previous is not None and previous.idempotency_key != today:
        details = previous.details if isinstance(previous.details, dict) else {}
        earlier_run = details.get("run_id")
        if earlier_run and run_active is not None and run_active(earlier_run):
            return replace(stale, why_not=f"the run proposed on {details.get('day')} "
                                          f"({earlier_run}) is still queued or running")
        since = details.get("as_of") or previous.at
        elapsed = as_of - datetime.fromisoformat(since.replace("Z", "+00:00"))
        if elapsed < cooldown:
            return replace(stale, why_not=f"a retraining was proposed on {since[:10]} "
                                          f"({earlier_run}); the next proposal waits {_days(cooldown):g} days "
                                          "after it")
    run_id = proposal_run_id(stale.day, number)
    newest = latest.newest_event.isoformat() if latest.newest_event else None
    alert = {"source": "freshness", "model": model, "version": number, "reason": stale.reason[:1000],
             "age_days": round(age.age_days, 3), "max_age_days": limit, "age_source": age.source,
             "latest_newest_event": newest}
    proposal = {"key": today, "dag_id": dag_ids.dag_id(dag_ids.Stage.TRAIN, model), "run_id": run_id,
                "conf": {"dataset_uri": config.dataset.uri, "alert": alert}}
    return replace(stale, propose=True, proposal=proposal)


# --- recording and telling -------------------------------------------------------------------------


def record_proposal(client: MlflowClient | None, decision: Decision | Mapping[str, Any], *, actor: str,
                    dag_id: str | None, run_id: str | None, ledger: Ledger | None = None) -> dict:
    """Write the :data:`RETRAIN_PROPOSED` record of ``decision`` (or its :meth:`Decision.as_dict`), on the
    champion version, under the day's key: written once per model, champion and day; a second call gets
    the stored record back. Returns the stored record (``details`` hold ``run_id`` / ``dag_id`` / ``conf``
    of the proposed run, ``day``, ``as_of``, the age). Raises ``ValueError`` for a decision that proposes
    nothing, :class:`include.governance.ledger.LedgerError` when the ledger cannot be written."""
    from include.governance import audit

    d = decision.as_dict() if isinstance(decision, Decision) else dict(decision)
    proposal = d.get("proposal")
    if not d.get("propose") or not proposal:
        raise ValueError(f"{d.get('model')}: the decision proposes nothing ({d.get('why_not') or d.get('reason')})")
    age = d["age"]
    record = audit.AuditRecord(
        action=RETRAIN_PROPOSED, model=d["model"], version=d["champion"], actor=actor,
        reason=f"{d['reason']}: proposed {proposal['dag_id']} run {proposal['run_id']} on {proposal['conf']['dataset_uri']}",
        dag_id=dag_id, run_id=run_id,
        details={"day": d["as_of"][:10], "as_of": d["as_of"], "dag_id": proposal["dag_id"], "run_id": proposal["run_id"],
                 "conf": proposal["conf"], "age_days": age["age_days"], "age_source": age["source"],
                 "max_age_days": d["max_age_days"], "latest_fingerprint": (d.get("latest") or {}).get("fingerprint")},
    )
    return audit.write(client, record, key=proposal["key"], ledger=ledger)


def warned_today(decision: Mapping[str, Any], *, ledger: Ledger | None = None) -> dict | None:
    """The :data:`STALE_CHAMPION` record already written for ``decision``'s model, champion and day, or None."""
    from include.governance.ledger import default_ledger

    key = day_key(STALE_CHAMPION, decision["model"], decision["champion"], decision["as_of"][:10])
    for entry in (ledger or default_ledger()).records(model=decision["model"], actions=[STALE_CHAMPION]):
        if entry.idempotency_key == key:
            return entry.as_dict()
    return None


def record_warning(client: MlflowClient | None, decision: Mapping[str, Any], actions: list[str], *, actor: str,
                   dag_id: str | None, run_id: str | None, ledger: Ledger | None = None) -> dict:
    """Write the :data:`STALE_CHAMPION` record (the warning was sent, with ``actions``), once per model,
    champion and day; returns the stored record."""
    from include.governance import audit

    record = audit.AuditRecord(
        action=STALE_CHAMPION, model=decision["model"], version=decision["champion"], actor=actor,
        reason=decision["reason"], dag_id=dag_id, run_id=run_id,
        details={"day": decision["as_of"][:10], "as_of": decision["as_of"], "age": decision["age"],
                 "max_age_days": decision["max_age_days"], "actions": actions, "why_not": decision.get("why_not")},
    )
    key = day_key(STALE_CHAMPION, decision["model"], decision["champion"], decision["as_of"][:10])
    return audit.write(client, record, key=key, ledger=ledger)


def stale_alert(decision: Mapping[str, Any], *, actions: list[str] | tuple[str, ...] = (),
                links: Mapping[str, str] | None = None) -> Alert:
    """The warning about a stale champion (``decision``: :meth:`Decision.as_dict` of a stale one): a
    ``data_age`` finding (value the age in days, threshold ``max_age_days``), how the age was found, and
    what was done (``actions``: the proposed run, or why none was proposed)."""
    from include.monitoring.alerts import Alert
    from include.monitoring.findings import Finding

    age = decision["age"]
    lines = [decision["reason"] + ".", f"Age measured from {age['since']}: {age['note']}."]
    latest = decision.get("latest")
    if latest and latest.get("newest_event"):
        lines.append(f"Latest data ({latest['uri']}): newest event {latest['newest_event']}.")
    return Alert(
        level=STALE_LEVEL, model=decision["model"], version=decision["champion"],
        title=f"stale champion: training data {age['age_days']:.0f} days old",
        findings=(Finding(FINDING, age["age_days"], decision["max_age_days"], age["note"]),),
        summary="\n".join(lines), actions=tuple(actions), links=dict(links or {}),
    )
