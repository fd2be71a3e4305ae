"""ESimCSE's repeated positive holds exactly the anchor's tokens, some of the sentence's doubled in place.

With a SentencePiece tokenizer (Metaspace "▁", as XLM-R and e5 use) and a prefix such as "query: ", tokenising
the prefix and the sentence apart gives the positive a stray "▁" that the anchor lacks, and the model could tell
positives from queue negatives by it.
"""

import functools
import sys

import pytest
import torch

from helpers import korean_sample_texts, make_tiny_sentencepiece_tokenizer
from kosimcse.modeling.objectives import DEFAULT_PROMPT, encode_batch
from kosimcse.training.data import ContrastiveCollator

sys.setrecursionlimit(10000)


@pytest.fixture(scope="module")
def sp_tok():
    return make_tiny_sentencepiece_tokenizer()


@pytest.fixture(scope="module")
def texts():
    return korean_sample_texts(400)[:200]


def duplicated_in_place(anchor: list[int], positive: list[int], may_double: list[bool]) -> bool:
    """Whether ``positive`` is ``anchor`` with some tokens written twice in place, only where ``may_double``."""
    n, m = len(anchor), len(positive)

    @functools.lru_cache(maxsize=None)
    def fits(i: int, j: int) -> bool:
        if i == n:
            return j == m
        if j >= m or positive[j] != anchor[i]:
            return False
        if fits(i + 1, j + 1):
            return True
        return may_double[i] and j + 1 < m and positive[j + 1] == anchor[i] and fits(i + 1, j + 2)

    return fits(0, 0)


def rows(batch: dict) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]


def sentence_tokens(tok, text: str, prefix: str, max_length: int) -> list[bool]:
    """Per anchor token: is it one of the sentence's own tokens (not special, not wholly inside the prefix)?

    Read from the tokenizer's character offsets, independently of how encode_batch tells them apart.
    """
    enc = tok(prefix + text, truncation=True, max_length=max_length, return_offsets_mapping=True,
              return_special_tokens_mask=True)
    spans, specials = enc["offset_mapping"], enc["special_tokens_mask"]
    return [not special and end > len(prefix) for (_, end), special in zip(spans, specials)]


@pytest.mark.parametrize("prefix", ["query: ", "질문: ", ""])
def test_positive_is_the_anchor_with_sentence_tokens_doubled_in_place(sp_tok, texts, prefix):
    anchors = rows(encode_batch(sp_tok, texts, max_length=64, prefix=prefix))
    longer = 0
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        positives = rows(encode_batch(sp_tok, texts, max_length=64, prefix=prefix, dup_rate=0.32, generator=g))
        for text, anchor, positive in zip(texts, anchors, positives):
            if len(anchor) >= 40:
                continue  # a positive cut back at max_length is checked below
            allowed = sentence_tokens(sp_tok, text, prefix, 64)
            assert duplicated_in_place(anchor, positive, allowed), (
                prefix + text, sp_tok.convert_ids_to_tokens(anchor), sp_tok.convert_ids_to_tokens(positive))
            longer += len(positive) > len(anchor)
    assert longer > 100  # the repetition really happens


def test_prefix_alone_tokenises_differently_here(sp_tok):
    """The premise of the test above: this tokenizer gives the lone prefix a trailing "▁" token."""
    alone = sp_tok("query: ", add_special_tokens=False)["input_ids"]
    whole = sp_tok("query: 한 남자가", add_special_tokens=False)["input_ids"]
    assert whole[:len(alone)] != alone


def test_collator_views_differ_only_by_repeated_sentence_tokens(sp_tok, texts):
    torch.manual_seed(0)
    batch = ContrastiveCollator(sp_tok, max_length=48, prefix="query: ", dup_rate=0.5)([{"text": t} for t in texts[:32]])
    for text, ids, mask in zip(texts, batch["input_ids"], batch["attention_mask"]):
        anchor, positive = ids[0][mask[0].bool()].tolist(), ids[1][mask[1].bool()].tolist()
        if len(anchor) < 30:
            assert duplicated_in_place(anchor, positive, sentence_tokens(sp_tok, text, "query: ", 48))


def test_long_positive_is_cut_back_at_the_end_of_the_sentence(sp_tok, texts):
    long = " ".join(texts[:6])
    anchor = rows(encode_batch(sp_tok, [long], max_length=32, prefix="query: "))[0]
    allowed = sentence_tokens(sp_tok, long, "query: ", 32)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        positive = rows(encode_batch(sp_tok, [long], max_length=32, prefix="query: ", dup_rate=0.5, generator=g))[0]
        assert len(anchor) == len(positive) == 32 and positive[-1] == anchor[-1] == sp_tok.eos_token_id
        # The start of the anchor with sentence tokens doubled, then the end-of-sentence token.
        assert any(duplicated_in_place(anchor[:k], positive[:-1], allowed[:k]) for k in range(1, len(anchor)))


def template_sentence_tokens(tok, anchor: list[int], text: str, prefix: str) -> list[bool]:
    """Per anchor token of a prompt-template row: one of the sentence's own tokens (not template, prefix, special)?"""
    enc = tok(prefix + text, add_special_tokens=False, return_offsets_mapping=True)
    sentence = enc["input_ids"]
    first = next(i for i in range(len(anchor)) if anchor[i:i + len(sentence)] == sentence)
    allowed = [False] * len(anchor)
    for k, (_, end) in enumerate(enc["offset_mapping"]):
        allowed[first + k] = end > len(prefix)
    return allowed


@pytest.mark.parametrize("prefix", ["query: ", ""])
def test_prompt_template_positive_keeps_the_template_and_doubles_sentence_tokens_only(sp_tok, texts, prefix):
    anchors = encode_batch(sp_tok, texts[:50], max_length=64, prefix=prefix, template=DEFAULT_PROMPT)
    g = torch.Generator().manual_seed(0)
    positives = encode_batch(sp_tok, texts[:50], max_length=64, prefix=prefix, template=DEFAULT_PROMPT,
                             dup_rate=0.32, generator=g)
    assert ((anchors["input_ids"] == sp_tok.mask_token_id).sum(1) == 1).all()
    assert ((positives["input_ids"] == sp_tok.mask_token_id).sum(1) == 1).all()
    longer = 0
    for text, anchor, positive in zip(texts, rows(anchors), rows(positives)):
        if len(anchor) >= 50:
            continue
        assert duplicated_in_place(anchor, positive, template_sentence_tokens(sp_tok, anchor, text, prefix))
        longer += len(positive) > len(anchor)
    assert longer > 10
