"""Transcript text normalisation: Simplified Chinese, phantom phrases, spacing."""

from __future__ import annotations

import pytest

from asr.textnorm import (
    clean_text,
    is_phantom,
    normalize_transcript,
    strip_phantoms,
    to_simplified,
)

KNOWN_PHANTOMS = [
    "字幕由Amara.org社区提供",
    "字幕由Amara.org社區提供",  # the same credit in Traditional characters
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "請不吝點贊 訂閱 轉發 打賞支持明鏡與點點欄目",
    "Thanks for watching!",
    " Thank you for watching.",
    "Subtitles by the Amara.org community",
    "subtitles by the amara.org community",
    "明镜需要您的支持 欢迎订阅明镜",
    "谢谢观看",
    "ご視聴ありがとうございました",
]


@pytest.mark.parametrize("text", KNOWN_PHANTOMS)
def test_known_phantoms_are_recognised_and_removed(text: str) -> None:
    assert is_phantom(text)
    assert clean_text(strip_phantoms(text)) == ""
    assert normalize_transcript(text, "zh", simplified=True) == ""


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Please hold. Thanks for watching!", "Please hold."),
        ("Your call is important. Subtitles by the Amara.org community", "Your call is important."),
        # No punctuation between real speech and the credit, as base writes Mandarin.
        (
            "我们现在还没有建立覆盖全民的征信系统 请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
            "我们现在还没有建立覆盖全民的征信系统",
        ),
        ("系统，字幕由Amara.org社区提供", "系统"),
    ],
)
def test_phantoms_are_cut_out_of_real_speech(text: str, kept: str) -> None:
    assert not is_phantom(text)
    assert clean_text(strip_phantoms(text)) == kept


@pytest.mark.parametrize(
    "text",
    [
        "Thank you.",  # callers say this; only the gates may drop it, never the phrase list
        "Thanks for watching the kids yesterday.",
        "Please subscribe me to the newsletter.",
        "订阅服务已经开通",
        "Press 1 to accept this call.",
    ],
)
def test_real_speech_is_not_a_phantom(text: str) -> None:
    assert not is_phantom(text)
    assert clean_text(strip_phantoms(text)) == text


def test_to_simplified() -> None:
    assert to_simplified("當地4家相關職能管理部門") == "当地4家相关职能管理部门"
    assert to_simplified("Already simplified 简体") == "Already simplified 简体"
    assert to_simplified("") == ""


def test_clean_text() -> None:
    assert clean_text("  Please   hold \n please ") == "Please hold please"
    assert clean_text("其中 有 两个 是内因") == "其中有两个是内因"
    assert clean_text(" 。 ！ ") == ""
    assert clean_text("🤣") == ""
    assert clean_text("hello 世界") == "hello 世界"


def test_normalize_transcript_simplifies_only_mandarin_when_asked() -> None:
    assert normalize_transcript(" 廣州市 發地產 ", "zh", simplified=True) == "广州市发地产"
    assert normalize_transcript(" 廣州市 發地產 ", "zh", simplified=False) == "廣州市發地產"
