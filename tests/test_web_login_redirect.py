"""The login page goes only to same-origin paths (issue 17 item 14).

`/login?next=/%5Cevil.example/` and `/login?next=/%09/evil.example/` once sent a freshly
signed-in user to `http://evil.example/`: browsers read a backslash as a slash and drop tabs,
so the old `startsWith("/") && !startsWith("//")` check passed. The real login page and its
modules run in Chromium; Playwright serves them (and answers `/api/login` as a supervisor) under
one origin and records every navigation, so no request ever leaves the machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

STATIC = Path(__file__).resolve().parents[1] / "monitor" / "web" / "static"
ORIGIN = "http://callwatch.test"
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def serve(route: Any) -> None:
    url = urlsplit(route.request.url)
    if url.netloc != "callwatch.test":
        route.fulfill(status=200, body="elsewhere", content_type="text/plain")
    elif url.path == "/api/login":
        route.fulfill(status=200, body='{"role": "supervisor"}', content_type="application/json")
    elif url.path.startswith("/static/"):
        path = STATIC / url.path.removeprefix("/static/")
        route.fulfill(status=200, body=path.read_bytes(), content_type=TYPES[path.suffix])
    elif url.path == "/login":
        html = (STATIC / "login.html").read_bytes()
        route.fulfill(status=200, body=html, content_type="text/html")
    else:
        route.fulfill(status=200, body=f"page {url.path}", content_type="text/plain")


def landing(browser: Any, next_value: str) -> str:
    page = browser.new_page()
    try:
        page.route("**/*", serve)
        page.goto(f"{ORIGIN}/login?next={next_value}")
        page.fill("#username", "sup")
        page.fill("#password", "pw")
        with page.expect_navigation():
            page.click("#login-submit")
        return str(page.url)
    finally:
        page.close()


@pytest.mark.parametrize(
    "next_value",
    [
        "/%5Cevil.example/",
        "/%09/evil.example/",
        "//evil.example/",
        "/%5C%5Cevil.example",
        "/%0A/evil.example/",
        "https://evil.example/",
        "javascript:alert(1)",
        "%2F%2Fevil.example",
    ],
)
def test_foreign_next_goes_home(browser: Any, next_value: str) -> None:
    assert landing(browser, next_value) == f"{ORIGIN}/board"


@pytest.mark.parametrize(
    ("next_value", "path"),
    [("/replay?call=abc", "/replay?call=abc"), (quote("/board#alerts", safe=""), "/board#alerts")],
)
def test_same_origin_next_is_kept(browser: Any, next_value: str, path: str) -> None:
    assert landing(browser, next_value) == ORIGIN + path
