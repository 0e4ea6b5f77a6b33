"""The board's alert feed and the replay page as a supervisor and a QA analyst read them, in
Chromium, in Chinese and English (issue 19 items 9 and 11).

The API and pages are served by uvicorn on a free port over the hand-checkable calls of
tests/api_data.py (c4 is still live, so it has a card) plus alerts and a trace written here:
no simulated calls and no ASR model, so this runs in seconds.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from monitor.web.api.app import create_app
from monitor.web.api.context import ApiContext
from monitor.web.api.server import ApiServer
from storage.records import AlertRaised, TraceAdded
from storage.repository import Repository
from tests import api_data
from tests.web_support import PASSWORD, login

pytestmark = pytest.mark.browser
KINDS = ["duration_long", "duration_short", "dead_air", "poor_audio", "compliance_miss",
         "compliance_order", "forbidden_phrase", "asr_lag", "media_stalled",
         "recording_failed"]  # fmt: skip


@dataclass
class Site:
    base: str
    repo: Repository


def _extra_records() -> list[Any]:
    live = api_data.DAY + timedelta(hours=12)  # c4, still running
    out: list[Any] = [
        AlertRaised(alert_id=10, call_id="c4", rule="poor_audio:customer", kind="poor_audio",
                    severity="warning", raised_at=live + timedelta(seconds=40),
                    media_start_ms=40_000, media_end_ms=50_000, party="customer",
                    message="poor audio (customer): SNR 3 dB", evidence={}, agent_id="a2",
                    queue="cards"),
        AlertRaised(alert_id=11, call_id="c4", rule="compliance_miss:greeting",
                    kind="compliance_miss", severity="critical",
                    raised_at=live + timedelta(seconds=75), media_start_ms=0,
                    media_end_ms=15_000, message="required phrase missed: greeting (0-15 s)",
                    evidence={}, agent_id="a2", queue="cards"),
    ]  # fmt: skip
    at = api_data.DAY + timedelta(hours=9)
    # c1's last transcript came back after the caller hung up
    steps = [("connected", 0), ("utterance", 0), ("disconnected", 60_000),
             ("utterance", 3_000), ("finalised", 60_000)]  # fmt: skip
    out += [TraceAdded("c1", seq, kind, at + timedelta(seconds=seq), media, None)
            for seq, (kind, media) in enumerate(steps)]  # fmt: skip
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp: Path = tmp_path_factory.mktemp("web-pages")
    settings = load_settings(env={}, data_dir=tmp / "data")
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    repo = Repository.from_url(f"sqlite:///{tmp / 'calls.db'}")
    repo.upgrade()
    api_data.seed(repo, settings.recordings_dir)
    repo.apply(_extra_records())
    ctx = ApiContext.for_repo(settings, repo)
    for name, role in (("sup", "supervisor"), ("qa", "qa"), ("adm", "admin")):
        ctx.access.create_user(name, PASSWORD, role, at=datetime.now(UTC))
    app = create_app(ctx)
    server = ApiServer(app, "127.0.0.1", 0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="web-pages", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    try:
        yield Site(server.url, repo)
    finally:
        asyncio.run_coroutine_threadsafe(app.state.board_hub.close(), loop).result(10)
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        repo.close()


def sign_in(page: Any, site: Site, user: str) -> None:
    login(page, site.base, user)
    page.wait_for_url(re.compile(r".*/(board|replay)$"))  # signed in: the cookie is set


@contextmanager
def opened(browser: Any, site: Site, user: str, path: str, lang: str) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        sign_in(page, site, user)
        page.goto(f"{site.base}{path}{'&' if '?' in path else '?'}lang={lang}")
        yield page
    finally:
        page.close()


def _feed(page: Any) -> list[dict[str, Any]]:
    page.wait_for_selector("#alert-feed li.alert-group")
    result: list[dict[str, Any]] = page.evaluate("""() => [...document.querySelectorAll(
        '#alert-feed li.alert-group')].map((g) => ({
          call: g.dataset.callId, who: g.querySelector('.who').innerText,
          card: !!g.querySelector('a.to-card'),
          replay: g.querySelector('a.to-replay')?.getAttribute('href') ?? null,
          items: [...g.querySelectorAll('li.alert')].map((a) => ({
            kind: a.dataset.kind, text: a.innerText,
            media: a.querySelector('.media').innerText, wall: a.querySelector('.wall').innerText,
          })),
        }))""")
    return result


def test_board_alerts_are_grouped_titled_and_one_click_away(site: Site, browser: Any) -> None:
    with opened(browser, site, "adm", "/board", "zh") as page:
        feed = _feed(page)
        # grouped per call, the call with the newest alert first
        assert [g["call"] for g in feed] == ["c4", "c2", "c1"]
        live = feed[0]
        assert [a["kind"] for a in live["items"]] == ["compliance_miss", "poor_audio"]
        assert live["items"][0]["text"].startswith("漏说必需话术")
        assert "客户" in live["items"][1]["text"] and "音质差" in live["items"][1]["text"]
        assert live["items"][1]["media"] == "通话第 00:40" and live["items"][1]["wall"]
        for group in feed:  # no raw rule ids, no English messages on the Chinese page
            for a in group["items"]:
                assert a["kind"] not in a["text"] and "required phrase" not in a["text"]
        assert "a2" in live["who"] and "cards" in live["who"] and "+15550004" in live["who"]
        assert live["card"] and feed[2]["replay"] == "/replay?call=c1"
        badges = page.locator('.call[data-call-id="c4"] .badges').inner_text()
        assert "音质差" in badges and "poor" not in badges  # the card's badges too
        page.click('#alert-feed li.alert-group[data-call-id="c4"] a.to-card')
        page.wait_for_selector('.call.flash[data-call-id="c4"]')
        # filters: by severity, by kind
        page.select_option("#alert-severity", "critical")
        kinds = [(g["call"], [a["kind"] for a in g["items"]]) for g in _feed(page)]
        assert kinds == [("c4", ["compliance_miss"]), ("c2", ["dead_air"])]
        page.select_option("#alert-severity", "")
        page.select_option("#alert-kind", "duration_long")
        assert [g["call"] for g in _feed(page)] == ["c1"]
        options = page.eval_on_selector_all("#alert-kind option", "os => os.map(o => o.value)")
        assert options == ["", *KINDS]
    with opened(browser, site, "sup", "/board", "en") as page:
        feed = _feed(page)
        first = feed[0]["items"][0]["text"]
        assert first.startswith("Required script step missed") and "critical" in first
        # a supervisor may not open the replay: the ended call gets no dead link
        assert feed[2]["replay"] is None and feed[0]["card"]


def test_replay_search_has_status_dashes_and_a_kind_list(site: Site, browser: Any) -> None:
    with opened(browser, site, "qa", "/replay", "zh") as page:
        page.wait_for_selector("body[data-ready='1']")
        page.wait_for_selector('#results tr[data-call-id="c4"]')
        by_id = page.eval_on_selector_all(
            "#results tbody tr",
            """rs => Object.fromEntries(
            rs.map(r => [r.dataset.callId, [...r.cells].map(c => c.innerText.trim())]))""",
        )
        heads = page.eval_on_selector_all("#results th", "hs => hs.map(h => h.innerText)")
        status = heads.index("状态")
        assert by_id["c4"][status] == "进行中" and by_id["c1"][status] == "已完成"
        assert by_id["c4"][heads.index("得分")] == "—" and by_id["c4"][heads.index("等级")] == "—"
        options = page.eval_on_selector_all("#alert-kind option", "os => os.map(o => o.value)")
        assert options == ["", *KINDS]
        assert page.inner_text('#alert-kind option[value="dead_air"]') == "线路长时间静默"
        page.select_option("#alert-kind", "dead_air")
        page.click("#search-form button[type=submit]")
        page.wait_for_function("() => document.querySelectorAll('#results tbody tr').length === 1")
        assert page.get_attribute("#results tbody tr", "data-call-id") == "c2"


def test_replay_trace_is_in_time_order_and_translated(site: Site, browser: Any) -> None:
    with opened(browser, site, "qa", "/replay?call=c1", "zh") as page:
        page.wait_for_selector("body[data-ready='1']")
        kinds = page.eval_on_selector_all("#trace .ev", "es => es.map(e => e.dataset.kind)")
        assert kinds == ["connected", "utterance", "utterance", "disconnected", "finalised"]
        text = page.inner_text("#trace")
        assert "已断开" in text and "disconnected" not in text and "utterance" not in text


@pytest.mark.parametrize(
    ("lang", "want", "unwanted"), [("zh", "主管", "supervisor"), ("en", "supervisor", "主管")]
)
def test_forbidden_page_speaks_the_page_language(
    site: Site, browser: Any, lang: str, want: str, unwanted: str
) -> None:
    page = browser.new_page()
    try:
        sign_in(page, site, "sup")
        response = page.goto(f"{site.base}/replay?lang={lang}")
        assert response.status == 403
        page.wait_for_load_state("networkidle")
        text = page.inner_text("#forbidden-msg")
        assert want in text and unwanted not in text
    finally:
        page.close()
