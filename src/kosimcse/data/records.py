"""Typed records that every reader yields."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StsPair:
    sentence1: str
    sentence2: str
    score: float  # gold similarity, 0-5


@dataclass(frozen=True, slots=True)
class NliPair:
    premise: str
    hypothesis: str
    label: str  # entailment, neutral or contradiction


@dataclass(frozen=True, slots=True)
class NliTriplet:
    """Supervised SimCSE input."""

    anchor: str
    positive: str  # an entailment of the anchor
    negative: str  # a contradiction of it (the hard negative)


@dataclass(frozen=True, slots=True)
class Text:
    """One unlabeled text (a sentence or a paragraph) with where it came from."""

    text: str
    source: str
    line: int | None = None
