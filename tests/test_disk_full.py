"""Disk full: the recording stops, the call does not (issue 17 item 7, RELIABILITY.md S3).

Before: `ENOSPC` from the recorder's write escaped into the receive loop, the switch got close
1011 and the call was stored `interrupted/transport`, its ASR and metrics cut short.

The first test puts the recordings on a real, small file system (a 256 KiB tmpfs mounted for
the test; skipped where mounting is not allowed) under the in-process runtime
(tests/runtime_support.py: real gateway, SQLite, bus, simulator; ASR scripted at its seam, its
"transcript" a fingerprint of the audio it got) with the real alert service on the bus. Two
calls stream at once and fill the disk part-way. The second injects `OSError(ENOSPC)` at the
recorder's write seam, so it runs everywhere, including the failure at the very first write.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ivr_sim import stream_call
from ivr_sim.stream import call_metadata
from monitor.runtime import recording as recording_module
from monitor.runtime.alert_service import AlertService
from monitor.runtime.recording import CallRecording
from storage import recordings
from storage.models import CallDetail
from tests.runtime_support import Rig, expected_utterances, rig_factory, script, until

__all__ = ["rig_factory"]  # the fixture


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[None]:
    """A real file system of `size` at `path` (a tmpfs: root, or sudo without a password)."""
    path.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)]
    prefix: list[str] = []
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode and shutil.which("sudo"):
        prefix = ["sudo", "-n"]
        done = subprocess.run(prefix + mount, capture_output=True, text=True, check=False)
    if done.returncode:
        message = f"cannot mount a small tmpfs here (root or sudo -n): {done.stderr.strip()}"
        if os.environ.get("CI", "").lower() == "true":  # strict mode: nothing may be skipped
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield
    finally:
        subprocess.run([*prefix, "umount", "-l", str(path)], check=False)


async def _alerts(rig: Rig) -> AlertService:
    service = AlertService(repo=rig.repo, storage=rig.storage, bus=rig.bus,
                           registry=rig.gateway.calls)  # fmt: skip
    await service.start()
    return service


async def _finalised(rig: Rig, external_id: str) -> CallDetail | None:
    got = await rig.call(external_id)
    return got if got is not None and any(t.kind == "finalised" for t in got.trace) else None


def _check_call(rig: Rig, stored: CallDetail, sent: bytes, expected: dict[Any, str]) -> int:
    """The call went on in full; its recording holds the call up to the failure, exactly.
    Returns the media ms of the failure."""
    assert (stored.status, stored.end_reason) == ("completed", "normal")
    [failed] = [t for t in stored.trace if t.kind == "recording_failed"]
    assert failed.data["error"] == "ENOSPC" and failed.data["reason"] == "disk full"
    at_ms = failed.media_ms
    assert at_ms is not None and at_ms < stored.duration_ms
    # ASR and live metrics unaffected: every utterance of the whole call transcribed (the
    # fingerprints prove the exact audio), and readings past the failure.
    assert {(s.party, s.start_ms, s.end_ms): s.text for s in stored.segments} == expected
    assert any(s.start_ms > at_ms for s in stored.segments)
    readings = rig.repo.get_analysis(stored.call_id).readings
    assert max(r.end_ms for r in readings) > at_ms + 5000
    # The recording: the call up to the failure, sample-exact, a valid WAV; none at all when
    # it failed before any audio (never an empty file presented as a recording).
    path = rig.settings.recordings_dir / stored.recording_path
    frames = stored.recording_frames or 0
    assert frames == failed.data["frames_kept"] and at_ms == frames * 1000 // 8000
    if frames == 0:
        assert not path.exists()
        return at_ms
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == frames
        assert w.readframes(frames) == sent[: frames * 4]
    assert path.stat().st_size == recordings.HEADER_BYTES + frames * 4
    return at_ms


async def test_a_full_disk_stops_the_recordings_not_the_calls(rig_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with small_disk(tmp_path / "recordings", "256k"):
        # Audio redaction off: what these tests check is that the audio kept before the failure is
        # exactly what was sent; with it on, the kept audio no transcript has checked yet is
        # masked at the end (monitor.runtime.audio_redaction), tested in test_audio_redaction.
        rig: Rig = await rig_factory(privacy={"redact_audio": False})
        alerts = await _alerts(rig)
        try:
            call = script("en_billing_8k.toml")  # 24 s, 8 kHz stereo: 768 KB each
            metas = [call_metadata(call) for _ in range(2)]
            await asyncio.gather(
                *(stream_call(rig.gateway.url, call, pace=8.0, metadata=m) for m in metas)
            )
            expected = expected_utterances(call, metas[0])
            ext = [str(m["callid"]) for m in metas]
            await until(lambda: _all_finalised(rig, ext), 20.0)
            stored = [await rig.call(e) for e in ext]
            await alerts.settle()
            await rig.storage.drain()
            for got in stored:
                assert got is not None
                at_ms = _check_call(rig, got, call.pcm(), expected)
                # A critical alert within 2 s of the failed write.
                [alert] = rig.repo.list_alerts(call_id=got.call_id, kind="recording_failed")
                [failed] = [t for t in got.trace if t.kind == "recording_failed"]
                assert alert.severity == "critical" and alert.media_start_ms == at_ms
                assert (alert.raised_at - failed.at).total_seconds() < 2.0
            # The disk filled part-way through: both calls kept some audio.
            assert all((got.recording_frames or 0) > 8000 for got in stored if got)
            leftovers = [p for p in (tmp_path / "recordings").rglob("*") if p.is_file()]
            small = [(p.name, p.stat().st_size) for p in leftovers
                     if p.stat().st_size <= recordings.HEADER_BYTES]  # fmt: skip
            assert not small, small
        finally:
            await alerts.close()
            await rig.gateway.stop()  # before the disk goes away


async def _all_finalised(rig: Rig, external_ids: list[str]) -> bool:
    return all([await _finalised(rig, e) for e in external_ids]) and not rig.gateway.calls


@pytest.mark.parametrize("fail_after_bytes", [0, 100_000])
async def test_enospc_at_the_write_seam(
    rig_factory,
    monkeypatch: pytest.MonkeyPatch,
    fail_after_bytes: int,  # type: ignore[no-untyped-def]
) -> None:
    """The same promise with the failure injected where the recorder writes: after
    `fail_after_bytes` of audio (0: the first write; the header went through)."""
    written = {"audio": 0}
    real = recordings._write_all

    def write_all(fd: int, data: bytes) -> None:
        if len(data) != recordings.HEADER_BYTES:  # the header at creation always fits
            if written["audio"] + len(data) > fail_after_bytes:
                raise OSError(errno.ENOSPC, "No space left on device")
            written["audio"] += len(data)
        real(fd, data)

    monkeypatch.setattr(recordings, "_write_all", write_all)
    # Audio redaction off: what these tests check is that the audio kept before the failure is
    # exactly what was sent; with it on, the kept audio no transcript has checked yet is
    # masked at the end (monitor.runtime.audio_redaction), tested in test_audio_redaction.
    rig: Rig = await rig_factory(privacy={"redact_audio": False})
    alerts = await _alerts(rig)
    try:
        call = script("en_billing_8k.toml")
        meta = call_metadata(call)
        await stream_call(rig.gateway.url, call, pace=8.0, metadata=meta)
        await until(lambda: _all_finalised(rig, [str(meta["callid"])]), 20.0)
        await alerts.settle()
        stored = await rig.call(str(meta["callid"]))
        assert stored is not None
        at_ms = _check_call(rig, stored, call.pcm(), expected_utterances(call, meta))
        assert (at_ms == 0) == (fail_after_bytes == 0)
        [alert] = rig.repo.list_alerts(call_id=stored.call_id, kind="recording_failed")
        assert alert.severity == "critical"
    finally:
        await alerts.close()


def test_a_recording_that_cannot_be_created_leaves_no_file(tmp_path: Path) -> None:
    """Disk full at the header: no empty WAV left behind, the failure reported at 0 ms."""
    full = tmp_path / "full"
    with small_disk(full, "4k"):
        (full / "filler").write_bytes(np.zeros(4096, np.uint8).tobytes()[:4096])
        rec = CallRecording(full / "c.wav", 8000, 2, flush_interval_s=0.5, fsync=False)
        assert rec.failure is not None and rec.failure.error == "ENOSPC"
        assert rec.failure.at_ms == 0 and not (full / "c.wav").exists()
        rec.append(bytes(3200))
        assert rec.frames_lost == 800 and rec.frames_written == 0
        assert recording_module.RecordingFailure(0, 0, "ENOSPC").reason == "disk full"


async def test_a_healthy_recording_reports_its_frames_after_close(tmp_path: Path) -> None:
    rec = CallRecording(tmp_path / "ok.wav", 8000, 2, flush_interval_s=0.5, fsync=False)
    rec.append(bytes(16000))  # 0.5 s: a flush is due
    assert await rec.flush() is None and rec.frames_written == 4000
    rec.append(bytes(400))
    assert await rec.close() == (4100, None)
    assert rec.frames_written == 4100 and rec.frames_lost == 0 and rec.failure is None
