"""WER / CER scoring and their normalisers."""

from __future__ import annotations

import pytest

from evaluation.scoring import (
    cer,
    corpus_cer,
    corpus_wer,
    edit_distance,
    normalize_en,
    normalize_zh,
    number_words,
    wer,
)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (42, "forty two"),
        (100, "one hundred"),
        (1455, "one thousand four hundred fifty five"),
        (2_000_015, "two million fifteen"),
        (10**12, "one " + "zero " * 11 + "zero"),
    ],
)
def test_number_words(n: int, words: str) -> None:
    assert number_words(n) == words.strip()


def test_edit_distance() -> None:
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a"], []) == 1
    assert edit_distance(["a", "b"], ["a", "b"]) == 0


def test_english_normalisation() -> None:
    assert normalize_en("Press 1 to accept, or 2 to reject it.") == (
        "press one to accept or two to reject it".split()
    )
    assert normalize_en("I'm re-entering the forty-two line Bible") == (
        "im re entering the forty two line bible".split()
    )
    assert normalize_en("1.5% of 1,000") == "one point five of one thousand".split()


def test_wer() -> None:
    ref = "Please enter your password followed by the pound key."
    assert wer(ref, "please enter your password, followed by the pound key") == 0.0
    assert wer(ref, "Please and your password followed by the pound key.") == pytest.approx(1 / 9)
    assert wer("press 7 now", "Press seven now.") == 0.0
    assert wer("", "") == 0.0
    assert wer("", "hello") == float("inf")


def test_mandarin_normalisation() -> None:
    # Full-width to half-width, Traditional to Simplified, digits as AISHELL writes them.
    assert "".join(normalize_zh("２０１５年，當地４家")) == "二零一五年当地四家"
    assert "".join(normalize_zh("46歲的國企")) == "四十六岁的国企"
    assert "".join(normalize_zh("1-2线城市")) == "一二线城市"
    assert "".join(normalize_zh("其中 有 两个！")) == "其中有两个"


def test_cer() -> None:
    ref = "四十六岁的国企出纳员张伟在任职的四年时间里"
    assert cer(ref, "46歲的國企出納員張偉在任職的4年時間裡") == 0.0
    assert cer("其中有两个是内因的指标", "其中有两个是内音的指标") == pytest.approx(1 / 11)


def test_corpus_rates_weight_by_reference_length() -> None:
    # 1 edit in 2 words and 0 in 8 words: 1/10 overall, not the mean of 1/2 and 0.
    refs = ["hello world", "one two three four five six seven eight"]
    hyps = ["hello word", "one two three four five six seven eight"]
    assert corpus_wer(refs, hyps) == pytest.approx(0.1)
    assert corpus_cer(["一二", "三四五六"], ["一二", "三四五"]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="same length"):
        corpus_wer(["a"], [])


def test_a_short_number_before_nian_is_scored_in_its_closer_reading() -> None:
    # "10年" is written the same for ten years (十年) and for 2010 (一零年): either reading of
    # the digits is right; the e2e Mandarin call says 未来十年 and the live decode writes 10年.
    assert cer("未来十年即使这个指标往下走", "未来10年即使这个指标往下走") == 0.0
    assert cer("一零年的数据", "10年的数据") == 0.0
    assert cer("二零一五年", "2015年") == 0.0  # four digits stay a year
    assert cer("十年", "二零年") == pytest.approx(1.0)  # characters are not re-read
    assert corpus_cer(["十年", "二零一五年"], ["10年", "2015年"]) == 0.0
