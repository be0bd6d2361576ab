"""Is the audit ledger intact? Walk its hash chain, anchor its head outside the database, prune it.

:func:`verify` recomputes every record's hash and link, in ``seq`` order, and names the first record
that was **edited** (its content no longer matches its hash), **inserted** (the record after it
links past it), **deleted** (a record links to a hash the ledger no longer holds, or ``seq`` jumps),
**reordered** (a record links to one stored after it), or **truncated** (an anchor names a record
that is gone). An attacker with write access to the database can recompute every hash after an
edit; the anchors catch that: :func:`anchor` writes the head's ``seq`` and hash where the ledger's
writers cannot rewrite them — a tag on an MLflow run (``modelops.kind=ledger_anchors`` in the
``modelops/ledger`` experiment) and the task log — and :func:`verify` checks the chain against every
anchor.

Retention (:func:`prune`) deletes records older than the retention period; it first anchors the
first record it keeps (its ``seq`` and ``prev_hash``, as ``ledger.genesis``), so the shortened chain
still verifies and a deletion beyond the retention cut is still found.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from include import settings
from include.governance.ledger import GENESIS, Ledger, as_time, chain_hash, default_ledger, entry_from_row, utc_now

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

ANCHOR_EXPERIMENT = "modelops/ledger"
ANCHOR_KIND = "ledger_anchors"
ANCHOR_PREFIX = "ledger.anchor."
GENESIS_TAG = "ledger.genesis"


@dataclass(frozen=True)
class Anchor:
    """The chain's head at one moment: record ``seq`` had ``hash``; written at ``anchored_at``."""

    seq: int
    hash: str
    at: str  # the anchored record's time
    anchored_at: str


@dataclass(frozen=True)
class Genesis:
    """Where a pruned chain starts: record ``seq`` links to ``prev_hash`` (a record retention deleted)."""

    seq: int
    prev_hash: str
    pruned_at: str


@dataclass(frozen=True)
class Problem:
    """The first (or a later) place the chain breaks: ``kind`` is edited, inserted, deleted, reordered,
    truncated or anchor_mismatch; ``seq`` the record named (for ``deleted``: the record after the gap)."""

    kind: str
    seq: int | None
    detail: str


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`: ``ok`` when nothing is wrong; ``problems`` in chain order."""

    checked: int
    head_seq: int | None
    head_hash: str | None
    anchors_checked: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        if self.ok:
            return (f"ledger intact: {self.checked} records, head #{self.head_seq} {self.head_hash}, "
                    f"{self.anchors_checked} anchor(s) matched")
        first = self.problems[0]
        return (f"ledger TAMPERED: {first.kind} at record #{first.seq}: {first.detail}"
                + (f" (+{len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""))

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "head_seq": self.head_seq, "head_hash": self.head_hash,
                "anchors_checked": self.anchors_checked, "problems": [asdict(p) for p in self.problems],
                "summary": self.summary()}


class AnchorStore(Protocol):
    """Where anchors live: somewhere the ledger's database writers cannot rewrite."""

    def anchors(self) -> list[Anchor]: ...
    def add_anchor(self, anchor: Anchor) -> None: ...
    def genesis(self) -> Genesis | None: ...
    def set_genesis(self, genesis: Genesis) -> None: ...


class MlflowAnchorStore:
    """Anchors as tags of one MLflow run per ledger (``modelops.kind=ledger_anchors``, ``modelops.ledger=<url>``).

    Tag ``ledger.anchor.<seq, 12 digits>`` = JSON :class:`Anchor`; ``ledger.genesis`` = JSON :class:`Genesis`.
    """

    def __init__(self, client: MlflowClient, ledger: Ledger) -> None:
        self.client = client
        self.ledger = ledger
        self._run_id: str | None = None

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            from include import tracking

            self._run_id = tracking.upsert_run(
                self.client, ANCHOR_EXPERIMENT, {"modelops.kind": ANCHOR_KIND, "modelops.ledger": self.ledger.display_url},
                run_name="ledger-anchors")
        return self._run_id

    def _tags(self) -> dict[str, str]:
        return dict(self.client.get_run(self.run_id).data.tags)

    def anchors(self) -> list[Anchor]:
        return sorted((Anchor(**json.loads(v)) for k, v in self._tags().items() if k.startswith(ANCHOR_PREFIX)),
                      key=lambda a: a.seq)

    def add_anchor(self, anchor: Anchor) -> None:
        self.client.set_tag(self.run_id, f"{ANCHOR_PREFIX}{anchor.seq:012d}", json.dumps(asdict(anchor), sort_keys=True))

    def genesis(self) -> Genesis | None:
        raw = self._tags().get(GENESIS_TAG)
        return Genesis(**json.loads(raw)) if raw else None

    def set_genesis(self, genesis: Genesis) -> None:
        self.client.set_tag(self.run_id, GENESIS_TAG, json.dumps(asdict(genesis), sort_keys=True))


def verify(ledger: Ledger | None = None, anchors: AnchorStore | None = None) -> VerifyReport:
    """Walk the whole chain and report every break, the first one first (see the module docstring).

    ``anchors``: where the head anchors and the retention genesis are kept (None: the chain is only
    checked against itself, which cannot find a truncated tail or a fully recomputed chain).
    """
    ledger = ledger or default_ledger()
    rows = ledger.rows()
    genesis = anchors.genesis() if anchors is not None else None
    problems = _walk(rows, genesis)
    anchor_list = anchors.anchors() if anchors is not None else []
    problems += _check_anchors(rows, anchor_list, genesis)
    problems.sort(key=lambda p: (p.seq if p.seq is not None else 1 << 62))
    head = rows[-1] if rows else None
    report = VerifyReport(len(rows), head["seq"] if head else None, head["hash"] if head else None,
                          len(anchor_list), problems)
    (log.info if report.ok else log.error)("LEDGER VERIFY %s: %s", ledger.display_url, report.summary())
    return report


def _walk(rows: Sequence[Mapping], genesis: Genesis | None) -> list[Problem]:
    problems: list[Problem] = []
    stored_at = {row["hash"]: i for i, row in enumerate(rows)}
    for i, row in enumerate(rows):
        seq = row["seq"]
        computed = chain_hash(row["prev_hash"], entry_from_row(row).content())
        if computed != row["hash"]:
            problems.append(Problem("edited", seq, f"{_name(row)}: its content no longer matches its hash "
                                                   f"(stored {row['hash'][:12]}…, computed {computed[:12]}…)"))
        if i == 0:
            expected, start = GENESIS, "the start of the ledger"
            if genesis is not None and genesis.seq == seq:
                expected, start = genesis.prev_hash, f"the retention anchor of {genesis.pruned_at}"
            if row["prev_hash"] != expected:
                if genesis is not None and seq < genesis.seq:
                    continue  # records retention should have deleted: harmless, still linked
                problems.append(Problem("deleted", seq, f"{_name(row)} is the first record but links to "
                                                        f"{row['prev_hash'][:12]}…, not {start}: records before it "
                                                        "were deleted"))
            continue
        before = rows[i - 1]
        if row["prev_hash"] == before["hash"]:
            if seq != before["seq"] + 1:  # linked but renumbered: a gap in seq with an intact link
                problems.append(Problem("deleted", seq, f"seq jumps from #{before['seq']} to #{seq}"))
            continue
        target = stored_at.get(row["prev_hash"])
        if target is not None and target > i:
            problems.append(Problem("reordered", seq, f"{_name(row)} links to record #{rows[target]['seq']}, "
                                                      "which is stored after it: records were reordered"))
        elif i + 1 < len(rows) and rows[i + 1]["prev_hash"] == before["hash"]:
            problems.append(Problem("inserted", seq, f"{_name(row)} was inserted: the record after it "
                                                     f"(#{rows[i + 1]['seq']}) links to #{before['seq']}"))
        elif target is not None and target == i - 2:
            problems.append(Problem("inserted", before["seq"], f"{_name(before)} was inserted: the record after "
                                                               f"it (#{seq}) links to #{rows[i - 2]['seq']}"))
        elif target is not None:
            problems.append(Problem("reordered", seq, f"{_name(row)} links to record #{rows[target]['seq']}, not "
                                                      f"to #{before['seq']} stored before it"))
        elif seq != before["seq"] + 1:
            problems.append(Problem("deleted", seq, f"records #{before['seq'] + 1}..#{seq - 1} were deleted: "
                                                    f"{_name(row)} links to a hash the ledger no longer holds"))
        else:
            problems.append(Problem("edited", before["seq"], f"{_name(before)} was edited and its hash recomputed, "
                                                             f"or a record after it deleted: #{seq} links to a "
                                                             "hash the ledger no longer holds"))
    return problems


def _check_anchors(rows: Sequence[Mapping], anchors: Sequence[Anchor], genesis: Genesis | None) -> list[Problem]:
    problems: list[Problem] = []
    by_seq = {row["seq"]: row for row in rows}
    last = rows[-1]["seq"] if rows else 0
    for anchor in anchors:
        if genesis is not None and anchor.seq < genesis.seq:
            continue  # pruned by retention
        row = by_seq.get(anchor.seq)
        if row is None and anchor.seq > last:
            problems.append(Problem("truncated", anchor.seq, f"record #{anchor.seq} (anchored {anchor.anchored_at}) "
                                                             f"is gone: the ledger ends at #{last}"))
        elif row is None:
            problems.append(Problem("deleted", anchor.seq, f"record #{anchor.seq} (anchored {anchor.anchored_at}) "
                                                           "is gone"))
        elif row["hash"] != anchor.hash:
            problems.append(Problem("anchor_mismatch", anchor.seq,
                                    f"{_name(row)} has hash {row['hash'][:12]}…, anchored as {anchor.hash[:12]}… "
                                    f"on {anchor.anchored_at}: it or a record before it was rewritten"))
    return problems


def _name(row: Mapping) -> str:
    version = f" v{row['version']}" if row.get("version") else ""
    return f"record #{row['seq']} ({row['action']} {row['model']}{version} at {row['at']})"


def anchor(anchors: AnchorStore, ledger: Ledger | None = None) -> Anchor | None:
    """Anchor the current head in ``anchors`` (and the log); None for an empty ledger.

    Call it after a :func:`verify` that passed: anchoring a tampered head would bless it.
    """
    ledger = ledger or default_ledger()
    head = ledger.head()
    if head is None:
        return None
    made = Anchor(head.seq, head.hash, head.at, utc_now())
    anchors.add_anchor(made)
    log.info("LEDGER ANCHOR %s: #%s %s (record of %s)", ledger.display_url, made.seq, made.hash, made.at)
    return made


def prune(anchors: AnchorStore, *, retention_days: int | None = None, now: datetime | None = None,
          ledger: Ledger | None = None) -> int:
    """Delete records older than ``retention_days`` (default :func:`include.settings.ledger_retention_days`);
    the number deleted.

    The first record kept is anchored as the chain's genesis before anything is deleted, so the
    pruned chain verifies; the newest record is never deleted (the chain keeps a head). Raises
    ValueError for a retention below :data:`include.settings.MIN_RETENTION_DAYS`.
    """
    ledger = ledger or default_ledger()
    days = settings.ledger_retention_days() if retention_days is None else retention_days
    if days < settings.MIN_RETENTION_DAYS:
        raise ValueError(f"retention of {days} days is below {settings.MIN_RETENTION_DAYS} (EU AI Act Art. 19)")
    cutoff = as_time((now or datetime.now(UTC)) - timedelta(days=days))
    kept = [e for e in ledger.records(since=cutoff)]
    head = ledger.head()
    if head is None:
        return 0
    first_kept = kept[0] if kept else head
    if ledger.first() is not None and ledger.first().seq >= first_kept.seq:
        return 0
    anchors.set_genesis(Genesis(first_kept.seq, first_kept.prev_hash, utc_now()))
    deleted = ledger.delete_before(first_kept.seq)
    log.info("LEDGER PRUNE %s: %s record(s) older than %s deleted; the chain now starts at #%s", ledger.display_url,
             deleted, cutoff, first_kept.seq)
    return deleted
