"""Korean text clean-up (Unicode NFC, whitespace) and sentence splitting with kiwipiepy on several threads."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache
from itertools import islice

# Zero-width characters are deleted, not turned into spaces: on the web they sit inside words as often as between
# them. Lone surrogates (from JSON "\\ud800" escapes) cannot be written as UTF-8: dropped too.
_ZERO_WIDTH_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad\ud800-\udfff]")
# Python's \s already covers NBSP, ideographic space and the other Unicode spaces; control
# characters are folded into spaces too, so no stray \x00 or \x0b survives into a corpus line.
_SPACE_RE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


def normalize(text: str) -> str:
    """Unicode NFC, every run of whitespace (NBSP, zero-width, controls included) as one space, stripped."""
    # deletions first: removing a zero-width char between a syllable and a jamo must still compose them
    text = _ZERO_WIDTH_RE.sub("", text)
    text = unicodedata.normalize("NFC", text)
    return _SPACE_RE.sub(" ", text).strip()


@lru_cache(maxsize=4)
def _kiwi(workers: int):
    import warnings

    from kiwipiepy import Kiwi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Kiwi(num_workers=workers)


def split_sentences(paragraphs: Iterable[str], workers: int = 2, batch_size: int = 512) -> Iterator[list[str]]:
    """Split each paragraph into sentences with ``Kiwi.split_into_sents``; one list per paragraph, in order
    (empty for a blank one). Batches of ``batch_size`` keep memory bounded; kiwi spreads each over ``workers``."""
    kiwi = _kiwi(max(1, int(workers)))
    it = iter(paragraphs)
    while batch := list(islice(it, batch_size)):
        todo = [i for i, p in enumerate(batch) if p and p.strip()]
        results: list[list[str]] = [[] for _ in batch]
        for i, sents in zip(todo, kiwi.split_into_sents([batch[i] for i in todo]) if todo else []):
            results[i] = [s.text.strip() for s in sents if s.text.strip()]
        yield from results
