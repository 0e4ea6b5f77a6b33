"""The QA replay page in Debian's Chromium, on a call streamed into a real server.

One server and one call for the module (English, with a planned 4 s gap that raises a
dead-air alert), streamed flat out; ASR by the scripted transcriber answering with the call's
own lines (the page shows and seeks whatever lines a call has; recognition is
test_e2e_call's). Checked in the browser: search finds the call; clicking a transcript line
or the alert's marker moves the audio to that moment (±0.2 s), the audio being fetched with
range requests; a QA score and comment survive a reload; a supervisor (no QA role) cannot
open the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.events import Marked
from monitor.runtime.storage_rows import rows_for
from storage.models import CallDetail
from tests.fixtures_browser import screenshot
from tests.web_support import Streaming, WebServer, call, login, start_web_server

pytestmark = pytest.mark.browser


@dataclass
class Replay:
    web: WebServer
    call: CallDetail

    @property
    def url(self) -> str:
        return f"{self.web.base}/replay?call={self.call.call_id}"


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    the_call = call("dead_air_en_16k.toml")
    web = start_web_server(tmp_path_factory.mktemp("web-replay"), scripted=the_call)
    try:
        streaming = Streaming([the_call], pace=0.0)
        streaming.start(web.gateway)
        (ext,) = streaming.join()
        stored = web.server.wait_call(ext)
        yield Replay(web, stored)
    finally:
        web.server.stop()


def open_call(browser: Any, r: Replay, user: str = "qa") -> Any:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    login(page, r.web.base, user, next_path=f"/replay?call={r.call.call_id}")
    page.wait_for_selector("body[data-ready='1']")
    return page


def current_time(page: Any) -> float:
    return float(page.evaluate("document.getElementById('audio').currentTime"))


def test_search_then_click_a_line_seeks_the_audio(replay: Replay, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    ranges: list[int] = []
    page.on(
        "response",
        lambda resp: ranges.append(resp.status) if "/recording" in resp.url else None,
    )
    try:
        login(page, replay.web.base, "qa")
        assert page.url.endswith("/replay")
        row = page.locator(f'#results tr[data-call-id="{replay.call.call_id}"]')
        row.wait_for()
        assert "2001" in row.inner_text()
        row.locator("a").click()
        page.wait_for_selector("body[data-ready='1']")
        lines = page.locator("#transcript .line")
        assert lines.count() == len([s for s in replay.call.segments if s.text.strip()]) >= 3
        page.wait_for_function("document.getElementById('audio').readyState >= 1")
        for i in (2, 0, 1):  # later first: a real seek backwards and forwards
            line = lines.nth(i)
            start_s = int(line.get_attribute("data-start-ms") or "0") / 1000
            line.click()
            assert abs(current_time(page) - start_s) <= 0.2, (i, start_s, current_time(page))
            assert "current" in (line.get_attribute("class") or "")
        assert 206 in ranges, ranges  # the player fetched the recording by byte ranges
        # the lanes: speech on both parties, the planned gap drawn as dead air
        assert page.locator('.lane[data-party="agent"] .r.speech').count() >= 2
        assert page.locator('.lane[data-party="customer"] .r.speech').count() >= 1
        assert page.locator(".lane .r.dead_air").count() >= 1
        assert page.locator("#scorecard .grade").inner_text().strip()
        # The scorecard explains every deduction; optional stages not said are grey "not
        # said", never a red cross (issue 19 item 10).
        analysis = replay.web.server.repo.get_analysis(replay.call.call_id)
        card, comp = analysis.result("scorecard"), analysis.result("compliance")
        assert card is not None and comp is not None
        assert page.locator("#scorecard .why li.ded").count() == len(card["lines"])
        unsaid = [s for s in comp["stages"] if not s["required"] and s["status"] == "missed"]
        assert unsaid
        for st in unsaid:
            stage = st["stage"]
            li = page.locator(f'#scorecard .check[data-stage="{stage}"]')
            assert "not_said" in (li.get_attribute("class") or "")
            assert "✗" not in li.inner_text() and "not said" in li.inner_text()
        assert page.locator("#trace li").count() >= 3
    finally:
        page.close()


def test_click_the_alert_marker_seeks_to_the_alert(replay: Replay, browser: Any) -> None:
    alerts = replay.web.server.repo.list_alerts(call_id=replay.call.call_id, kind="dead_air")
    assert len(alerts) == 1 and alerts[0].media_start_ms is not None
    page = open_call(browser, replay)
    try:
        marker = page.locator(f'#markers .marker[data-alert-id="{alerts[0].id}"]')
        assert marker.count() == 1
        marker.click()
        want = alerts[0].media_start_ms / 1000
        assert abs(current_time(page) - want) <= 0.2, (want, current_time(page))
        screenshot(page, "replay")
        page.goto(f"{replay.url}&lang=zh")  # the same page in Chinese
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#transcript").locator("xpath=..").locator("h2").inner_text() == "转写"
        why = page.locator("#scorecard .why").inner_text()  # deductions in Chinese too
        english = ("slow response", "fast speech", "overtalk", "clarity", "dead air", "snr")
        assert not [w for w in english if w in why.lower()], why
        screenshot(page, "replay-zh")
    finally:
        page.close()


def test_qa_score_and_comment_survive_a_reload(replay: Replay, browser: Any) -> None:
    page = open_call(browser, replay)
    try:
        page.fill("#review-score", "72")
        page.fill("#review-comment", "问候语太快 / greeting rushed")
        page.click("#review-save")
        page.locator("#reviews li", has_text="greeting rushed").wait_for()
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert "问候语太快 / greeting rushed" in page.locator("#reviews").inner_text()
        assert page.input_value("#review-comment") == "问候语太快 / greeting rushed"
        assert page.input_value("#review-score") == "72"
    finally:
        page.close()
    stored = replay.web.server.repo  # the review is in the database too, by its author
    from storage.access import AccessStore

    (review,) = AccessStore(stored.engine).list_reviews(replay.call.call_id)
    assert (review.username, review.score) == ("qa", 72)


def test_a_user_without_the_qa_role_cannot_open_the_replay_page(
    replay: Replay, browser: Any
) -> None:
    page = browser.new_page()
    try:
        login(page, replay.web.base, "sup")
        assert page.url.endswith("/board")
        resp = page.goto(replay.url)
        assert resp is not None and resp.status == 403
        assert "(supervisor)" in page.locator("#forbidden").inner_text()
        assert page.locator("#transcript").count() == 0
        reviews = page.request.get(f"{replay.web.base}/api/calls/{replay.call.call_id}/reviews")
        assert reviews.status == 403
    finally:
        page.close()


def test_wrong_password_stays_on_the_login_page(replay: Replay, browser: Any) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{replay.web.base}/replay")  # not signed in: sent to the login page
        page.wait_for_url("**/login?next=/replay")
        page.fill("#username", "qa")
        page.fill("#password", "not the password")
        page.click("#login-submit")
        page.locator("#login-error").wait_for()
        assert page.url.endswith("/login?next=/replay")
        assert page.context.cookies() == []  # no session was set
    finally:
        page.close()


def test_untranscribed_speech_is_marked_in_the_transcript(replay: Replay, browser: Any) -> None:
    """B3 on the page: speech the ASR never answered (an `asr_timeout` trace entry, as
    monitor/runtime/transcripts.py writes it) is listed where it was said as "[not
    transcribed]", under a "Transcript incomplete" line naming its range. Last in the module:
    it adds that entry to the shared call."""
    repo, call = replay.web.server.repo, replay.call
    end = call.duration_ms or 0
    start_ms, end_ms = end - 3000, end - 1500  # 00:mm:ss of each, as the page writes them
    # The call is finalised, but its end-of-call alerts are stored after the `finalised` entry
    # (seq 56 after 55); one stored between our read and write would take a seq of max + 1,
    # and the insert (idempotent on call and seq) would drop ours. Well above the handful of
    # seqs a finished call still uses, and read back below.
    seq = max(t.seq for t in (repo.get_call(call.call_id) or call).trace) + 100
    mark = Marked(call.call_id, seq, start_ms, datetime.now(UTC), "asr_timeout", "customer",
                  {"end_ms": end_ms, "reason": "timeout"})  # fmt: skip
    repo.apply(rows_for(mark))  # as the storage sink stores the live event
    stored = repo.get_call(call.call_id)
    assert stored is not None and any(
        t.seq == seq and t.kind == "asr_timeout" for t in stored.trace
    )
    page = open_call(browser, replay)
    try:
        note = page.locator("#transcript .incomplete").inner_text()
        fmt = [f"{ms // 60000:02d}:{ms // 1000 % 60:02d}" for ms in (start_ms, end_ms)]
        assert note.startswith("Transcript incomplete") and f"{fmt[0]}–{fmt[1]}" in note
        missing = page.locator("#transcript .line.missing")
        assert missing.count() == 1 and "[not transcribed]" in missing.inner_text()
        assert missing.get_attribute("data-start-ms") == str(start_ms)
        title = missing.locator(".untranscribed").get_attribute("title") or ""
        assert "timed out" in title
        spoken = page.locator("#transcript .line:not(.missing)")
        assert spoken.count() == len([s for s in call.segments if s.text.strip()])
    finally:
        page.close()
