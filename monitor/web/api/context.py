"""What the API needs from the running callwatch, in one object handed to `create_app`.

Built by `Callwatch` (monitor/app.py) from its own parts, or by tests from a
repository alone. Everything is optional except settings and the repository: without an alert
service the alert routes answer 503, without a live view the board shows stored calls only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from config.settings import Settings
from monitor.board.source import BoardReader
from monitor.web.api.board_reader import RepositoryBoardReader
from storage.access import AccessStore
from storage.repository import Repository


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ApiContext:
    settings: Settings
    repo: Repository
    access: AccessStore
    #: The event bus (monitor/runtime/bus.py) for live feeds; None in read-only use.
    bus: Any | None = None
    #: The alert service (monitor/runtime/alert_service.py): acknowledge / resolve.
    alerts: Any | None = None
    #: The live calls view (the gateway's calls by id), for the board.
    live: Any | None = None
    #: The /api/health document (monitor/runtime/load.py `LoadMonitor.health`); None: a
    #: read-only API, whose health says only that it answers.
    health: Callable[[], dict[str, Any]] | None = None
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
    def for_repo(cls, settings: Settings, repo: Repository, **kw: Any) -> ApiContext:
        access = AccessStore(repo.engine, scrypt_n=settings.api.scrypt_n)
        return cls(settings=settings, repo=repo, access=access, **kw)
