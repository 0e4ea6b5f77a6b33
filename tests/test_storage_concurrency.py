"""One writer thread and several readers sharing a Repository, as the app does (storage writer
plus API/board requests): no reader error, no lost write, readers never see half a batch."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from storage.records import CallOpened, Record, SegmentAdded, TraceAdded
from storage.repository import Repository

CALLS = 40
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def call_batch(n: int) -> list[Record]:
    call_id = f"c{n:03d}"
    at = T0 + timedelta(seconds=n)
    records: list[Record] = [
        CallOpened(call_id, f"ext-{n}", at, "audiofork", 8000, 2, f"{call_id}.wav",
                   (("customer", 0), ("agent", 1))),
    ]  # fmt: skip
    for k in range(5):
        records.append(SegmentAdded(call_id, "agent", k * 1000, k * 1000 + 800, f"第{k}句话",
                                    "zh", 0.8))  # fmt: skip
        records.append(TraceAdded(call_id, k, "utterance", at, media_ms=k * 1000))
    return records


def test_writer_and_readers_share_one_repository(repo: Repository) -> None:
    done = threading.Event()
    errors: list[BaseException] = []
    torn: list[str] = []

    def writer() -> None:
        try:
            for n in range(CALLS):
                repo.apply(call_batch(n))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                for summary in repo.list_calls(text="第4句", limit=5):
                    detail = repo.get_call(summary.call_id)
                    # A batch is one transaction: a visible call has all its rows.
                    if detail is None or len(detail.segments) != 5 or len(detail.trace) != 5:
                        torn.append(summary.call_id)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert torn == []
    assert len(repo.list_calls(limit=1000)) == CALLS
    assert len(repo.list_calls(text="第4句", limit=1000)) == CALLS
