"""What the API needs from the running callwatch, in one object handed to `create_app`.

Built by `Callwatch` (monitor/app.py) from its own parts, or by tests from a
repository alone. Everything is optional except settings and the repository: without an alert
service the alert routes answer 503, without a live view the board shows stored calls only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from config.settings import Settings
from monitor.board.source import BoardReader
from monitor.core.metadata import CallMetadata
from monitor.web.api.board_reader import RepositoryBoardReader
from storage.access import AccessStore
from storage.models import AlertInfo
from storage.repository import Repository

if TYPE_CHECKING:  # the runtime builds the context; the API only holds what it is given
    from monitor.runtime.bus import EventBus


def utc_now() -> datetime:
    return datetime.now(UTC)


class AlertActions(Protocol):
    """What the alert routes ask of the live alert service (acknowledge / resolve); both
    raise `storage.errors.AlertNotFound` or `InvalidAlertTransition`."""

    async def acknowledge(self, alert_id: int, user: str) -> AlertInfo: ...

    async def resolve(self, alert_id: int, user: str) -> AlertInfo: ...


class LiveCallControl(Protocol):
    """What the capture routes ask of one live call (monitor/runtime/call.py `LiveCall`)."""

    @property
    def call_id(self) -> str: ...

    @property
    def metadata(self) -> CallMetadata: ...

    @property
    def completion(self) -> asyncio.Task[None] | None:
        """Set once the call has hung up and its verdict is being made."""

    async def set_capture(self, *, paused: bool, by: str, how: str) -> bool: ...


#: The /api/health document: a JSON object (numbers, strings, lists and objects as values).
HealthDoc = dict[str, object]


@dataclass
class ApiContext:
    settings: Settings
    repo: Repository
    access: AccessStore
    #: The event bus (monitor/runtime/bus.py) for live feeds; None in read-only use.
    bus: EventBus | None = None
    #: The alert service (monitor/runtime/alert_service.py): acknowledge / resolve.
    alerts: AlertActions | None = None
    #: The live calls by call id (the gateway's registry), for pause / resume.
    live: Mapping[str, LiveCallControl] | None = None
    #: The /api/health document (monitor/runtime/load.py `LoadMonitor.health`); None: a
    #: read-only API, whose health says only that it answers.
    health: Callable[[], HealthDoc] | None = None
    #: Wall clock for tokens and audit rows; tests pass their own.
    clock: Callable[[], datetime] = field(default=utc_now)
    #: Bumped on every user or token change made through the API (role, disable, logout):
    #: open board sockets see it within a second and re-check their user.
    users_changed: int = 0
    #: What the live board reads from the database (a `monitor.board.source.BoardReader`);
    #: the repository's, unless a test or the composition root gives another.
    board_reader: BoardReader | None = None

    def __post_init__(self) -> None:
        if self.board_reader is None:
            self.board_reader = RepositoryBoardReader(self.repo)

    @classmethod
    def for_repo(
        cls,
        settings: Settings,
        repo: Repository,
        *,
        bus: EventBus | None = None,
        alerts: AlertActions | None = None,
        live: Mapping[str, LiveCallControl] | None = None,
        health: Callable[[], HealthDoc] | None = None,
        clock: Callable[[], datetime] = utc_now,
        board_reader: BoardReader | None = None,
    ) -> ApiContext:
        access = AccessStore(repo.engine, scrypt_n=settings.api.scrypt_n)
        return cls(settings, repo, access, bus, alerts, live, health, clock,
                   board_reader=board_reader)  # fmt: skip
