"""Log hygiene at DEBUG (RELIABILITY.md P8; issue 17 item 3).

With `log_level = "DEBUG"` the log once held `Authorization: Bearer ...`, a `?token=` query
string, a card number from the metadata frame and every DTMF frame (websockets' own DEBUG
logger). A real gateway in this process, logging through `configure_logging("DEBUG")`, takes a
call that carries all of them plus a refused handshake; the captured log holds none of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from monitor.runtime.logs import configure_logging, scrub
from tests.gateway_support import in_process_gateway

TOKEN = "fork-tok-5d1f0a9e"
QUERY_SECRET = "qs-secret-77b2c"
PAN = "4111 1111 1111 1111"
DTMF = "9374051862937405"  # 16 key presses


@pytest.fixture
def debug_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    # After capsys: the handler writes to the captured stderr.
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("websockets").level)
    configure_logging("DEBUG", "text")
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("websockets").setLevel(saved[2])


def test_debug_log_holds_no_secret_card_number_or_dtmf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], debug_logging: None
) -> None:
    async def scenario() -> None:
        auth = {"audiofork_tokens": [TOKEN], "require": True}
        async with in_process_gateway(tmp_path, switch_auth=auth) as gw:
            with pytest.raises(InvalidStatus):
                async with connect(
                    gw.url + f"/audiofork?token={QUERY_SECRET}",
                    additional_headers={"Authorization": "Bearer wrong-" + TOKEN},
                ):
                    pass
            async with connect(
                gw.url + f"/audiofork?token={QUERY_SECRET}",
                additional_headers={"Authorization": f"Bearer {TOKEN}"},
            ) as ws:
                meta = {"callSid": "hyg-1", "sampleRate": 8000, "mixType": "stereo", "card": PAN}
                await ws.send(json.dumps(meta))
                for digit in DTMF:
                    await ws.send(json.dumps({"event": "dtmf", "digit": digit}))
                    await ws.send(bytes(640))
                await ws.send(json.dumps({"event": "note", "text": f"card {PAN.replace(' ', '')}"}))
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    log = capsys.readouterr().err
    assert "DEBUG" in log or "call started" in log  # the log was captured at all
    for secret in (TOKEN, QUERY_SECRET, PAN, PAN.replace(" ", ""), DTMF):
        assert secret not in log
    assert not re.search(r"digit\W{1,6}\d", log)


@pytest.mark.parametrize(
    ("line", "gone"),
    [
        ("< authorization: Basic ZnM6cHc=", "ZnM6cHc="),
        ("X-Twilio-Signature: abcDEF123=", "abcDEF123="),
        ("GET /board/ws?session=1&access_token=zz9 HTTP/1.1", "zz9"),
        ('{"media": {"payload": "f39/fn5+fn5+fn5+fn5+fn5+"}}', "f39/fn5+fn5+"),
        ("pan 4012-8888-8888-1881 end", "4012-8888-8888-1881"),
    ],
)
def test_scrub_masks(line: str, gone: str) -> None:
    assert gone not in scrub(line)


def test_scrub_keeps_ordinary_numbers() -> None:
    line = "frames=4111111111111112 call_id=20261207T064303-48f19b"  # not Luhn-valid
    assert scrub(line) == line
