"""Compliance checker: windows, order, exceptions, forbidden alerts, live timing, the score."""

from __future__ import annotations

import tomllib

import pytest

from monitor.qa import (
    CheckerFinished,
    ComplianceChecker,
    ForbiddenPhraseSaid,
    OrderViolated,
    PhraseMatched,
    PhraseMissed,
    RuleSuspended,
    load_compliance_scripts,
    script_from_dict,
)
from monitor.qa.rules import ComplianceScript
from monitor.qa.watermark import TranscriptWatermark

SCRIPT = """
name = "test-en"
language = "en"
pass_score = 80

[[stage]]
id = "greeting"
window = { first_s = 10, from = "agent_speech" }
deduction = 15
  [[stage.element]]
  name = "welcome"
  phrases = ["thank you for calling"]
  [[stage.element]]
  name = "offer"
  phrases = ["how can I help you"]

[[stage]]
id = "verification"
after = ["greeting"]
deduction = 15
order_deduction = 5
phrases = ["date of birth"]

[[stage]]
id = "closing"
window = { last_s = 30 }
deduction = 10
  [[stage.element]]
  name = "thanks"
  phrases = ["thank you"]
  [[stage.element]]
  name = "farewell"
  phrases = ["goodbye"]

[[stage]]
id = "hold"
required = false
phrases = ["please hold"]

[[forbidden]]
id = "rude"
severity = "critical"
deduction = 30
phrases = ["calm down"]

[[forbidden]]
id = "rushing"
severity = "minor"
deduction = 5
phrases = ["hurry up"]

[[exception]]
id = "in_a_hurry"
phrases = ["I'm in a hurry"]
suspends = ["closing"]

[[exception]]
id = "asked_to_wait"
phrases = ["give me a second"]
suspends = ["rushing"]
for_s = 20
"""


@pytest.fixture(scope="module")
def script() -> ComplianceScript:
    return script_from_dict(tomllib.loads(SCRIPT), "test-en.toml")


def kinds(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_hit_is_emitted_with_the_segment_and_records_where_it_was_said(
    script: ComplianceScript,
) -> None:
    checker = ComplianceChecker(script)
    events = checker.on_segment(
        "agent", 1000, 5000, "Thank you for calling Acme Bank, how can I help you today?", "en"
    )
    [hit] = [e for e in events if isinstance(e, PhraseMatched)]
    assert hit.stage == "greeting" and hit.party == "agent"
    assert hit.phrase == "thank you for calling + how can I help you"
    assert "Thank you for calling" in hit.matched_text and "how can I help you" in hit.matched_text
    assert 1000 <= hit.start_ms < hit.end_ms <= 5000
    assert hit.score >= 80


def test_greeting_missed_within_one_second_of_its_window_closing(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    assert checker.on_segment("agent", 2000, 4000, "Hello, what's up?", "en") == []
    # The window is the first 10 s of agent speech: 2000 + 10000 = 12000 ms.
    for media_ms in range(4000, 12000, 100):
        assert checker.advance(media_ms) == [], media_ms
    events = checker.advance(12000)
    assert kinds(events) == ["PhraseMissed"]
    miss = events[0]
    assert isinstance(miss, PhraseMissed)
    assert miss.stage == "greeting" and miss.at_ms == 12000 and miss.deduction == 15
    assert miss.window == "first 10 s of agent speech" and not miss.heard_outside_window
    assert checker.advance(20000) == []  # once


def test_window_waits_for_the_agent_to_speak(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    checker.on_segment("customer", 0, 3000, "Hello? Anybody there?", "en")
    assert checker.advance(30000) == []  # no agent speech yet: the window has not opened
    events = checker.on_segment(
        "agent", 31000, 35000, "Thank you for calling, how can I help you?", "en"
    )
    assert "PhraseMatched" in kinds(events)


def test_greeting_after_the_window_is_a_miss_heard_outside_it(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 2000, "One moment.", "en")
    events = checker.on_segment(
        "agent", 14000, 18000, "Thank you for calling, how can I help you?", "en"
    )
    assert kinds(events) == ["PhraseMissed"]
    assert isinstance(events[0], PhraseMissed) and events[0].heard_outside_window
    row = checker.finish(20000).stage("greeting")
    assert row.status == "outside_window" and row.start_ms is not None and row.deduction == 15


def test_elements_must_be_heard_in_one_turn(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 2000, "Thank you for calling.", "en")
    checker.on_segment("customer", 2500, 5000, "I have a problem with my bill.", "en")
    events = checker.on_segment("agent", 5500, 7000, "How can I help you?", "en")
    assert "PhraseMatched" not in kinds(events)


def test_a_phrase_cut_in_two_by_the_vad_still_matches(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 1500, "Thank you for", "en")
    events = checker.on_segment("agent", 2100, 5000, "calling, how can I help you?", "en")
    [hit] = [e for e in events if isinstance(e, PhraseMatched)]
    assert hit.matched_text.startswith("Thank you for") and hit.start_ms == 0


def test_closing_must_be_in_the_last_seconds(script: ComplianceScript) -> None:
    early = ComplianceChecker(script)
    early.on_segment("agent", 5000, 8000, "Thank you, goodbye.", "en")
    early.on_segment("customer", 9000, 60000, "Wait, one more thing about my account.", "en")
    events = early.close(70000)
    [miss] = [e for e in events if isinstance(e, PhraseMissed) and e.stage == "closing"]
    assert miss.heard_outside_window and miss.at_ms == 70000
    assert early.finish(70000).stage("closing").status == "outside_window"

    late = ComplianceChecker(script)
    late.on_segment("agent", 55000, 58000, "Thank you, goodbye.", "en")
    assert late.finish(60000).stage("closing").status == "passed"


def test_order_violation_when_verification_precedes_greeting(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 3000, "Can you confirm your date of birth?", "en")
    checker.on_segment("customer", 3500, 6000, "Sure, it's the first of May.", "en")
    events = checker.on_segment(
        "agent", 6500, 9000, "Thank you for calling, how can I help you?", "en"
    )
    [order] = [e for e in events if isinstance(e, OrderViolated)]
    assert (order.stage, order.expected_after) == ("verification", "greeting")
    assert 0 < order.stage_ms < 3000 <= 6500 <= order.expected_after_ms
    assert order.deduction == 5
    result = checker.finish(12000)
    assert not result.stage("verification").order_ok
    assert any(d.kind == "order" and d.points == 5 for d in result.deductions)


def test_no_order_violation_in_the_right_order(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 3000, "Thank you for calling, how can I help you?", "en")
    checker.on_segment("agent", 6500, 9000, "Can you confirm your date of birth?", "en")
    result = checker.finish(12000)
    assert result.order_violations == ()
    assert result.stage("verification").order_ok


def test_forbidden_phrase_is_an_alert_at_once_and_deducts_once(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    events = checker.on_segment("agent", 1000, 3000, "Calm down, sir.", "en")
    [alert] = [e for e in events if isinstance(e, ForbiddenPhraseSaid)]
    assert (alert.rule, alert.severity, alert.party) == ("rude", "critical", "agent")
    assert alert.matched_text == "Calm down"
    # Said again later: a second alert, but the rule deducts once.
    events = checker.on_segment("agent", 9000, 11000, "Please calm down.", "en")
    assert "ForbiddenPhraseSaid" in kinds(events)
    result = checker.finish(20000)
    assert len(result.forbidden) == 2
    assert [d.points for d in result.deductions if d.kind == "forbidden"] == [30]
    assert result.critical and not result.passed


def test_customer_saying_a_forbidden_phrase_is_no_alert(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    events = checker.on_segment("customer", 1000, 3000, "Calm down? I am calm!", "en")
    assert "ForbiddenPhraseSaid" not in kinds(events)


def test_exception_suspends_the_closing(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 3000, "Thank you for calling, how can I help you?", "en")
    events = checker.on_segment("customer", 3500, 6000, "I'm in a hurry, just block my card.", "en")
    [suspended] = [e for e in events if isinstance(e, RuleSuspended)]
    assert (suspended.rule, suspended.exception, suspended.until_ms) == (
        "closing",
        "in_a_hurry",
        None,
    )
    events = checker.close(30000)
    assert not any(isinstance(e, PhraseMissed) and e.stage == "closing" for e in events)
    row = checker.finish(30000).stage("closing")
    assert row.status == "suspended" and row.deduction == 0


def test_time_limited_exception_lifts_a_forbidden_rule_for_a_while(
    script: ComplianceScript,
) -> None:
    checker = ComplianceChecker(script)
    events = checker.on_segment("customer", 0, 2000, "Give me a second, I'm looking.", "en")
    [suspended] = [e for e in events if isinstance(e, RuleSuspended)]
    assert suspended.rule == "rushing" and suspended.until_ms == suspended.end_ms + 20000
    assert "ForbiddenPhraseSaid" not in kinds(
        checker.on_segment("agent", 5000, 6000, "Hurry up please.", "en")
    )
    assert "ForbiddenPhraseSaid" in kinds(
        checker.on_segment("agent", 40000, 41000, "Hurry up please.", "en")
    )


def test_score_and_checklist(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 3000, "Thank you for calling, how can I help you?", "en")
    checker.on_segment("agent", 20000, 23000, "Thank you, goodbye.", "en")
    result = checker.finish(25000)
    statuses = {row.stage: row.status for row in result.stages}
    assert statuses == {
        "greeting": "passed",
        "verification": "missed",
        "closing": "passed",
        "hold": "missed",
    }
    assert result.stage("hold").deduction == 0  # not required
    assert result.score == 85 and result.passed and not result.critical
    assert [(d.rule, d.kind, d.points) for d in result.deductions] == [
        ("verification", "missed", 15)
    ]


def test_lifecycle(script: ComplianceScript) -> None:
    checker = ComplianceChecker(script)
    with pytest.raises(ValueError, match="party"):
        checker.on_segment("supervisor", 0, 1000, "hi", "en")
    with pytest.raises(ValueError, match="start_ms"):
        checker.on_segment("agent", 2000, 1000, "hi", "en")
    assert checker.on_segment("agent", 0, 1000, " … ", "en") == []
    checker.finish(1000)
    with pytest.raises(CheckerFinished):
        checker.on_segment("agent", 0, 1000, "hi", "en")
    with pytest.raises(CheckerFinished):
        checker.advance(5000)


def test_mandarin_greeting_live_with_traditional_characters_and_homophones() -> None:
    script = load_compliance_scripts().select({}, "zh")
    checker = ComplianceChecker(script)
    # Whisper `base` output for zh/a_greeting_02 (欢迎致电华信银行 heard as 制电华系银行).
    events = checker.on_segment(
        "agent", 800, 6000, "您好,歡迎制電華系銀行,很高興為您服務。請問有什麼可以幫您。", "zh"
    )
    [hit] = [e for e in events if isinstance(e, PhraseMatched)]
    assert hit.stage == "greeting" and "很高興為您服務" in hit.matched_text
    events = checker.on_segment(
        "agent", 9000, 12000, "麻煩您抱一下您的出生日期,我这边和时依下您的身份云。", "zh"
    )
    assert [e.stage for e in events if isinstance(e, PhraseMatched)] == ["verification"]
    events = checker.on_segment("agent", 15000, 18000, "這款裏財產品穩壯不陪,收益絕對有保障", "zh")
    [alert] = [e for e in events if isinstance(e, ForbiddenPhraseSaid)]
    assert alert.rule == "improper_promise"


def test_transcript_watermark_holds_back_for_open_and_pending_speech() -> None:
    wm = TranscriptWatermark(lead_ms=500)
    wm.on_audio(4000, {"agent": False, "customer": False})
    assert wm.value == 4000
    wm.on_audio(4020, {"agent": True, "customer": False})  # the agent starts speaking
    wm.on_audio(9000, {"agent": True, "customer": False})
    assert wm.value == 3500  # speech opened after 4000, less the lead
    wm.on_audio(9520, {"agent": False, "customer": False})  # the utterance ended ...
    wm.on_queued("u1", 3900)  # ... and waits for ASR
    assert wm.value == 3900
    wm.on_done("u1")
    assert wm.value == 9520


NAME_SCRIPT = """
name = "name-en"
language = "en"

[[stage]]
id = "greeting"
window = { first_s = 10, from = "agent_speech" }
  [[stage.element]]
  name = "welcome"
  phrases = ["thank you for calling"]
  [[stage.element]]
  name = "agent name"
  phrases = ["my name is", "speaking"]
  own_name = true
  [[stage.element]]
  name = "offer"
  phrases = ["how can I help you"]
"""


@pytest.mark.parametrize(
    ("agent", "text", "heard"),
    [
        (None, "Thank you for calling Acme, my name is Emily, how can I help you?", True),
        # The ASR lost "my ... is": the agent's own name from the metadata still counts.
        (None, "Thank you for calling Acme, uh name Emily, how can I help you?", False),
        ("Emily", "Thank you for calling Acme, uh name Emily, how can I help you?", True),
        ("Emily Chen", "Thank you for calling Acme, uh name Enily, how can I help you?", True),
        # Someone else's name, or none, is no name.
        ("Kevin", "Thank you for calling Acme, uh name Emily, how can I help you?", False),
        ("Emily", "Thank you for calling Acme, how can I help you?", False),
        # A name alone is no greeting.
        ("Kevin", "Northwind Telecom, Kevin speaking.", False),
        # Metadata is switch input: symbols or digits only add nothing and break nothing.
        ("-- 42 --", "Thank you for calling Acme, uh name Emily, how can I help you?", False),
    ],
)
def test_agent_name_from_metadata_satisfies_the_name_element(
    agent: str | None, text: str, heard: bool
) -> None:
    script = script_from_dict(tomllib.loads(NAME_SCRIPT), "name-en.toml")
    checker = ComplianceChecker(script, agent_name=agent)
    checker.on_segment("agent", 500, 5000, text, "en")
    result = checker.finish(30_000)
    assert {row.stage: row.heard for row in result.stages}["greeting"] is heard


def test_agent_name_reaches_the_checker_from_call_metadata() -> None:
    """The runtime path: `agentName` in the switch's first text frame -> the call's checker."""
    from config.settings import load_settings
    from monitor.core.analysis import CallAnalyzer
    from monitor.core.metadata import parse_metadata
    from monitor.qa import ScriptBook

    settings = load_settings()
    book = ScriptBook((script_from_dict(tomllib.loads(NAME_SCRIPT), "name-en.toml"),))
    text = "Thank you for calling Acme, uh name Emily, how can I help you?"
    heard = {}
    for agent in ("Emily", "Kevin"):
        meta = parse_metadata(f'{{"callId": "c1", "agentName": "{agent}", "channels": 2}}')
        analyzer = CallAnalyzer(meta, settings.quality, settings.grading, book, "en")
        analyzer.on_segment("u1", "agent", 500, 5000, text, "en")
        assert analyzer.checker is not None
        result = analyzer.checker.finish(30_000)
        heard[agent] = {row.stage: row.heard for row in result.stages}["greeting"]
    assert heard == {"Emily": True, "Kevin": False}


def test_closing_in_a_long_turn_pairs_its_own_thanks_not_the_greetings(
    script: ComplianceScript,
) -> None:
    # A short call where the agent never yields the floor: one turn from greeting to goodbye.
    # The closing's "thank you" is the one beside its farewell, not the greeting's, so the
    # closing is placed at the end and is not out of order with the greeting, even when the
    # greeting's wording matches better (its "thank you" is exact, the closing's misheard).
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 4000, "Thank you for calling, how can I help you?", "en")
    checker.on_segment("agent", 5000, 9000, "Your new card is on its way.", "en")
    events = checker.on_segment("agent", 10000, 13000, "Thank yu, goodbye.", "en")
    [hit] = [e for e in events if isinstance(e, PhraseMatched) and e.stage == "closing"]
    assert hit.start_ms >= 10000 and hit.matched_text == "Thank yu … goodbye"
    result = checker.finish(14000)
    assert result.stage("closing").status == "passed" and result.order_violations == ()


def test_short_mandarin_elements_are_not_pieced_across_sentences() -> None:
    # From the evaluation set: 谢您 (thanks) one pinyin letter from 下，您 across a comma, and
    # 再见 one letter from 在今(天): two unrelated sentences made a closing. A two-character
    # element is said in one breath; the same words without the comma still count.
    script = load_compliance_scripts().select({}, "zh")
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 4000, "我跟您确认一下，您是想取消这个套餐，对吗？", "zh")
    checker.on_segment("agent", 5000, 9000, "您的订单已经在今天上午发货了。", "zh")
    assert checker.finish(10000).stage("closing").status != "passed"
    checker = ComplianceChecker(script)
    checker.on_segment("agent", 0, 3000, "多谢您，再见。", "zh")
    assert checker.finish(4000).stage("closing").status == "passed"


@pytest.mark.parametrize(
    ("language", "text", "status"),
    [
        # The offer of help misheard beyond a plain match ("how may I help you"), beside a
        # clear welcome and name: the elements confirm each other.
        ("en", "Good evening, uh thank you ftr calling Summit Online, my um nime is Sarah, "
         "me halp yor?", "passed"),
        # ... but no offer at all is no greeting, however clear the rest.
        ("en", "Thank you for calling Acme Bank, my name is Anna, how are you?", "missed"),
        ("en", "Thank you for calling Acme Bank, my name is Anna, please hold.", "missed"),
        # 下午好 clipped to 下午: the optional salutation found weakly must not sink the
        # service phrase and offer of help it would pass without.
        ("zh", "下午，感谢位致电华信银行信用信中心，吧毛高兴为您服务，青问有什么可以帮基？",
         "passed"),
        # The near miss: salutation and offer, no service phrase.
        ("zh", "您好，请问有什么可以帮您？", "missed"),
    ],
)  # fmt: skip
def test_damaged_greetings_pass_on_their_elements_together(
    language: str, text: str, status: str
) -> None:
    checker = ComplianceChecker(load_compliance_scripts().select({}, language))
    checker.on_segment("agent", 0, 6000, text, language)
    assert checker.finish(7000).stage("greeting").status == status


def test_a_late_greeting_is_sighted_for_the_order_check_not_on_words_others_claimed() -> None:
    # Mandarin: verification first, then a greeting the ASR damaged, after its window. It is
    # still sighted (with the benefit of the doubt an in-window greeting gets), so the order
    # violation is found.
    zh = ComplianceChecker(load_compliance_scripts().select({}, "zh"))
    zh.on_segment("agent", 0, 3000, "请问机主的姓名是什么？", "zh")
    zh.on_segment("customer", 3500, 6000, "我叫王明。", "zh")
    zh.advance(15000)
    text = "您好，这里是云通况代报啊修热线，很该兴为您服务，请问有什么可也化师？"
    zh.on_segment("agent", 16000, 22000, text, "zh")
    result = zh.finish(30000)
    assert result.stage("greeting").status == "outside_window"
    assert [(o.stage, o.expected_after) for o in result.order_violations] == [
        ("verification", "greeting")
    ]
    # English: no greeting was said. "I'm" (a name), "our billing" (one letter pair from
    # "for calling") and "can I help you" inside the agent's "anything else?" must not make
    # a late greeting out of the hold notice and the pre-closing question.
    en = ComplianceChecker(load_compliance_scripts().select({}, "en"))
    verify = "May I have the phone number associated with this order?"
    en.on_segment("agent", 900, 4300, verify, "en")
    en.advance(26000)
    en.on_segment("agent", 26200, 30000,
                  "I'm going to transfer you to our billing department, please stay on the line.",
                  "en")  # fmt: skip
    en.on_segment("agent", 30800, 33100, "Is there anything else I can help you with today?", "en")
    result = en.finish(40000)
    assert result.stage("greeting").status == "missed" and result.order_violations == ()
    assert result.stage("pre_closing").status == "passed"
