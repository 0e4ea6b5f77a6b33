"""Live board benchmark: what 100 (or N) live calls cost the board model and each browser.

    .venv/bin/python scripts/bench_board.py                  # 100 calls, 60 s of call time
    .venv/bin/python scripts/bench_board.py --calls 300 --seconds 30

Each simulated call emits what a live call publishes on the event bus, per second of media:
one quality reading per party every 2 s, an utterance transcript per party every ~4 s, trace
entries and now and then a compliance finding; alerts arrive at 1 per call per minute. The
events go through `BoardState.apply` and `flush` on a simulated clock ticking every 100 ms
(the hub's tick). Figures: CPU time of the board model per second of wall time (so the share
of one core it takes), messages and JSON bytes per second sent to each browser, and the
largest message. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime

from monitor.board.state import BoardState
from storage.records import (
    AlertRaised,
    CallOpened,
    FindingAdded,
    ReadingAdded,
    SegmentAdded,
    TraceAdded,
)

WORDS = "please hold while I check your account the balance is due next week thank you".split()


def events_for_second(call_id: str, sec: int, rng: random.Random) -> list[object]:
    out: list[object] = []
    now = datetime.now(UTC)
    for party in ("customer", "agent"):
        if sec % 2 == 0:
            out.append(ReadingAdded(call_id, party, sec // 2, sec * 1000 - 2000, sec * 1000, {
                "speech_level_dbov": -20 - rng.random() * 10, "snr_db": 25 + rng.random() * 10,
                "speech_ms": rng.randrange(0, 2000)}))  # fmt: skip
        if rng.random() < 0.25:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 14)))
            out.append(SegmentAdded(call_id, party, sec * 1000 - 1500, sec * 1000, text, "en", 0.9))
            out.append(TraceAdded(call_id, sec * 4, "utterance", now, sec * 1000, party))
    if rng.random() < 0.05:
        out.append(
            FindingAdded(
                call_id,
                sec,
                "compliance",
                "phrase_matched",
                data={"stage": rng.choice(["greeting", "verification"])},
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--interval", type=float, default=0.3, help="coalescing interval (s)")
    args = ap.parse_args()
    rng = random.Random(7)
    state = BoardState(interval_s=args.interval)
    start = datetime.now(UTC)
    for i in range(args.calls):
        state.apply(CallOpened(f"c{i}", f"x{i}", start, "audiofork", 8000, 2, f"c{i}.wav",
                               (("customer", 0), ("agent", 1)), agent_id=str(1000 + i % 40),
                               queue=["billing", "cards", "support"][i % 3]), 0.0)  # fmt: skip
    state.flush(0.0)
    events = msgs = size = biggest = alerts = 0
    cpu0 = time.process_time()
    for tick in range(args.seconds * 10):  # 100 ms ticks
        now = tick / 10
        sec, sub = divmod(tick, 10)
        for i in range(args.calls):
            if i % 10 != sub:  # spread each call's second of events over the ticks
                continue
            batch = events_for_second(f"c{i}", sec + 1, rng)
            if rng.random() < 1 / 60:
                alerts += 1
                at = datetime.now(UTC)
                batch.append(
                    AlertRaised(alerts, f"c{i}", f"r{alerts}", "dead_air", "warning", at,
                                sec * 1000, None, "dead air")
                )  # fmt: skip
            for ev in batch:
                state.apply(ev, now)
            events += len(batch)
        for m in state.flush(now):
            text = json.dumps(m)
            msgs += 1
            size += len(text)
            biggest = max(biggest, len(text))
    cpu = time.process_time() - cpu0
    snap = len(json.dumps(state.snapshot()))
    secs = args.seconds
    print(f"board model, {args.calls} live calls, {secs} s, coalescing every {args.interval} s")
    print(f"  events in        {events / secs:8.0f} /s")
    print(f"  messages out     {msgs / secs:8.1f} /s per browser "
          f"({msgs / secs / args.calls:.2f} per call per s)")  # fmt: skip
    print(f"  bytes out        {size / secs / 1024:8.1f} KiB/s per browser "
          f"(largest message {biggest} B; snapshot {snap / 1024:.0f} KiB)")  # fmt: skip
    print(f"  board CPU        {100 * cpu / secs:8.2f} % of one core "
          f"({1e6 * cpu / max(events, 1):.1f} µs per event incl. flush + JSON)")  # fmt: skip


if __name__ == "__main__":
    main()
