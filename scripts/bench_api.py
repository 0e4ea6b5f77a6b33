"""Call-search benchmark: how long the API's searches take over many stored calls.

    .venv/bin/python scripts/bench_api.py                         # SQLite, 20,000 calls
    .venv/bin/python scripts/bench_api.py --calls 100000
    .venv/bin/python scripts/bench_api.py --url postgresql+psycopg://user@host/db  # empty db

Seeds `--calls` calls (6 transcript segments each, half Mandarin, half English; 20 agents,
5 queues, 30 days; grades, durations) through `Repository.apply`, then times each kind of
search (`Repository.search_calls`, the query behind GET /api/calls, with its total count)
and the per-agent KPIs over a week: median and max of `--repeat` runs, in ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.records import CallClosed, CallOpened, CallScored, Record, SegmentAdded  # noqa: E402
from storage.repository import Repository  # noqa: E402
from storage.search import CallQuery  # noqa: E402

ZH = [
    "您好，欢迎致电信用卡中心",
    "我想查询一下账单",
    "请问您的卡号是多少",
    "这笔交易需要退款",
    "好的，已经为您办理",
    "还有其他可以帮您的吗",
    "我的卡被冻结了",
    "分期付款怎么申请",
]
EN = ["thank you for calling", "I would like a refund", "can you confirm your address",
      "the payment did not go through", "let me check that for you", "is there anything else",
      "my card was declined", "I want to close the account"]  # fmt: skip
GRADES = ("excellent", "good", "pass", "needs_improvement")
START = datetime(2026, 10, 1, tzinfo=UTC)


def seed(repo: Repository, n: int) -> None:
    rnd = random.Random(1)
    batch: list[Record] = []
    for i in range(n):
        cid = f"b{i:08d}"
        started = START + timedelta(seconds=rnd.uniform(0, 30 * 86400))
        duration = int(rnd.lognormvariate(12, 0.6))
        zh = i % 2 == 0
        batch.append(CallOpened(cid, f"sw{i}", started, "audiofork", 8000, 2, f"{cid}.wav",
                                (("customer", 0), ("agent", 1)), agent_id=f"agent{i % 20}",
                                queue=f"queue{i % 5}", caller=f"+1555{i:07d}"))  # fmt: skip
        for k in range(6):
            text = rnd.choice(ZH if zh else EN)
            party = ("agent", "customer")[k % 2]
            lang = "zh" if zh else "en"
            batch.append(SegmentAdded(cid, party, k * 5000, k * 5000 + 4000, text, lang, 0.9))
        batch.append(CallClosed(cid, started + timedelta(milliseconds=duration), "completed",
                                "normal", duration, duration * 8))  # fmt: skip
        batch.append(CallScored(cid, 80.0, rnd.choice(GRADES)))
        if len(batch) >= 5000:
            repo.apply(batch)
            batch = []
    repo.apply(batch)


def timed(fn: object, repeat: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--url", help="an empty database (default: a temporary SQLite file)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        repo = Repository.from_url(url)
        repo.upgrade()
        t0 = time.perf_counter()
        seed(repo, args.calls)
        print(f"{repo.engine.dialect.name}: seeded {args.calls} calls "
              f"({args.calls * 6} segments) in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        week = {"since": START + timedelta(days=7), "until": START + timedelta(days=14)}
        cases = {
            "newest 50, no filter": CallQuery(),
            "agent + week": CallQuery(agent="agent3", **week),
            "queue + grade": CallQuery(queue="queue2", grade="needs_improvement"),
            "duration 5-10 min": CallQuery(min_duration_ms=300_000, max_duration_ms=600_000),
            "Mandarin text 退款": CallQuery(text="退款"),
            "Mandarin 2 terms": CallQuery(text="信用卡 账单"),
            "English text 'refund'": CallQuery(text="refund"),
            "Mandarin text + agent + week": CallQuery(text="冻结", agent="agent4", **week),
            "text with no match": CallQuery(text="不存在的词"),
        }
        print(f"{'search':34} {'median ms':>10} {'max ms':>8} {'total':>7}")
        for name, q in cases.items():
            med, worst, (_, total) = timed(lambda q=q: repo.search_calls(q), args.repeat)  # type: ignore[misc]
            print(f"{name:34} {med:10.1f} {worst:8.1f} {total:7d}")
        med, worst, groups = timed(
            lambda: repo.kpis(group_by="agent", since=week["since"], until=week["until"]),
            args.repeat,
        )
        print(f"{'KPIs per agent, one week':34} {med:10.1f} {worst:8.1f} {len(groups):7d}")
        repo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
