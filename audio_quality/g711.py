"""ITU-T G.711 μ-law and A-law, vectorised (encode int16 → uint8 codes, decode back).

Owns the companding arithmetic, so clipping and level figures can be checked on the codec path
that telephony calls take, and so tests need not import `audioop` (deprecated in 3.11, gone
in 3.13). Bit-exact with the ITU reference (G.191 `g711.c`) and CPython's `audioop`:
decoded magnitudes top out at 32124 (μ-law) and 32256 (A-law), the full scales used by
`levels.full_scale`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_ULAW_BIAS = 0x84 >> 2  # on the 14-bit magnitude
_ULAW_CLIP = 8159


def ulaw_encode(x: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """int16 PCM → μ-law codes. Shape kept. G.711 on the 14-bit magnitude (2 LSBs dropped, as
    in G.191 and `audioop`): segment = top bit of |x| + 33 above bit 5, the 4 bits below it
    are the mantissa, all bits inverted."""
    v = x.astype(np.int32) >> 2
    sign = np.where(v < 0, 0x00, 0x80)  # inverted below: negative codes have the top bit 0
    mag = np.minimum(np.abs(v), _ULAW_CLIP) + _ULAW_BIAS
    _, e = np.frexp(mag.astype(np.float64))  # mag = m·2^e, m in [0.5, 1): top bit is e - 1
    seg = np.clip(e - 6, 0, 8)
    uval = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))
    return np.asarray(uval ^ (sign | 0x7F), dtype=np.uint8)


def ulaw_decode(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """μ-law codes → int16 PCM (|x| ≤ 32124)."""
    u = ~codes.astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.asarray(np.where(u & 0x80, -mag, mag), dtype=np.int16)


def alaw_encode(x: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """int16 PCM → A-law codes (13-bit magnitude, segments by top bit, even bits inverted)."""
    v = x.astype(np.int32) >> 3
    mask = np.where(v >= 0, 0xD5, 0x55)
    mag = np.where(v >= 0, v, -v - 1)
    _, e = np.frexp(np.maximum(mag, 1).astype(np.float64))
    seg = np.clip(e - 5, 0, 8)  # 0 for mag < 32, then one per octave
    shift = np.where(seg < 2, 1, seg)
    aval = (seg << 4) | ((mag >> shift) & 0x0F)
    aval = np.where(seg >= 8, 0x7F, aval)
    return np.asarray((aval ^ mask) & 0xFF, dtype=np.uint8)


def alaw_decode(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """A-law codes → int16 PCM (|x| ≤ 32256)."""
    a = codes.astype(np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.asarray(np.where(a & 0x80, t, -t), dtype=np.int16)


def round_trip(x: npt.NDArray[np.int16], codec: str) -> npt.NDArray[np.int16]:
    """Encode and decode with `codec` (`PCMU` or `PCMA`; `L16` returns x unchanged)."""
    if codec == "PCMU":
        return ulaw_decode(ulaw_encode(x))
    if codec == "PCMA":
        return alaw_decode(alaw_encode(x))
    if codec == "L16":
        return x
    raise ValueError(f"codec must be PCMU, PCMA or L16, got {codec!r}")
