"""A fork in the wrong format is never read silently (issue 19 item 2): deployment defaults,
per-path query parameters, and the format check's warning, trace entry and board badge."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from websockets.asyncio.client import connect

from audio_quality.format_check import StreamFormatCheck
from audio_quality.impair import to_int16
from config.settings import GatewaySettings
from ivr_sim.script import builtin_scripts, load_script, render
from monitor.board.state import BoardState
from monitor.errors import ProtocolError
from monitor.events import Marked
from monitor.runtime.gateway import new_decoder
from monitor.wire.audiofork import AudioForkDecoder, path_format
from monitor.wire.events import CallStarted
from tests.inprocess_support import ThreadedServer
from tests.quality_support import SPEECH_DIR, load, speech_track
from tests.test_board_state import T0, opened

ZH = [f"zh/{p.name}" for p in sorted((SPEECH_DIR / "zh").glob("*.flac"))]
LJ = [f"en/ljspeech_LJ001-{n:04d}.flac" for n in (1, 3, 4, 5)]


def mono(files: list[str], rate: int, seed: int = 1, seconds: float = 12.0) -> np.ndarray:
    return to_int16(speech_track(files, rate, seed, seconds, (0.3, 1.0)))


def check(samples: npt.NDArray[np.int16], rate: int, channels: int) -> list[str]:
    c = StreamFormatCheck(rate, channels)
    found = None
    for i in range(0, samples.size, 333):  # odd chunks: frames torn anywhere
        got = c.feed(samples[i : i + 333])
        if got is not None:
            found = got
    return [f.reason for f in (found if found is not None else c.verdict())]


@pytest.mark.parametrize("path", builtin_scripts(), ids=lambda p: p.stem)
def test_right_format_raises_nothing(path: Path) -> None:
    call = render(load_script(path))
    assert check(call.audio.ravel(), call.sample_rate, 2) == []
    assert check(np.ascontiguousarray(call.audio[:, 1]), call.sample_rate, 1) == []


@pytest.mark.parametrize("files", [ZH, LJ], ids=["zh", "en"])
def test_wrong_layouts_are_flagged(files: list[str]) -> None:
    m16 = mono(files, 16000)
    assert check(m16, 16000, 1) == []
    # drachtio's `mono 16k` read with the old assumption, 8 kHz stereo:
    assert check(m16, 8000, 2) == ["channels_interleaved"]
    two = render(load_script(builtin_scripts()[0])).audio
    assert check(two.ravel(), 16000, 1) == ["mono_interleaved"]  # stereo read as mono
    dup = np.repeat(two[:, 0:1], 2, axis=1).ravel()  # one signal on both channels
    assert "channels_identical" in check(dup, 8000, 2)


def test_pitch_out_of_any_voice_range_is_flagged() -> None:
    """8 kHz read as 16 kHz doubles a voice's pitch (female 190-260 Hz -> 370-420 Hz); a male
    voice's 16 kHz read as 8 kHz halves it (99 -> 50 Hz)."""
    assert check(mono(LJ, 8000), 16000, 1) == ["pitch_too_high"]
    male = to_int16(load("conversation/fasterwhisper_stereo_diarization.flac", 16000))
    assert check(male, 16000, 1) == []
    assert check(male, 8000, 1) == ["pitch_too_low"]


def test_format_from_path_query_defaults_and_metadata() -> None:
    assert path_format("rate=16000&channels=1&token=x") == {
        "default_sample_rate": 16000, "default_channels": 1}  # fmt: skip
    with pytest.raises(ProtocolError, match="whole number"):
        path_format("rate=16k")
    meta = '{"callid":"c1"}'  # drachtio: no rate, no channels

    def started(decoder: object, text: str = meta) -> tuple[int, int]:
        assert isinstance(decoder, AudioForkDecoder)
        [ev] = decoder.receive_text(text)
        assert isinstance(ev, CallStarted)
        return ev.metadata.sample_rate, ev.metadata.channels

    assert started(new_decoder("audiofork", GatewaySettings(), "/audiofork")) == (8000, 2)
    cfg = GatewaySettings(default_sample_rate=16000, default_channels=1)
    assert started(new_decoder("audiofork", cfg, "/audiofork")) == (16000, 1)
    per_path = new_decoder("audiofork", GatewaySettings(), "/audiofork?rate=16000&channels=1")
    assert started(per_path) == (16000, 1)
    # The metadata's own fields win over the path and the defaults.
    explicit = '{"callid":"c1","sampleRate":8000,"mixType":"stereo"}'
    assert started(new_decoder("audiofork", cfg, "/?rate=16000"), explicit) == (8000, 2)
    bad = new_decoder("audiofork", cfg, "/audiofork?channels=3")
    with pytest.raises(ProtocolError, match="channel count 3"):
        started(bad)


def test_board_badges_a_format_suspect() -> None:
    board = BoardState(today=T0.date())
    board.apply(opened(), now=0.0)
    board.apply(Marked("c1", 3, 3000, datetime.now(UTC), "format_suspect", None,
                       {"reasons": ["channels_interleaved"]}), now=1.0)  # fmt: skip
    [card] = board.snapshot()["calls"]
    assert card["format_suspect"] == ["channels_interleaved"]


async def _stream(url: str, ext: str, pcm: bytes, rate: int) -> None:
    async with connect(url, subprotocols=["audio.drachtio.org"], max_size=None) as ws:
        await ws.send(json.dumps({"callid": ext, "agent": "7"}))  # no rate, as drachtio sends
        step = rate // 50 * 2
        for i in range(0, len(pcm), step):
            await ws.send(pcm[i : i + step])
            if i % (step * 25) == 0:
                await asyncio.sleep(0.05)  # well under the gateway's rate limit


def test_gateway_reads_the_path_format_and_flags_a_wrong_one(
    inprocess_server: ThreadedServer,
) -> None:
    server = inprocess_server  # the whole server in this process, ASR scripted
    pcm = mono(ZH, 16000, seconds=8.0).astype("<i2").tobytes()
    right, wrong = f"fmt-right-{uuid.uuid4()}", f"fmt-wrong-{uuid.uuid4()}"
    asyncio.run(_stream(server.url + "/audiofork?rate=16000&channels=1", right, pcm, 16000))
    asyncio.run(_stream(server.url + "/audiofork", wrong, pcm, 16000))
    good = server.wait_call(right)
    assert (good.sample_rate, good.channels) == (16000, 1)
    assert not [t for t in good.trace if t.kind == "format_suspect"]
    bad = server.wait_call(wrong)
    assert (bad.sample_rate, bad.channels) == (8000, 2)  # read as assumed, but not silently:
    [flag] = [t for t in bad.trace if t.kind == "format_suspect"]
    assert flag.data["reasons"] == ["channels_interleaved"]
    assert "does not look like 8000 Hz, 2 channel(s)" in server.log()


def _paced(
    samples: npt.NDArray[np.int16], rate: int, channels: int, true_rate: int, speed: float = 1.0
) -> list[str]:
    """Mono `samples`, really at `true_rate`, read as `rate` x `channels`, arriving at
    `speed` x real time; the pace verdict, asked after every 20 ms message."""
    c = StreamFormatCheck(rate, channels)
    step = true_rate // 50  # what a switch sends every 20 ms
    for k, i in enumerate(range(0, samples.size, step)):
        c.feed(samples[i : i + step])
        got = c.pace((k + 1) * 0.02 / speed)
        if got is not None:
            return [f.reason for f in got]
    return ["undecided"]


@pytest.mark.parametrize("files", [ZH, LJ], ids=["zh", "en"])
def test_pace_flags_a_wrong_rate_whatever_the_voice(files: list[str]) -> None:
    """16 kHz read as 8 kHz: the pitch check misses 6 of 8 test speakers (their halved pitch,
    100-120 Hz, is a plausible voice), the pace never: a live switch streams in real time."""
    m16 = mono(files, 16000, seconds=14.0)
    assert check(m16, 8000, 1) == []  # the content check alone does not see it ...
    assert _paced(m16, 8000, 1, 16000) == ["pace_double"]  # ... the pace does
    assert _paced(m16, 16000, 1, 16000) == []
    m8 = mono(files, 8000, seconds=14.0)
    assert _paced(m8, 16000, 1, 8000) == ["pace_half"]
    assert _paced(m8, 8000, 1, 8000) == []
    # 16 kHz mono read as 8 kHz stereo arrives at the right pace (its layout check flags it).
    assert _paced(m16, 8000, 2, 16000) == []
    # A replay faster than twice real time says nothing (nothing to tell from its pace).
    assert _paced(np.tile(m16, 3), 8000, 1, 16000, speed=4.0) == []


def test_the_pace_is_checked_only_where_the_format_is_a_guess() -> None:
    """A format the switch states itself is taken at its word (a simulator replaying at 2x
    is not a wrong rate); one from the path or the defaults gets the pace check."""
    m16 = mono(ZH, 16000, seconds=12.0)
    c = StreamFormatCheck(8000, 1, check_pace=False)
    c.feed(m16)
    assert c.pace(11.0) is None and c.pace_done

    def started(query: str, meta: str) -> str:
        decoder = new_decoder("audiofork", GatewaySettings(), query)
        assert isinstance(decoder, AudioForkDecoder)
        [ev] = decoder.receive_text(meta)
        assert isinstance(ev, CallStarted)
        return str(ev.info["format_from"])

    assert started("/", '{"callid":"c1","sampleRate":8000,"mixType":"stereo"}') == "metadata"
    assert started("/", '{"callid":"c1","sample_rate":16000,"channels":1}') == "metadata"
    assert started("/", '{"callid":"c1","sampleRate":16000}') == "path or defaults"
    assert started("/?rate=16000&channels=1", '{"callid":"c1"}') == "path or defaults"
