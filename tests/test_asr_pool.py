"""AsrPool: real worker processes with the real model, driven from asyncio."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from asr.errors import AsrWorkerError, ModelLoadError, ModelNotFoundError
from asr.pool import AsrPool
from asr.settings import AsrSettings
from asr.types import AsrRequest, AsrResult
from tests.fixtures_asr import REFERENCE_BATCHES, requests_for


async def _ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


@pytest.mark.serial  # bounds the event loop's lag
async def test_pool_matches_the_engine_and_keeps_the_loop_responsive(
    asr_settings: AsrSettings, asr_cache_dir: Path, reference_batches: list[list[AsrResult]]
) -> None:
    pool = AsrPool(asr_settings, asr_cache_dir)
    assert pool.worker_count == 2
    await pool.start()
    try:
        pids = pool.worker_pids
        assert len(pids) == 2 and os.getpid() not in pids
        gaps: list[float] = []
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticker(gaps, stop))
        started = time.perf_counter()
        # Both batches at once: one per worker, in parallel.
        results = await asyncio.gather(
            *(pool.transcribe_batch(requests_for(batch)) for batch in REFERENCE_BATCHES)
        )
        elapsed = time.perf_counter() - started
        stop.set()
        await ticker
    finally:
        await pool.close()

    for got, expected in zip(results, reference_batches, strict=True):
        assert [(r.tag, r.text, r.language) for r in got] == [
            (r.tag, r.text, r.language) for r in expected
        ]
    # Transcription took real time (short encoder windows make it well under a second), yet
    # the loop kept ticking every ~10 ms: ASR blocking the loop would show one gap ~ elapsed.
    assert elapsed > 0.2
    assert len(gaps) > elapsed / 0.1
    assert max(gaps) < min(0.5, elapsed / 2), f"event loop stalled for {max(gaps):.2f} s"


async def test_a_killed_worker_fails_its_batch_and_is_restarted(
    asr_settings: AsrSettings, asr_cache_dir: Path
) -> None:
    settings = asr_settings.model_copy(update={"workers": 1})
    async with AsrPool(settings, asr_cache_dir) as pool:
        [old_pid] = pool.worker_pids
        # Killed *during* its batch: stopped first, so the batch is surely sent to it and
        # waiting (a worker killed while idle is restarted silently, tested below).
        os.kill(old_pid, signal.SIGSTOP)
        batch = asyncio.create_task(
            pool.transcribe_batch(requests_for(["en/asterisk_vm-sorry.flac"]))
        )
        await asyncio.sleep(0.5)
        assert not batch.done()
        os.kill(old_pid, signal.SIGKILL)
        with pytest.raises(AsrWorkerError, match="died"):
            await asyncio.wait_for(batch, 30.0)
        [result] = await pool.transcribe_batch(requests_for(["en/asterisk_vm-sorry.flac"]))
        assert "understand your response" in result.text
        assert pool.worker_pids != [old_pid]
        # Killed between batches: the next batch finds it dead and restarts it first, or (when
        # the forkserver has not yet reported the death) fails as above; the one after works.
        [idle_pid] = pool.worker_pids
        os.kill(idle_pid, signal.SIGKILL)
        try:
            [result] = await pool.transcribe_batch(requests_for(["en/asterisk_vm-sorry.flac"]))
        except AsrWorkerError as exc:
            assert "died" in str(exc)
            [result] = await pool.transcribe_batch(requests_for(["en/asterisk_vm-sorry.flac"]))
        assert "understand your response" in result.text
        assert pool.worker_pids not in ([old_pid], [idle_pid])
        # Bad input is the caller's error; it does not take the worker down.
        with pytest.raises(ValueError, match="float32"):
            await pool.transcribe_batch([AsrRequest(np.zeros(10, np.float64))])
        assert len(pool.worker_pids) == 1
    with pytest.raises(AsrWorkerError, match="closed"):
        await pool.transcribe_batch(requests_for(["en/asterisk_vm-sorry.flac"]))


async def test_a_hung_worker_is_killed_when_its_batch_is_given_up(
    asr_settings: AsrSettings, asr_cache_dir: Path
) -> None:
    """RELIABILITY B3 at the pool: a worker that never answers (stopped, as a decode stuck
    in native code would be) must not hold its slot once the caller gives up (the service's
    `asr.utterance_timeout_s`): it is killed and the next batch gets a fresh one."""
    settings = asr_settings.model_copy(update={"workers": 1})
    async with AsrPool(settings, asr_cache_dir) as pool:
        [old_pid] = pool.worker_pids
        os.kill(old_pid, signal.SIGSTOP)  # alive, never answers
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                pool.transcribe_batch(requests_for(["en/asterisk_vm-sorry.flac"])), 1.0
            )
        [result] = await asyncio.wait_for(
            pool.transcribe_batch(requests_for(["en/asterisk_vm-sorry.flac"])), 120.0
        )
        assert "understand your response" in result.text
        assert pool.worker_pids != [old_pid]
        assert _gone(old_pid)


def _gone(pid: int) -> bool:
    """Exited (reaped, or a zombie until its parent reaps it): not stopped, not running."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


async def test_a_model_that_cannot_load_fails_start(
    asr_settings: AsrSettings, asr_cache_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"\0" * 4096)
    settings = asr_settings.model_copy(update={"model": str(broken), "workers": 1})
    pool = AsrPool(settings, asr_cache_dir)
    with pytest.raises(ModelLoadError, match="broken-model"):
        await pool.start()


async def test_an_unknown_model_fails_before_any_worker_starts(
    asr_settings: AsrSettings, tmp_path: Path
) -> None:
    settings = asr_settings.model_copy(update={"model": "no-such-model", "offline": True})
    pool = AsrPool(settings, tmp_path)
    with pytest.raises(ModelNotFoundError, match="three ways"):
        await pool.start()
    assert pool.worker_pids == []
