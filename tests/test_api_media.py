"""Byte ranges of recordings (pure): RFC 9110 single ranges, ignored and unsatisfiable ones,
and the media time a range covers."""

from __future__ import annotations

import pytest

from monitor.web.api.media import ByteRange, RangeNotSatisfiable, media_span_ms, parse_range

SIZE = 44 + 32000  # 1 s of 8 kHz stereo PCM16 after the header


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, SIZE - 1)),
        ("bytes=-10", ByteRange(SIZE - 10, SIZE - 1)),
        ("bytes=-999999", ByteRange(0, SIZE - 1)),
        ("bytes=10-999999", ByteRange(10, SIZE - 1)),  # clipped to the file
        ("BYTES = 5 - 6", ByteRange(5, 6)),
        ("bytes=9-3", None),  # invalid: ignored, whole file
        ("bytes=0-1,4-5", None),  # several ranges: whole file (allowed by RFC 9110)
        ("items=0-1", None),
        ("bytes=-", None),
        ("garbage", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, SIZE)


def test_media_span() -> None:
    assert media_span_ms(None, SIZE, 8000, 2) == (0, 1000)
    assert media_span_ms(ByteRange(44, 44 + 16000 - 1), SIZE, 8000, 2) == (0, 500)
    assert media_span_ms(ByteRange(0, 43), SIZE, 8000, 2) == (0, 0)  # the header only
    assert media_span_ms(ByteRange(44 + 16000, SIZE - 1), SIZE, 16000, 1) == (500, 1000)
