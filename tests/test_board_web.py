"""The board's routes on the real API app: who may open which page, and the websocket's
cookie authentication and first snapshot (the browser tests cover the live flow)."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from monitor.web.api.auth import COOKIE
from tests.fixtures_api import ApiHarness


def as_role(api: ApiHarness, role: str | None) -> None:
    api.client.cookies.clear()
    if role is not None:
        api.client.cookies.set(COOKIE, api.tokens[role])


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/board", {"supervisor", "admin"}), ("/replay", {"qa", "admin"})],
)
def test_pages_by_role(api: ApiHarness, path: str, allowed: set[str]) -> None:
    as_role(api, None)
    r = api.client.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/login?next={path}"
    for role in ("supervisor", "qa", "admin"):
        as_role(api, role)
        r = api.client.get(f"{path}?call=abc", follow_redirects=False)
        if role in allowed:
            assert r.status_code == 200 and '<script type="module"' in r.text, role
        else:
            # The role in plain words, in the page's language (issue 19 item 11).
            shown = {"supervisor": "supervisor", "qa": "QA analyst", "admin": "administrator"}
            assert r.status_code == 403 and f"({shown[role]})" in r.text, role


def test_login_page_and_static_modules_are_public(api: ApiHarness) -> None:
    as_role(api, None)
    assert 'id="login-form"' in api.client.get("/login").text
    for name in ("board.js", "replay.js", "login.js", "api.js", "i18n.js", "style.css"):
        r = api.client.get(f"/static/{name}")
        assert r.status_code == 200 and len(r.text) > 100, name
    assert "javascript" in api.client.get("/static/board.js").headers["content-type"]
    r = api.client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/board"


@pytest.mark.parametrize(("role", "code"), [(None, 4401), ("qa", 4403)])
def test_websocket_refuses_without_board_role(api: ApiHarness, role: str | None, code: int) -> None:
    as_role(api, role)
    with api.client.websocket_connect("/board/ws") as ws:
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_json()
    assert exc.value.code == code


def test_websocket_sends_a_snapshot_and_answers_resync(api: ApiHarness) -> None:
    as_role(api, "supervisor")
    with api.client.websocket_connect("/board/ws") as ws:
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and snap["calls"] == []
        assert set(snap["kpis"]) >= {
            "active_calls", "avg_handle_ms", "open_alerts", "compliance_rate", "needs_improvement"
        }  # fmt: skip
        ws.send_json({"type": "resync"})
        assert ws.receive_json()["type"] == "snapshot"
