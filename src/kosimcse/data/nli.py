"""NLI pairs -> supervised SimCSE triplets (premise as anchor, entailment positive, contradiction hard negative)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from kosimcse.data.records import NliPair, NliTriplet


@dataclass
class TripletReport:
    """What ``build_triplets`` found: premises seen, those usable, and why the others were not."""

    premises: int = 0
    premises_with_both: int = 0
    lacking_entailment: int = 0
    lacking_contradiction: int = 0
    triplets: int = 0

    @property
    def premises_lacking(self) -> int:
        return self.premises - self.premises_with_both

    def as_dict(self) -> dict:
        return {**asdict(self), "premises_lacking": self.premises_lacking}


def build_triplets(pairs: Iterable[NliPair], report: TripletReport | None = None) -> list[NliTriplet]:
    """One triplet per entailment hypothesis, its negative a contradiction of the same premise (used in turn, so
    each is used before any repeats), in order of first appearance; premises lacking a label count in ``report``."""
    report = report if report is not None else TripletReport()
    by_premise: dict[str, tuple[list[str], list[str]]] = {}
    for pair in pairs:
        entail, contra = by_premise.setdefault(pair.premise, ([], []))
        if pair.label == "entailment":
            entail.append(pair.hypothesis)
        elif pair.label == "contradiction":
            contra.append(pair.hypothesis)
    triplets: list[NliTriplet] = []
    for premise, (entail, contra) in by_premise.items():
        report.premises += 1
        report.lacking_entailment += not entail
        report.lacking_contradiction += not contra
        if not entail or not contra:
            continue
        report.premises_with_both += 1
        for i, positive in enumerate(entail):
            triplets.append(NliTriplet(premise, positive, contra[i % len(contra)]))
    report.triplets = len(triplets)
    return triplets
