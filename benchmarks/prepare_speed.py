"""Benchmark: prepare the full seed corpus (all kowiki + KLUE-STS/KorSTS train sentences) and time it."""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from benchmarks.common import save_result
from kosimcse.data.corpus import default_sources, format_stats_table, prepare_corpus
from kosimcse.paths import data_dir


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = ap.parse_args(argv)

    root = data_dir(args.data_dir)
    sources = default_sources(root)
    with tempfile.TemporaryDirectory(prefix="kosimcse-prepare-") as tmp:
        out = args.out or tmp
        t0 = time.perf_counter()
        stats = prepare_corpus(sources, out, data_dir=root, workers=args.workers, progress=False)
        wall = time.perf_counter() - t0
        out_bytes = os.path.getsize(os.path.join(out, "sentences.txt"))
    # ru_maxrss is in KiB on Linux
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    totals = stats["totals"]
    kowiki = stats["sources"].get("kowiki", {})
    summary = {
        "wall_time_s": round(wall, 1),
        "sentences_in": totals["sentences"],
        "sentences_kept": totals["kept"],
        "sentences_per_s": round(totals["sentences"] / wall, 1),
        "kowiki_paragraphs_per_s": round(kowiki.get("paragraphs_split", 0) / wall, 1),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "output_mb": round(out_bytes / 2**20, 1),
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
    }
    markdown = (
        "Full seed corpus: all of `corpus/kowiki` (split into sentences with kiwipiepy), plus KLUE-STS train "
        "and KorSTS train sentences, normalised, length-filtered "
        f"({stats['settings']['min_chars']}–{stats['settings']['max_chars']} chars), deduplicated, "
        f"and guarded against {', '.join(stats['settings']['eval_sets'])} "
        f"({stats['settings']['eval_sentences']:,} sentences).\n\n"
        "| wall time (s) | sentences in | kept | sentences/s | kowiki paragraphs/s | peak RSS (MB) | output (MB) | workers |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {summary['wall_time_s']} | {summary['sentences_in']:,} | {summary['sentences_kept']:,} | "
        f"{summary['sentences_per_s']:,} | {summary['kowiki_paragraphs_per_s']:,} | {summary['peak_rss_mb']} | "
        f"{summary['output_mb']} | {summary['workers']} |\n\n"
        "Per source (sentences = kept + empty + too_short + too_long + duplicate + leaked; "
        "`records` are paragraphs for kowiki and sentences for the STS files):\n\n"
        + format_stats_table(stats) + "\n"
    )
    path = save_result("prepare", "Corpus preparation speed (kosimcse prepare, seed corpus)", markdown, wall,
                       data={"summary": summary, "stats": stats}, order=20)
    print(markdown)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
