"""Switch authentication on a gateway reachable beyond loopback (issue 17 item 2).

Bound to every interface with only an audio-fork token, the protocols that have no credentials
refuse connections by default (HTTP 401 before any audio), the token opens the audio fork, and
`allow_unauthenticated = true` is the only way to accept anyone - logged at CRITICAL."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.gateway_support import in_process_gateway

pytestmark = pytest.mark.slow


async def status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        async with connect(url, additional_headers=headers or {}):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_all_interfaces_require_switch_credentials(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        auth = {"audiofork_tokens": ["fork-9c1e"]}
        async with in_process_gateway(tmp_path, host="0.0.0.0", switch_auth=auth) as gw:
            return [
                await status(gw.url + "/twilio"),
                await status(gw.url + "/audiohook"),
                await status(gw.url + "/audiofork"),
                await status(gw.url + "/audiofork", {"Authorization": "Bearer fork-9c1e"}),
            ]

    assert asyncio.run(scenario()) == [401, 401, 401, 101]


def test_allowing_unauthenticated_is_logged_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> int:
        auth = {"allow_unauthenticated": True}
        async with in_process_gateway(tmp_path, host="0.0.0.0", switch_auth=auth) as gw:
            return await status(gw.url + "/twilio")

    with caplog.at_level(logging.WARNING, logger="callwatch.gateway"):
        assert asyncio.run(scenario()) == 101
    loud = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert {r.getMessage().split()[0] for r in loud} == {"audiofork", "twilio", "audiohook"}
