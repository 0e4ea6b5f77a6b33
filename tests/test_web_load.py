"""The board's header tells the operator, in plain words (English and Chinese), when the
server is overloaded and how far transcripts lag, from GET /api/health (Debian's Chromium,
the real app served by the real API server; the health document is set by the test)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from monitor.web.api.app import create_app
from monitor.web.api.context import ApiContext
from storage.repository import Repository
from tests.web_support import Served, login

pytestmark = [pytest.mark.browser]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    settings = load_settings(env={}, data_dir=tmp_path)
    repo = Repository.from_url(settings.database_url)
    repo.upgrade()
    doc: dict[str, Any] = {"status": "ok", "overloaded": False, "asr": {"lag_s": 0.0}}
    ctx = ApiContext.for_repo(settings, repo, health=lambda: dict(doc))
    from tests.web_support import PASSWORD

    ctx.access.create_user("sup", PASSWORD, "supervisor", at=datetime.now(UTC))
    served = Served(create_app(ctx))
    try:
        yield served.server.url, doc
    finally:
        served.close()
        repo.close()


@contextmanager
def board(browser: Any, base: str) -> Iterator[tuple[Any, Any]]:
    """The English board after its first health poll: (page, the header's badge); no page
    error by the end."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        login(page, base, "sup")
        page.goto(f"{base}/board?lang=en")
        page.wait_for_selector('#load[data-state="ok"]', state="attached")  # first poll done
        yield page, page.locator("#load")
        assert errors == []
    finally:
        page.close()


def test_header_says_overloaded_and_transcript_lag_in_plain_words(site, browser) -> None:  # type: ignore[no-untyped-def]
    base, doc = site
    with board(browser, base) as (page, badge):
        assert badge.is_hidden()  # all well: nothing to say
        doc.update(status="overloaded", overloaded=True, asr={"lag_s": 7.4})
        page.wait_for_selector("#load.overloaded", state="visible", timeout=6000)
        assert (
            badge.inner_text()
            == "Overloaded: transcripts may come late · Transcripts behind by 7 s"
        )
        doc.update(status="ok", overloaded=False, asr={"lag_s": 2.6})  # recovering
        page.wait_for_selector("#load.lagging", state="visible", timeout=6000)
        assert badge.inner_text() == "Transcripts behind by 3 s"
        doc.update(asr={"lag_s": 0.4})
        page.wait_for_selector("#load", state="hidden", timeout=6000)
        doc.update(status="overloaded", overloaded=True, asr={"lag_s": 12.0})
        page.goto(f"{base}/board?lang=zh")
        page.wait_for_selector("#load.overloaded", state="visible", timeout=6000)
        assert badge.inner_text() == "系统过载：转写可能延迟 · 转写落后 12 s"


def test_header_says_storage_degraded_in_plain_words_and_clears(site, browser) -> None:  # type: ignore[no-untyped-def]
    """Issue 17 item 11: the database not taking writes shows on the board (en, zh)."""
    base, doc = site
    with board(browser, base) as (page, badge):
        doc.update(status="degraded", storage={"status": "degraded", "queued": 120})
        page.wait_for_selector("#load.degraded", state="visible", timeout=6000)
        assert badge.inner_text() == (
            "Storage degraded: calls are still recorded, saving them is delayed"
        )
        doc.update(status="ok", storage={"status": "ok", "queued": 0})  # recovered
        page.wait_for_selector("#load", state="hidden", timeout=6000)
        doc.update(status="degraded", storage={"status": "degraded", "queued": 5},
                   overloaded=True)  # fmt: skip
        page.goto(f"{base}/board?lang=zh")
        page.wait_for_selector("#load.degraded", state="visible", timeout=6000)
        assert badge.inner_text() == "存储异常：通话仍在录音，保存延迟 · 系统过载：转写可能延迟"
