"""The test NATS server itself: reachable, JetStream on, and never open without a password."""

from __future__ import annotations

import nats
import pytest

from config.settings import BusSettings
from monitor.scale.connect import BusAuthError, BusUnavailableError, connect_bus
from tests.fixtures_nats import NatsEndpoint, PrivateNats

pytestmark = pytest.mark.scaleout


async def test_shared_server_has_jetstream_and_auth(nats_server: NatsEndpoint) -> None:
    nc = await nats.connect(nats_server.url, user=nats_server.user, password=nats_server.password)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


async def test_wrong_password_is_refused_with_a_clear_error(private_nats: PrivateNats) -> None:
    ep = private_nats.endpoint
    bus = BusSettings(url=ep.url, credentials={"user": ep.user, "password": "wrong"})
    with pytest.raises(BusAuthError, match="refused the credentials of 'node-a'") as info:
        await connect_bus(bus, "node-a")
    assert "wrong" not in str(info.value)  # never the secret
    good = BusSettings(url=ep.url, credentials={"user": ep.user, "password": ep.password})
    nc = await connect_bus(good, "node-a")
    assert nc.is_connected
    await nc.close()


async def test_unreachable_server_is_named_without_credentials(private_nats: PrivateNats) -> None:
    ep = private_nats.endpoint
    private_nats.stop()
    bus = BusSettings(url=f"nats://u:pw@127.0.0.1:{private_nats.port}",
                      credentials={"user": ep.user, "password": ep.password})  # fmt: skip
    with pytest.raises(BusUnavailableError, match="cannot reach NATS") as info:
        await connect_bus(bus, "node-a", connect_timeout_s=1)
    assert ":pw@" not in str(info.value)
