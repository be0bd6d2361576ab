"""The audit ledger from a shell: ``python -m include.governance <command>``.

Commands (``--help`` on each says more):

* ``aliases MODEL [--alias A] [--at TIME]``: the timeline of each alias, or which version it was at TIME;
* ``history MODEL [--since TIME] [--action A]…``: what happened to the model, with reasons and actors;
* ``lineage MODEL VERSION``: what the version was built from and what happened to it (JSON);
* ``verify [--no-anchors] [--anchor]``: walk the chain (and its anchors in MLflow); exit status 1 names
  the first tampered record; ``--anchor`` anchors the head when it verified;
* ``export [--model M] [--since TIME] [--out FILE]``: the records as JSON Lines;
* ``evidence MODEL VERSION --out FILE.zip``: the version's evidence pack;
* ``prune [--retention-days N]``: delete records past retention (anchoring where the chain now starts).

The ledger is ``MODELOPS_LEDGER_URL`` (default SQLite under the state folder); MLflow is
``MLFLOW_TRACKING_URI``. Errors go to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from include.governance import history, integrity
from include.governance.ledger import LedgerError, default_ledger


def _client():
    from include import tracking

    return tracking.configure()


def _anchors():
    return integrity.MlflowAnchorStore(_client(), default_ledger())


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def _aliases(args: argparse.Namespace) -> int:
    if args.at:
        if not args.alias:
            raise ValueError("--at needs --alias (which alias to look up)")
        version = history.version_at(args.model, args.alias, args.at)
        print(f"{args.model}@{args.alias} at {args.at}: {version if version is not None else 'no version'}")
        return 0 if version is not None else 1
    terms = history.alias_timeline(args.model, args.alias)
    if args.json:
        _print_json([asdict(t) for t in terms])
        return 0
    if not terms:
        print(f"no alias moves on record for {args.model}")
    for t in terms:
        print(f"@{t.alias:<17} v{t.version:<5} {t.start} → {t.end or 'now':<27} by {t.actor}: {t.reason.splitlines()[0] if t.reason else ''}")
    return 0


def _history(args: argparse.Namespace) -> int:
    entries = history.model_history(args.model, actions=args.action or None, since=args.since,
                                    include_alias_moves=args.alias_moves)
    if args.json:
        _print_json([e.as_dict() for e in entries])
        return 0
    for e in entries:
        versions = ",".join(e.versions) or "-"
        reason = e.reason.splitlines()[0] if e.reason else ""
        print(f"#{e.seq:<6} {e.at}  {e.action:<16} v{versions:<8} {e.actor:<20} {reason}")
    return 0


def _lineage(args: argparse.Namespace) -> int:
    _print_json(history.version_lineage(_client(), args.model, args.version))
    return 0


def _verify(args: argparse.Namespace) -> int:
    anchors = None if args.no_anchors else _anchors()
    report = integrity.verify(default_ledger(), anchors)
    if args.json:
        _print_json(report.as_dict())
    else:
        print(report.summary())
        for problem in report.problems[1:]:
            print(f"  also: {problem.kind} at #{problem.seq}: {problem.detail}")
    if report.ok and args.anchor and anchors is not None:
        made = integrity.anchor(anchors)
        if made is not None:
            print(f"anchored #{made.seq} {made.hash}")
    return 0 if report.ok else 1


def _export(args: argparse.Namespace) -> int:
    if args.out:
        with Path(args.out).open("w", encoding="utf-8") as out:
            count = history.export_jsonl(out, model=args.model, since=args.since)
        print(f"{count} record(s) written to {args.out}", file=sys.stderr)
    else:
        history.export_jsonl(sys.stdout, model=args.model, since=args.since)
    return 0


def _evidence(args: argparse.Namespace) -> int:
    Path(args.out).write_bytes(history.evidence_pack(_client(), args.model, args.version))
    print(f"evidence pack of {args.model} v{args.version} written to {args.out}", file=sys.stderr)
    return 0


def _prune(args: argparse.Namespace) -> int:
    deleted = integrity.prune(_anchors(), retention_days=args.retention_days)
    print(f"{deleted} record(s) past retention deleted")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m include.governance", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("aliases", help="alias timeline, or the version an alias pointed at, at a time")
    p.add_argument("model")
    p.add_argument("--alias", help="only this alias (champion, previous_champion, challenger, rolled_back)")
    p.add_argument("--at", help="a time (ISO 8601; no zone = UTC): print the version the alias pointed at")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_aliases)

    p = commands.add_parser("history", help="what happened to a model, oldest first")
    p.add_argument("model")
    p.add_argument("--since", help="from this time (ISO 8601)")
    p.add_argument("--action", action="append", help="only these actions (repeatable)")
    p.add_argument("--alias-moves", action="store_true", help="include alias_set / alias_removed records")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_history)

    p = commands.add_parser("lineage", help="a version's lineage as JSON")
    p.add_argument("model")
    p.add_argument("version")
    p.set_defaults(run=_lineage)

    p = commands.add_parser("verify", help="walk the hash chain and its anchors")
    p.add_argument("--no-anchors", action="store_true", help="check the chain against itself only")
    p.add_argument("--anchor", action="store_true", help="anchor the head in MLflow when it verified")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_verify)

    p = commands.add_parser("export", help="the records as JSON Lines")
    p.add_argument("--model")
    p.add_argument("--since")
    p.add_argument("--out", help="file to write (default: stdout)")
    p.set_defaults(run=_export)

    p = commands.add_parser("evidence", help="a version's evidence pack (zip)")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--out", required=True)
    p.set_defaults(run=_evidence)

    p = commands.add_parser("prune", help="delete records past retention")
    p.add_argument("--retention-days", type=int, help="default: MODELOPS_LEDGER_RETENTION_DAYS or 400")
    p.set_defaults(run=_prune)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (LedgerError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - MLflow's errors (an unknown version) end the command, named
        if type(exc).__name__ == "MlflowException":
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
