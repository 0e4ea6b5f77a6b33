"""The supervisors' live call board and the QA replay page (served by the API app).

`state` is the sans-I/O board model (cards, KPIs, coalesced deltas, snapshots); `hub` its
asyncio shell on the event bus; `web` the routes (`mount_board`). The pages are plain
HTML/CSS/ES modules in `static/`, in Chinese and English, with no build step.
"""

from monitor.board.state import BoardState

__all__ = ["BoardState", "mount_board"]


def __getattr__(name: str) -> object:
    # FastAPI is imported only when the board is mounted, so the sans-I/O state (and its
    # tests) need nothing beyond the standard library and storage.
    if name == "mount_board":
        from monitor.board.web import mount_board

        return mount_board
    raise AttributeError(name)
