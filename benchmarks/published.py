"""Published reference rows (cosine Pearson/Spearman on KorSTS test), quoted from their sources, never measured here.

Run: python -m benchmarks.published
These are the numbers the original projects report; the models are not available offline, so the
quality table shows them as "published, not measured here" and leaves the other metrics n/a.
"""

from __future__ import annotations

SOURCE_NOTE = "published, not measured here"

# (row name, cosine Pearson, cosine Spearman, where it was reported); the figures are those listed in the
# benchmarks issue (#4), copied from the projects' own pages.
PUBLISHED = (
    ("seed KoSimCSE supervised (KLUE-NLI)", 84.27, 84.17, "seed project README"),
    ("seed KoSimCSE unsupervised (klue/roberta-small)", 70.73, 70.40, "seed project README"),
    ("BM-K/KoSimCSE-roberta-multitask", 85.08, 86.12, "BM-K model README"),
    ("jhgan/ko-sroberta-multitask", 84.77, 85.60, "jhgan model card"),
    ("ddobokki unsup SimCSE roberta-base", 77.02, 76.71, "ddobokki model README"),
)


def published_rows(task: str = "korsts-test") -> dict[str, dict[str, float]]:
    """``{row name: {cosine_pearson, cosine_spearman}}``; only KorSTS test has published numbers."""
    if task != "korsts-test":
        return {}
    return {f"{name} ({SOURCE_NOTE})": {"cosine_pearson": p, "cosine_spearman": s} for name, p, s, _ in PUBLISHED}


def main() -> None:
    from benchmarks.common import save_result

    save_result("published", "Published reference numbers (not measured here)", 0.0,
                data={"results": {"korsts-test": published_rows()},
                      "sources": {f"{name} ({SOURCE_NOTE})": source for name, _, _, source in PUBLISHED}},
                order=60, command="python -m benchmarks.published")


if __name__ == "__main__":
    main()
