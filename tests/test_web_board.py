"""The live board in Debian's Chromium, fed by a real server with two simulated calls.

One server for the module; the two calls (English with a planned 4 s gap, and Mandarin) are
streamed in real time. Checked in the browser: both calls appear with each party's transcript
within 3 s of the utterance ending, the dead-air alert appears and a supervisor acknowledges
it (stored), and each call leaves the board showing its grade.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures_browser import screenshot
from tests.web_support import Streaming, WebServer, call, login, start_web_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Records, in the page, when each transcript line first appears on a card (DOM, wall clock).
RECORDER = """() => {
  window.cwSeen = {};
  setInterval(() => {
    for (const li of document.querySelectorAll('.call .party .lines li')) {
      const card = li.closest('.call');
      const party = li.closest('.party').dataset.party;
      const key = `${card.dataset.callId}|${party}|${li.dataset.startMs}`;
      if (!(key in window.cwSeen)) window.cwSeen[key] = {
        seen: Date.now() / 1000, start_ms: Number(li.dataset.startMs),
        end_ms: Number(li.dataset.endMs), text: li.textContent,
        call_id: card.dataset.callId, party, agent: card.querySelector('.agent').textContent };
    }
  }, 25);
}"""


def board_in_chinese(web: WebServer, browser: Any) -> None:
    """The same live board in Chinese (a supervisor's own session, `?lang=zh`): the cards,
    the alert feed's titles and the page's labels in Chinese; docs/screenshots/board-zh.png."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = ctx.new_page()
        login(page, web.base, "sup")
        page.goto(f"{web.base}/board?lang=zh")
        page.wait_for_selector("#conn.up")
        page.wait_for_function(
            """() => document.querySelectorAll('.call').length === 2 && [...document
                 .querySelectorAll('.call')].every(c => c.querySelector('.party li'))""",
            timeout=30_000,
        )
        alert = page.locator('#alert-feed li.alert.open[data-kind="dead_air"]')
        alert.wait_for(timeout=10_000)
        text = alert.inner_text()
        assert "线路长时间静默" in text  # the alert's title in the page's language ...
        assert "AM" not in text and "PM" not in text  # ... and its time
        card = page.locator(".call", has_text="2001")
        assert card.locator(".badge", has_text="线路长时间静默").count() == 1
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        screenshot(page, "board-zh")
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    w = start_web_server(tmp_path_factory.mktemp("web-board"))
    yield w
    w.server.stop()


def test_board_shows_live_calls_alert_and_grades(web: WebServer, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    try:
        login(page, web.base, "sup")
        assert page.url.endswith("/board")
        page.wait_for_selector("#conn.up")
        page.evaluate(RECORDER)
        calls = [call("dead_air_en_16k.toml"), call("short_zh_16k.toml")]
        streaming = Streaming(calls, pace=1.0)
        streaming.start(web.gateway)

        # both calls on the board, each party's transcript on each card
        page.wait_for_function(
            """() => { const cards = document.querySelectorAll('.call');
                 return cards.length === 2 && [...cards].every(c =>
                   [...c.querySelectorAll('.party')].filter(p => p.querySelector('li')).length
                   === 2); }""",
            timeout=60_000,
        )
        agents = sorted(page.locator(".call .agent").all_text_contents())
        assert [a.split()[-1] for a in agents] == ["2001", "3007"]
        page.select_option("#filter-queue", "cards")  # filters: only that queue's call shows
        assert page.locator(".call:visible").count() == 1
        assert "3007" in page.locator(".call:visible .agent").inner_text()
        page.select_option("#filter-queue", "")
        assert page.locator(".call:visible").count() == 2

        # the dead-air alert appears in the feed and on its call's card
        alert = page.locator('#alert-feed li.alert.open[data-kind="dead_air"]')
        alert.wait_for(timeout=60_000)
        card = page.locator(".call", has_text="2001")
        assert card.locator(".badge", has_text="Long silence on the line").count() == 1
        assert page.locator("#kpi-alerts").inner_text() != "0"
        screenshot(page, "board")
        board_in_chinese(web, browser)
        alert_id = int(alert.get_attribute("data-alert-id") or "0")
        alert.locator("button.ack").click()
        page.locator(f'#alert-feed li.acknowledged[data-alert-id="{alert_id}"]').wait_for(
            timeout=10_000
        )
        # a lost connection: the page reconnects and redraws from a fresh snapshot
        page.evaluate("window.cwBoard.reconnect()")
        page.wait_for_selector("#conn.down", timeout=5_000)
        page.wait_for_selector("#conn.up", timeout=10_000)
        assert page.locator(".call").count() == 2
        assert page.locator(f'#alert-feed li.acknowledged[data-alert-id="{alert_id}"]').count() == 1
        stored = web.server.repo.get_alert(alert_id)
        assert stored is not None and stored.state == "acknowledged"
        assert stored.acknowledged_by == "sup" and stored.kind == "dead_air"

        # the calls end: each shows its grade, then leaves the board
        ids = streaming.join()
        page.wait_for_function(
            "() => document.querySelectorAll('.call.ended .grade').length === 2", timeout=90_000
        )
        graded = page.locator(".call.ended .grade").all_text_contents()
        assert all(g.strip() for g in graded)
        screenshot(page, "board-ended")
        page.wait_for_function("() => document.querySelectorAll('.call').length === 0",
                               timeout=20_000)  # fmt: skip
        stored_calls = [web.server.wait_call(ext) for ext in ids]
        assert all(c.grade for c in stored_calls)

        # latency: every line appeared within 3 s of its utterance's end (media time, paced
        # in real time from the start of streaming); and it is the stored transcript
        seen: dict[str, dict[str, Any]] = page.evaluate("window.cwSeen")
        assert seen, "no transcript line was ever seen"
        by_call = {c.call_id: c for c in stored_calls}
        parties = {(v["call_id"], v["party"]) for v in seen.values()}
        assert len(parties) == 4, parties
        rows = []  # (end of utterance -> on the board, of which ASR + storage, text)
        for v in seen.values():
            delay = v["seen"] - (streaming.started_at + v["end_ms"] / 1000)
            (seg,) = [s for s in by_call[v["call_id"]].segments
                      if s.party == v["party"] and s.start_ms == int(v["start_ms"])]  # fmt: skip
            assert v["text"] == seg.text
            rows.append((round(delay, 2), (seg.latency_ms or 0) / 1000, seg.text[:30]))
        print(f"board transcript latency: max {max(r[0] for r in rows):.2f} s, {sorted(rows)}")
        # the board's own share (bus -> coalescing -> websocket -> DOM) is within 1 s ...
        assert max(r[0] - r[1] for r in rows) <= 1.0, sorted(rows)
        # ... and the whole path, ASR included, within the 3 s the issue asks for
        assert max(r[0] for r in rows) <= 3.0, sorted(rows)
    finally:
        page.close()
