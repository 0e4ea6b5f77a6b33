"""Play is not download (issue 17 item 6), and a failed recording is said (item 7).

Before: a supervisor's play request (`GET .../recording`, no Range) got the same 200 and the
same bytes as QA's `?download=true`, so the role restriction on downloads was cosmetic. Now a
play answer is always a window (206, `inline`, at most `api.play_window_s` of audio); a player
reaches the rest by asking on, each window audited with its media time; only a download sends
the file whole, as an attachment.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.web.api import media
from storage.records import CallClosed, CallOpened, TraceAdded
from storage.repository import Repository
from tests import api_data
from tests.fixtures_api import ApiHarness, make_api

URL = "/api/calls/c1/recording"


@pytest.fixture
def short_window(repo: Repository, tmp_path: Path) -> Iterator[ApiHarness]:
    harness = make_api(repo, tmp_path / "data", api={"play_window_s": 1.0})
    api_data.seed(repo, harness.settings.recordings_dir)  # c1: 2 s of 8 kHz stereo
    with harness.client:
        yield harness


def test_play_is_a_window_and_only_download_is_the_file(short_window: ApiHarness) -> None:
    h = short_window
    wav = (h.settings.recordings_dir / "2026/11/20/c1.wav").read_bytes()
    size, window = len(wav), 44 + 8000 * 4  # the header and 1 s of audio
    sup = h.headers("supervisor")
    played = h.client.get(URL, headers=sup)
    assert played.status_code == 206 and played.content == wav[:window]
    assert played.headers["content-range"] == f"bytes 0-{window - 1}/{size}"
    assert played.headers["content-disposition"].startswith("inline")
    assert played.headers["cache-control"] == "private, no-store"
    # An open range (what <audio> sends) is cut the same way; asking on gets the rest.
    first = h.client.get(URL, headers={**sup, "Range": "bytes=0-"})
    assert first.status_code == 206 and first.content == wav[:window]
    rest = h.client.get(URL, headers={**sup, "Range": f"bytes={window}-"})
    assert rest.status_code == 206 and first.content + rest.content == wav
    # Asking for the whole file by range is cut too, for every role.
    for role in ("supervisor", "qa", "admin"):
        r = h.client.get(URL, headers={**h.headers(role), "Range": f"bytes=0-{size - 1}"})
        assert r.status_code == 206 and len(r.content) == window
    head = h.client.head(URL, headers=sup)
    assert head.status_code == 206 and head.headers["content-length"] == str(window)
    # The supervisor cannot download; QA's download is the file, as an attachment.
    assert h.client.get(URL + "?download=true", headers=sup).status_code == 403
    down = h.client.get(URL + "?download=true", headers=h.headers("qa"))
    assert down.status_code == 200 and down.content == wav
    assert down.headers["content-disposition"] == 'attachment; filename="c1.wav"'
    assert played.content != down.content
    # Each window audited with the media time it carried.
    plays = [(a.username, a.status, a.start_ms, a.end_ms)
             for a in h.ctx.access.list_audit(action="recording.play")
             if a.result == "allowed"]  # fmt: skip
    assert plays[:3] == [("supervisor1", 206, 0, 1000), ("supervisor1", 206, 0, 1000),
                         ("supervisor1", 206, 1000, 2000)]  # fmt: skip


def test_a_failed_recording_is_marked_and_never_served_as_complete(seeded: ApiHarness) -> None:
    """A call whose recording stopped at 1.5 s (disk full) says so in its detail and on
    every response; one that failed before any audio has no recording (404, said why)."""
    at = api_data.DAY
    failed = lambda call_id, ms: TraceAdded(  # noqa: E731
        call_id=call_id, seq=0, kind="recording_failed", at=at, media_ms=ms, party=None,
        data={"error": "ENOSPC", "reason": "disk full", "frames_kept": ms * 8},
    )  # fmt: skip
    seeded.repo.apply([failed("c1", 1500)])
    qa = seeded.headers("qa")
    detail = seeded.client.get("/api/calls/c1", headers=qa).json()
    assert detail["recording_failed"] == {"at_ms": 1500, "error": "ENOSPC", "reason": "disk full"}
    assert seeded.client.get("/api/calls/c2", headers=qa).json()["recording_failed"] is None
    r = seeded.client.get(URL, headers=qa)
    assert r.status_code == 206 and r.headers["x-recording-failed-at-ms"] == "1500"
    # Failed at 0 ms: no file was left, and the 404 says why.
    seeded.repo.apply([
        CallOpened(call_id="e1", external_id="sw-e1", started_at=at, protocol="audiofork",
                   sample_rate=8000, channels=2, recording_path="2026/11/20/e1.wav",
                   parties=(("customer", 0), ("agent", 1))),
        failed("e1", 0),
        CallClosed("e1", datetime(2026, 11, 20, 0, 1, tzinfo=UTC), "completed", "normal",
                   60_000, 0, {}),
    ])  # fmt: skip
    r = seeded.client.get("/api/calls/e1/recording", headers=qa)
    assert r.status_code == 404 and "disk full" in r.json()["detail"]


def test_a_read_error_is_a_5xx_with_an_error_id_and_audited(
    seeded: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELIABILITY.md S4: EIO while reading a recording for replay gives a 500 naming an
    error id, an audit row that failed, and no audio presented as the recording."""

    def broken(path: Path, start: int, length: int) -> Iterator[bytes]:
        raise OSError(errno.EIO, "Input/output error")
        yield b""  # a generator, like the real reader

    monkeypatch.setattr(media, "read_file", broken)
    r = seeded.client.get(URL, headers={**seeded.headers("qa"), "Range": "bytes=0-"})
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    error_id = r.json()["detail"].rsplit("error id ", 1)[1].rstrip(")")
    assert len(error_id) == 8
    [row] = seeded.ctx.access.list_audit(action="recording.play")
    assert (row.result, row.status, row.detail["error_id"]) == ("failed", 500, error_id)
    assert row.detail["reason"] == "read error EIO"
