"""The privacy commands of `callwatch`: `erase --caller NUMBER`, `retention run`,
`hold set|clear|list` (legal holds) and `recordings seal|rekey` (encryption at rest), for
operators and cron.

Each prints what it did and when it finished; the number given to `erase` is never printed
back, only its pseudonym (terminal scrollback and cron mail are stores too).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

Common = Callable[[argparse.ArgumentParser], None]
Loader = Callable[[argparse.Namespace], Any]


def cmd_erase(args: argparse.Namespace, settings: Any, repo: Any) -> int:
    from monitor.runtime.retention import privacy_store

    store = privacy_store(settings, repo.engine)
    report = store.erase_caller(args.caller, actor=args.actor, at=datetime.now(UTC))
    if args.json:
        print(json.dumps(asdict(report), default=str))
        return 0
    print(f"erasure request {report.request_id} for subject {report.subject}: "
          f"{report.calls_erased} calls and {report.files_removed} files removed, "
          f"completed at {report.completed_at.isoformat()}")  # fmt: skip
    for call_id in report.calls_held:
        print(f"  kept under legal hold: {call_id}")
    for call_id in report.calls_active:
        print(f"  still running, not erased: {call_id} (run the erasure again after it ends)")
    return 0


def cmd_retention(args: argparse.Namespace, settings: Any, repo: Any) -> int:
    from monitor.runtime.retention import retention_pass

    r = retention_pass(settings, repo.engine, datetime.now(UTC))
    print(f"retention pass at {r.ran_at.isoformat()}: {r.calls_deleted} calls and "
          f"{r.recordings_deleted} recordings deleted ({r.files_removed} files), "
          f"{r.held_skipped} kept under legal hold")  # fmt: skip
    return 0


def cmd_hold(args: argparse.Namespace, settings: Any, repo: Any) -> int:
    import sys

    from monitor.runtime.retention import privacy_store

    store = privacy_store(settings, repo.engine)
    if args.hold_command == "list":
        for h in store.holds():
            print(f"{h.call_id:40} set by {h.set_by} at {h.set_at:%Y-%m-%d %H:%M}: {h.reason}")
        return 0
    if args.hold_command == "set":
        ok = store.set_hold(args.call_id, reason=args.reason, actor=args.actor,
                            at=datetime.now(UTC))  # fmt: skip
    else:
        ok = store.clear_hold(args.call_id)
    if not ok:
        print(f"callwatch: no such call or hold {args.call_id!r} (see `callwatch calls`)",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"{args.call_id}: legal hold {'set' if args.hold_command == 'set' else 'lifted'}")
    return 0


def cmd_recordings(args: argparse.Namespace, settings: Any, repo: Any) -> int:
    import sys

    from monitor.runtime.sealer import recording_keys, sweep

    key, keys = recording_keys(settings)
    if key is None:
        print("callwatch: set recording.encrypt = true and a key first (docs/privacy.md)",
              file=sys.stderr)  # fmt: skip
        return 2
    rotate = args.recordings_command == "rekey"
    n = sweep(repo.engine, settings.recordings_dir, key, rotate=rotate, keys=keys)
    verb = "re-encrypted with the current key" if rotate else "sealed"
    print(f"{n} recordings {verb} (key id {key.key_id.hex()})")
    return 0


def add_commands(
    sub: Any, common: Common, settings_of: Loader, open_repo: Callable[[Any], Any]
) -> None:
    """Add the subcommands to the `callwatch` parser's `sub`."""

    def run(handler: Callable[[argparse.Namespace, Any, Any], int]) -> Callable[..., int]:
        def with_repo(args: argparse.Namespace) -> int:
            settings = settings_of(args)
            repo = open_repo(settings)
            try:
                return handler(args, settings, repo)
            finally:
                repo.close()

        return with_repo

    sp = sub.add_parser("erase", help="erase every call of a customer (GDPR/PIPL request)")
    common(sp)
    sp.add_argument("--caller", required=True, help="the customer's phone number")
    sp.add_argument("--actor", default="cli", help="who asked (kept in the tombstones)")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")
    sp.set_defaults(func=run(cmd_erase))

    sp = sub.add_parser("retention", help="delete calls and recordings past their age")
    rp = sp.add_subparsers(dest="retention_command", required=True)
    up = rp.add_parser("run", help="one retention pass now (for cron)")
    common(up)
    up.set_defaults(func=run(cmd_retention))

    sp = sub.add_parser("hold", help="legal holds: calls that retention and erasure keep")
    hp = sp.add_subparsers(dest="hold_command", required=True)
    up = hp.add_parser("set", help="put a call under legal hold")
    common(up)
    up.add_argument("call_id")
    up.add_argument("--reason", required=True)
    up.add_argument("--actor", default="cli")
    up = hp.add_parser("clear", help="lift a legal hold")
    common(up)
    up.add_argument("call_id")
    up = hp.add_parser("list", help="list legal holds")
    common(up)
    sp.set_defaults(func=run(cmd_hold))

    sp = sub.add_parser("recordings", help="encryption at rest of finished recordings")
    ep = sp.add_subparsers(dest="recordings_command", required=True)
    up = ep.add_parser("seal", help="encrypt every finished recording still in clear")
    common(up)
    up = ep.add_parser("rekey", help="re-encrypt recordings sealed with an old key")
    common(up)
    sp.set_defaults(func=run(cmd_recordings))
