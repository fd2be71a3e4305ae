"""Korean normalisation and kiwi sentence splitting."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from kosimcse.data.korean import normalize, split_sentences


def test_normalize_nfc_and_whitespace():
    nfd = unicodedata.normalize("NFD", "한국어 문장")
    assert nfd != "한국어 문장" and normalize(nfd) == "한국어 문장"
    assert normalize("\u00a0 한국어\u3000\t문장\n\r입니다 \u200b") == "한국어 문장 입니다"
    assert normalize("가\u200b나\ufeff다") == "가나다"  # zero-width inside a word joins it
    assert normalize("  \u200b\u00a0\n") == ""


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("가나다 ab.\u00a0\u200b\t\n\u3000\u1100\u1161\u11a8\x00\ud800")), max_size=40))
def test_normalize_properties(text):
    out = normalize(text)
    assert normalize(out) == out
    assert out == out.strip() and "  " not in out and "\n" not in out and "\t" not in out
    assert unicodedata.is_normalized("NFC", out)
    out.encode("utf-8")  # never a lone surrogate


def test_split_sentences_order_and_content():
    paragraphs = [
        f"이것은 {i}번째 문단의 첫 문장입니다. 그리고 이것은 두 번째 문장입니다! 세 번째는 질문인가요?" for i in range(7)
    ]
    paragraphs.insert(3, "")
    paragraphs.insert(5, "   ")
    out = list(split_sentences(paragraphs, workers=2, batch_size=3))
    assert len(out) == len(paragraphs)
    assert out[3] == [] and out[5] == []
    for para, sents in zip(paragraphs, out):
        if para.strip():
            assert len(sents) == 3
            assert "".join(sents).replace(" ", "") == para.replace(" ", "")  # nothing lost or reordered
    assert out[0][0] == "이것은 0번째 문단의 첫 문장입니다."
    assert out[-1][0].startswith("이것은 6번째")
    assert list(split_sentences(paragraphs, workers=2, batch_size=100)) == out  # batch size never changes output


def test_split_sentences_is_lazy():
    def endless():
        i = 0
        while True:
            yield f"문장 {i}입니다. 다음 문장입니다."
            i += 1

    it = split_sentences(endless(), batch_size=4)
    first = [next(it) for _ in range(5)]
    assert first[4][0] == "문장 4입니다."
