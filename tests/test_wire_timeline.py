"""Media timelines: reordered, duplicated and dropped chunks give a recording equal, sample for
sample, to the original with silence exactly where chunks were dropped - driven through the real
Twilio codec (timestamps) as the gateway does, and with random orderings (hypothesis)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.events import Party
from monitor.wire.events import PartyAudio
from monitor.wire.timeline import CallTimeline
from monitor.wire.twilio import TwilioDecoder, TwilioEncoder

C, A = Party.CUSTOMER, Party.AGENT
CHUNK = 160  # 20 ms at 8 kHz
N = 60


def original() -> dict[Party, npt.NDArray[np.int16]]:
    # Values on the μ-law grid so the codec round trip is the identity.
    from audio_quality.g711 import ulaw_decode

    rng = np.random.default_rng(7)
    return {p: ulaw_decode(rng.integers(0, 256, CHUNK * N).astype(np.uint8)) for p in (C, A)}


def play(order: list[tuple[Party, int]], window: int = 1600) -> tuple[np.ndarray, dict]:  # type: ignore[type-arg]
    audio = original()
    enc = TwilioEncoder(stream_sid="MZ1", call_sid="CA1")
    dec = TwilioDecoder()
    dec.receive_text(enc.start(["inbound", "outbound"], {}))
    tl = CallTimeline([C, A], window=window, max_lag=8000, tolerance=8)
    out = bytearray()
    for party, i in order:
        track = "inbound" if party is C else "outbound"
        msg = enc.media(track, i * 20, audio[party][i * CHUNK : (i + 1) * CHUNK].tobytes())
        (ev,) = dec.receive_text(msg)
        assert isinstance(ev, PartyAudio)
        out += tl.push(ev.party, ev.position, ev.pcm)
    out += tl.finish()
    return np.frombuffer(bytes(out), "<i2").reshape(-1, 2), tl.counts()


def expected(dropped: set[tuple[Party, int]]) -> np.ndarray:  # type: ignore[type-arg]
    audio = original()
    exp = np.stack([audio[C], audio[A]], axis=1).copy()
    for party, i in dropped:
        exp[i * CHUNK : (i + 1) * CHUNK, 0 if party is C else 1] = 0
    return exp


def in_order() -> list[tuple[Party, int]]:
    return [(p, i) for i in range(N) for p in (C, A)]


def test_reordered_duplicated_and_dropped_chunks() -> None:
    order = in_order()
    order[10], order[14] = order[14], order[10]  # customer chunks 5 and 7 swapped
    order.insert(40, order[20])  # customer chunk 10 again, later
    order.insert(41, (A, 3))  # an old agent chunk again
    dropped = {(C, 30), (A, 31), (A, 32)}
    order = [c for c in order if c not in dropped]
    got, counts = play(order)
    assert np.array_equal(got, expected(dropped))
    # 7 then 6 then 5: two chunks came after a later one
    assert counts["customer"]["reordered"] == 2 and counts["customer"]["duplicates"] == 1
    assert counts["agent"]["duplicates"] == 1
    assert (counts["customer"]["gaps"], counts["customer"]["gap_samples"]) == (1, CHUNK)
    assert (counts["agent"]["gaps"], counts["agent"]["gap_samples"]) == (1, 2 * CHUNK)


def test_a_chunk_later_than_the_window_is_dropped_as_late() -> None:
    order = in_order()
    late = order.pop(10)  # customer chunk 5 ...
    order.insert(60, late)  # ... arrives 25 chunks (500 ms) later: its hole was filled
    got, counts = play(order, window=800)  # 100 ms window
    assert np.array_equal(got, expected({late}))
    assert counts["customer"]["late"] == 1 and counts["customer"]["gaps"] == 1


def test_a_stopped_track_is_filled_after_the_lag_bound() -> None:
    tl = CallTimeline([C, A], window=800, max_lag=1600)
    out = b"".join(tl.push(C, i * CHUNK, b"\x01\x00" * CHUNK) for i in range(30))
    frames = np.frombuffer(out, "<i2").reshape(-1, 2)
    assert frames.shape[0] == 30 * CHUNK - 1600  # held back by at most the lag bound
    assert (frames[:, 0] == 1).all() and (frames[:, 1] == 0).all()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_local_shuffle_with_duplicates_and_drops_is_sample_exact(data: st.DataObject) -> None:
    order = in_order()
    # Local reordering within 4 chunk slots (80 ms, inside the 200 ms window).
    keys = [i + data.draw(st.floats(0, 4), label=f"jitter{i}") for i in range(len(order))]
    order = [c for _, c in sorted(zip(keys, order, strict=True))]
    dups = data.draw(st.lists(st.integers(0, len(order) - 1), max_size=6), label="dups")
    for at in dups:
        order.insert(min(at + 3, len(order)), order[at])
    drops = set(data.draw(st.lists(st.sampled_from(in_order()), max_size=5), label="drops"))
    order = [c for c in order if c not in drops]
    got, counts = play(order)
    assert np.array_equal(got, expected(drops))
    assert sum(c["gap_samples"] for c in counts.values()) >= CHUNK * len(
        {d for d in drops if d[1] < N - 1}
    )
