"""The `callwatch` command: serve, asr-worker, calls, show, migrate, user (+ cli_privacy).

Each command loads the settings once (file, environment, then its own flags) and exits with a
message that says what to do next when something is missing, never a bare traceback.

Imports: this module is the program's `__main__`, and every ASR worker process (started by
forkserver or spawn) runs `__main__`'s module-level imports again before it starts. So only
light modules are imported at the top; a command imports what it needs in its own body.
`monitor.events` at the top (it pulls in `monitor.qa`: pypinyin's phrase tables, cn2an)
cost each worker about 100 MB of resident memory (docs/benchmarks.md);
tests/test_cli_imports.py keeps it out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from asr.errors import AsrError
from config.settings import ConfigError, Settings, load_settings
from monitor import cli_privacy
from monitor.cli_show import fmt_ms as _fmt_ms
from monitor.cli_show import show_analysis
from storage.errors import StorageError

log = logging.getLogger("callwatch")


def _settings(args: argparse.Namespace) -> Settings:
    over: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        over["data_dir"] = args.data_dir
    gateway = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    if gateway:
        over["gateway"] = gateway
    asr = {k: v for k in ("model", "language") if (v := getattr(args, k, None)) is not None}
    if asr:
        over["asr"] = asr
    return load_settings(getattr(args, "config", None), **over)


# -- serve ------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from monitor.app import Callwatch
    from monitor.runtime.logs import configure_logging

    settings = _settings(args)
    settings.check_bus_mode()  # NATS mode on SQLite: a clear error before anything starts
    configure_logging(settings.log_level, settings.log_format)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        app = Callwatch(settings)
        await app.run_forever(stop, freeze_heap=True)

    from monitor.scale.connect import BusError

    try:
        asyncio.run(main())
    except BusError as exc:  # wrong bus credentials, NATS unreachable: say which, exit
        print(f"callwatch serve: {exc}", file=sys.stderr)
        return 1
    return 0


# -- calls / show -----------------------------------------------------------------------
def _repo(settings: Settings) -> Any:
    from storage.repository import Repository

    repo = Repository.from_url(
        settings.database_url, sqlite_synchronous=settings.storage.sqlite_synchronous
    )
    repo.upgrade()
    return repo


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def cmd_calls(args: argparse.Namespace) -> int:
    repo = _repo(_settings(args))
    rows = repo.list_calls(
        text=args.text,
        agent=args.agent,
        queue=args.queue,
        caller=args.caller,
        status=args.status,
        since=_when(args.since),
        until=_when(args.until),
        limit=args.limit,
    )
    if args.json:
        print(json.dumps([_plain(r) for r in rows], ensure_ascii=False, default=str, indent=1))
        return 0
    if not rows:
        print("no calls found")
        return 0
    print(
        f"{'CALL ID':24} {'STARTED':19} {'DURATION':>8} {'STATUS':11} {'AGENT':8} "
        f"{'QUEUE':10} CALLER"
    )
    for r in rows:
        started = r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "-"
        print(
            f"{r.call_id:24} {started:19} {_fmt_ms(r.duration_ms):>8} {r.status:11} "
            f"{r.agent_id or '-':8} {r.queue or '-':10} {r.caller or '-'}"
        )
    return 0


def _plain(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj


def cmd_show(args: argparse.Namespace) -> int:
    from monitor.events import missing_speech  # heavy (monitor.qa): see "Imports" above

    settings = _settings(args)
    repo = _repo(settings)
    call = repo.get_call(args.call_id)
    if call is None:
        print(f"no call {args.call_id!r}: list calls with `callwatch calls`", file=sys.stderr)
        return 1
    alerts = repo.list_alerts(call_id=call.call_id, limit=1000)
    if args.json:
        analysis = repo.get_analysis(call.call_id).document(args.readings)
        doc = _plain(call) | analysis | {"alerts": [_plain(a) for a in alerts]}
        print(json.dumps(doc, ensure_ascii=False, default=str, indent=1))
        return 0
    print(f"call        {call.call_id}  (switch id {call.external_id})")
    print(f"status      {call.status}" + (f" ({call.end_reason})" if call.end_reason else ""))
    print(f"started     {call.started_at}   ended {call.ended_at or '-'}")
    print(f"duration    {_fmt_ms(call.duration_ms)}")
    print(f"agent       {call.agent_id or '-'}   queue {call.queue or '-'}")
    print(f"caller      {call.caller or '-'}   callee {call.callee or '-'}")
    print(f"audio       {call.protocol}, {call.sample_rate} Hz, {call.channels} ch")
    print(f"recording   {settings.recordings_dir / call.recording_path}")
    print("parties     " + ", ".join(f"{p.party} (channel {p.channel})" for p in call.parties))
    missing = missing_speech(call.trace)
    print("\ntranscript" + (f" (incomplete: {len(missing)} not transcribed)" if missing else ""))
    if not call.segments and not missing:
        print("  (none)")
    lines = [(s.start_ms, s.end_ms, s.party, s.text) for s in call.segments]
    lines += [(m["start_ms"], m["end_ms"], m["party"] or "", f"[not transcribed: {m['reason']}]")
              for m in missing]  # fmt: skip
    for start, end, party, text in sorted(lines, key=lambda x: (x[0], x[1])):
        print(f"  [{_fmt_ms(start)}-{_fmt_ms(end)}] {party:8} {text}")
    show_analysis(repo.get_analysis(call.call_id), call, args.readings)
    print("\nalerts")
    if not alerts:
        print("  (none)")
    for al in sorted(alerts, key=lambda a: (a.raised_at, a.id)):
        span = f"{_fmt_ms(al.media_start_ms)}-{_fmt_ms(al.media_end_ms)}"
        who = f" by {al.resolved_by or al.acknowledged_by}" if al.state != "open" else ""
        print(f"  #{al.id:<5} {span:>15} {al.severity:8} {al.state}{who:12} {al.message}")
    if args.trace:
        print("\ntrace")
        for t in call.trace:
            data = json.dumps(t.data, ensure_ascii=False, default=str) if t.data else ""
            print(f"  {t.seq:4} {_fmt_ms(t.media_ms)} {t.kind:16} {t.party or '':8} {data}")
    return 0


# -- asr-worker -------------------------------------------------------------------------
def cmd_asr_worker(args: argparse.Namespace) -> int:
    from monitor.runtime.logs import configure_logging
    from monitor.scale.asr_worker import run_asr_worker
    from monitor.scale.connect import BusError

    settings = _settings(args)
    if not settings.bus.enabled:
        raise ConfigError(
            "asr-worker serves utterances over NATS: set bus.url and bus.credentials "
            "(CALLWATCH_BUS__URL, CALLWATCH_BUS__CREDENTIALS__USER / __PASSWORD)"
        )
    configure_logging(settings.log_level, settings.log_format)
    try:
        return run_asr_worker(settings)
    except BusError as exc:
        print(f"callwatch asr-worker: {exc}", file=sys.stderr)
        return 1


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _repo(settings).close()
    print(f"database at {settings.database_url} is up to date")
    return 0


# -- audit ------------------------------------------------------------------------------
def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Walk the audit trail's hash chain; exit 1 naming the first row that breaks it."""
    from storage.access import AccessStore

    repo = _repo(_settings(args))
    try:
        check = AccessStore(repo.engine).verify_audit()
    finally:
        repo.close()
    legacy = f" ({check.unchained} older rows predate the chain)" if check.unchained else ""
    if check.broken_id is None:
        print(f"audit trail intact: {check.verified} rows verified{legacy}")
        return 0
    print(
        f"audit trail BROKEN at row id {check.broken_id}: {check.problem}; "
        f"{check.verified} rows before it verified{legacy}",
        file=sys.stderr,
    )
    return 1


# -- user -------------------------------------------------------------------------------
def cmd_user(args: argparse.Namespace) -> int:
    from datetime import UTC

    from storage.access import AccessStore, UserExists

    settings = _settings(args)
    repo = _repo(settings)
    try:
        access = AccessStore(repo.engine, scrypt_n=settings.api.scrypt_n)
        if args.user_command == "list":
            for u in access.list_users():
                state = " (disabled)" if u.disabled else ""
                print(f"{u.username:24} {u.role:10} created {u.created_at:%Y-%m-%d %H:%M}{state}")
            return 0
        if args.user_command == "create":
            try:
                password = _read_password(args.password_stdin)
                access.create_user(args.username, password, args.role, at=datetime.now(UTC))
            except UserExists as exc:
                print(f"callwatch: {exc}; pick another name", file=sys.stderr)
                return 1
            except ValueError as exc:
                print(f"callwatch: {exc}", file=sys.stderr)
                return 2
            print(f"created {args.role} {args.username!r}; log in with POST /api/login")
            return 0
        user = access.set_user(
            args.username,
            role=args.role,
            disabled={"disable": True, "enable": False}.get(args.user_command),
        )
        if user is None:
            print(
                f"callwatch: no user {args.username!r} (see `callwatch user list`)", file=sys.stderr
            )
            return 1
        print(f"{user.username}: role {user.role}, {'disabled' if user.disabled else 'enabled'}")
        return 0
    finally:
        repo.close()


def _read_password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password (at least 8 characters): ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


# -- parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callwatch", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="TOML settings file (default: CALLWATCH_CONFIG)")
        sp.add_argument("--data-dir", type=Path, help="where the database and recordings live")

    sp = sub.add_parser("serve", help="run the gateway and the live pipeline")
    common(sp)
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--model", help="Whisper model: directory, base, tiny.en or a hub name")
    sp.add_argument("--language", choices=["auto", "zh", "en"])
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser(
        "asr-worker", help="serve speech recognition to gateway nodes over NATS (bus.url)"
    )
    common(sp)
    sp.add_argument("--model", help="Whisper model: directory, base, tiny.en or a hub name")
    sp.add_argument("--language", choices=["auto", "zh", "en"])
    sp.set_defaults(func=cmd_asr_worker)

    sp = sub.add_parser("calls", help="list and search stored calls")
    common(sp)
    sp.add_argument("--text", help="words or characters said in the call")
    sp.add_argument("--agent")
    sp.add_argument("--queue")
    sp.add_argument("--caller")
    sp.add_argument("--status", choices=["active", "completed", "interrupted"])
    sp.add_argument("--since", help="ISO time, e.g. 2026-11-21T09:00")
    sp.add_argument("--until")
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_calls)

    sp = sub.add_parser("show", help="one call: metadata and per-party transcript")
    common(sp)
    sp.add_argument("call_id", help="callwatch id, its prefix, or the switch's call id")
    sp.add_argument("--trace", action="store_true", help="also print the event trace")
    sp.add_argument("--readings", action="store_true", help="also print quality readings")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_show)

    sp = sub.add_parser("user", help="API users: create the first admin, list, change roles")
    users = sp.add_subparsers(dest="user_command", required=True)
    up = users.add_parser("create", help="add a user (prompts for the password)")
    common(up)
    up.add_argument("username")
    up.add_argument("--role", choices=["supervisor", "qa", "admin"], required=True)
    up.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    up = users.add_parser("list", help="list users and their roles")
    common(up)
    for verb, helptext in (
        ("set-role", "change a user's role"),
        ("disable", "block a user"),
        ("enable", "unblock a user"),
    ):
        up = users.add_parser(verb, help=helptext)
        common(up)
        up.add_argument("username")
        if verb == "set-role":
            up.add_argument("role", choices=["supervisor", "qa", "admin"])
        else:
            up.set_defaults(role=None)
    sp.set_defaults(func=cmd_user)

    sp = sub.add_parser("migrate", help="create or upgrade the database schema")
    common(sp)
    sp.set_defaults(func=cmd_migrate)

    sp = sub.add_parser("audit", help="the audit trail: verify its hash chain")
    audits = sp.add_subparsers(dest="audit_cmd", required=True)
    up = audits.add_parser("verify", help="check the chain; exit 1 naming the first bad row")
    common(up)
    up.set_defaults(func=cmd_audit_verify)
    cli_privacy.add_commands(sub, common, _settings, _repo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Recordings, the database (and its -wal/-shm) and tokens are for this user only: every
    # file a callwatch command creates is 0600 and every directory 0700.
    umask = os.umask(0o077)
    try:
        return _run(build_parser().parse_args(argv))
    finally:  # the process's own setting again (matters when main() is called in-process)
        os.umask(umask)


def _run(args: argparse.Namespace) -> int:
    try:
        rc = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return rc
    except BrokenPipeError:
        # `callwatch calls | head`: the reader has all it wanted. Point stdout at /dev/null so
        # the interpreter's final flush cannot raise again, and end quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ConfigError as exc:
        print(f"callwatch: {exc}", file=sys.stderr)
        return 2
    except (AsrError, StorageError) as exc:  # model missing, database unreachable: say so
        print(f"callwatch: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
