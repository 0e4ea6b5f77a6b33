"""The supervisors' live call board model and its feed.

`state` is the sans-I/O board model (cards, KPIs, coalesced deltas, snapshots); `hub` its
asyncio shell on the event bus that keeps browser clients up to date. The pages and routes
that serve it live with the API in `monitor.web` (`monitor.web.board.mount_board`).
"""

from monitor.board.state import BoardState

__all__ = ["BoardState"]
