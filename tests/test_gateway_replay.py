"""A signed AudioHook handshake cannot be replayed (issue 17 item 17).

The signature's nonce was not remembered, so a captured handshake could be sent again within
its 10 s validity. Against the real gateway in this process: the same signed headers are
accepted once and refused (401) the second time; a fresh signature is accepted.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from monitor.wire.auth import NonceCache, sign_audiohook
from tests.gateway_support import in_process_gateway

pytestmark = pytest.mark.slow
SECRET = base64.b64encode(b"audiohook-client-secret-0123456").decode()


def signed(host: str) -> dict[str, str]:
    base = {"Audiohook-Organization-Id": "d7934305", "Audiohook-Session-Id": str(uuid.uuid4()),
            "Audiohook-Correlation-Id": str(uuid.uuid4()), "X-API-KEY": "key-1"}  # fmt: skip
    return base | sign_audiohook(base, target="/audiohook", authority=host, api_key="key-1",
                                 secret=SECRET, created=int(time.time()))  # fmt: skip


async def status(url: str, headers: dict[str, str]) -> int:
    try:
        async with connect(url + "/audiohook", additional_headers=headers):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_a_replayed_signature_is_refused(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        auth = {"audiohook_api_keys": {"key-1": SECRET}}
        async with in_process_gateway(tmp_path, switch_auth=auth) as gw:
            headers = signed(gw.url.split("://", 1)[1])
            return [
                await status(gw.url, headers),
                await status(gw.url, headers),  # the same nonce again: a replay
                await status(gw.url, signed(gw.url.split("://", 1)[1])),
            ]

    assert asyncio.run(scenario()) == [101, 401, 101]


def test_nonce_cache_forgets_expired_and_stays_bounded() -> None:
    cache = NonceCache(max_size=3)
    assert cache.first_use("a", until=110, now=100) and not cache.first_use("a", until=110, now=105)
    assert cache.first_use("a", until=130, now=120)  # expired: may be used again
    for n in "bcde":
        assert cache.first_use(n, until=200, now=121)
    assert len(cache._until) <= 3  # noqa: SLF001 - the bound under test is internal
