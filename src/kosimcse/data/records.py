"""Typed records that every reader yields."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StsPair:
    """A sentence pair with a gold similarity on the 0–5 scale."""

    sentence1: str
    sentence2: str
    score: float


@dataclass(frozen=True, slots=True)
class NliPair:
    """A premise/hypothesis pair labelled entailment, neutral or contradiction."""

    premise: str
    hypothesis: str
    label: str


@dataclass(frozen=True, slots=True)
class NliTriplet:
    """Supervised SimCSE input: anchor, positive (entailment), hard negative (contradiction)."""

    anchor: str
    positive: str
    negative: str


@dataclass(frozen=True, slots=True)
class Text:
    """One unlabeled text (a sentence or a paragraph) with where it came from."""

    text: str
    source: str
    line: int | None = None
