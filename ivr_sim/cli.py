"""The `callwatch-sim` command (also `python -m ivr_sim`): a simulated switch that streams
two-party calls to a callwatch gateway exactly as FreeSWITCH/jambonz audio fork, Twilio Media
Streams, Genesys AudioHook or Asterisk AudioSocket would, from the built-in demo scripts, call
script files or a pair of recordings.

It is a client of the gateway, not part of it: the product's `callwatch` command does not
import the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr_sim.script import (
    DEMO_COMFORT_NOISE_DBOV,
    builtin_scripts,
    from_files,
    load_script,
    render,
    with_comfort_noise,
)
from ivr_sim.stream import stream_call


def build_parser() -> argparse.ArgumentParser:
    sp = argparse.ArgumentParser(
        prog="callwatch-sim", description="stream simulated two-party calls to a gateway"
    )
    sp.add_argument(
        "--url",
        help="gateway URL: ws(s)://host:port (the protocol's path is added), "
        "tcp://host:port for audiosocket (default: the local default ports)",
    )
    sp.add_argument(
        "--protocol",
        default="audiofork",
        choices=["audiofork", "twilio", "audiohook", "audiosocket"],
        help="stream as this switch would (default: FreeSWITCH/jambonz audio fork)",
    )
    sp.add_argument("--demo", action="store_true", help="use the built-in call scripts")
    sp.add_argument("--script", action="append", help="call script TOML (repeatable)")
    sp.add_argument("--customer", type=Path, help="customer recording (a stereo file: both)")
    sp.add_argument("--agent", type=Path, help="agent recording")
    sp.add_argument(
        "--rate",
        type=int,
        default=8000,
        choices=[8000, 16000],
        help="sample rate to stream recordings at",
    )
    sp.add_argument("--calls", type=int, default=2)
    sp.add_argument("--concurrency", type=int, default=100)
    sp.add_argument("--stagger", type=float, default=0.5, help="seconds between call starts")
    sp.add_argument("--pace", type=float, default=1.0, help="1 = real time, 0 = flat out")
    sp.add_argument(
        "--comfort-noise",
        metavar="DBOV|off",
        help="fill pauses with comfort noise at this level (dBov, e.g. -65); default: on at "
        "-65 for the built-in demo scripts, off for --script and recordings",
    )
    sp.add_argument(
        "--token-file",
        type=Path,
        help="audio fork: send `Authorization: Bearer <the file's text>` (a file, not an "
        "argument, so the token stays out of process listings)",
    )
    return sp


def run(args: argparse.Namespace) -> int:
    """Stream the calls the arguments describe; 0 when every call was sent, 1 otherwise."""

    demo = not (args.customer or args.agent or args.script)
    if args.customer or args.agent:
        calls = [from_files(args.customer, args.agent, args.rate)] * args.calls
    else:
        paths = [Path(p) for p in args.script] if args.script else builtin_scripts()
        if not paths:
            print("no call scripts found: pass --script FILE.toml", file=sys.stderr)
            return 2
        scripts = [load_script(p) for p in paths]
        calls = [render(scripts[i % len(scripts)]) for i in range(args.calls)]
    # The demo's pauses carry comfort noise, as a real line's do; elsewhere only on request.
    noise = args.comfort_noise or (str(DEMO_COMFORT_NOISE_DBOV) if demo else "off")
    if noise != "off":
        calls = [with_comfort_noise(c, float(noise), seed=i) for i, c in enumerate(calls)]

    headers = {}
    if args.token_file is not None:
        headers["Authorization"] = "Bearer " + args.token_file.read_text(encoding="utf-8").strip()

    async def main() -> list[Any]:
        sem = asyncio.Semaphore(args.concurrency)

        async def one(i: int) -> Any:
            async with sem:
                await asyncio.sleep(i * args.stagger)
                print(
                    f"call {i + 1}: streaming {calls[i].script.name} "
                    f"({calls[i].duration_s:.1f} s of audio)",
                    flush=True,
                )
                url = args.url or (
                    "tcp://127.0.0.1:8766"
                    if args.protocol == "audiosocket"
                    else "ws://127.0.0.1:8765"
                )
                return await stream_call(
                    url, calls[i], pace=args.pace, protocol=args.protocol, headers=headers
                )

        return await asyncio.gather(*(one(i) for i in range(len(calls))), return_exceptions=True)

    failures = 0
    for i, rep in enumerate(asyncio.run(main())):
        if isinstance(rep, BaseException):
            failures += 1
            print(f"call {i + 1}: FAILED: {type(rep).__name__}: {rep}", file=sys.stderr)
        else:
            print(
                f"call {i + 1}: sent {rep.audio_s:.1f} s in {rep.wall_s:.1f} s, "
                f"switch call id {rep.external_id}",
                flush=True,
            )
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
