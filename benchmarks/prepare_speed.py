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
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        stats = prepare_corpus(sources, out, data_dir=root, workers=args.workers, progress=False)
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()[0]
        out_bytes = os.path.getsize(os.path.join(out, "sentences.txt"))
    # ru_maxrss is in KiB on Linux
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_rss_mb = usage.ru_maxrss / 1024
    # CPU seconds (all threads) say what the job costs; wall time on a shared box also says how busy it was.
    cpu_s = usage.ru_utime + usage.ru_stime
    totals = stats["totals"]
    kowiki = stats["sources"].get("kowiki", {})
    summary = {
        "wall_time_s": round(wall, 1),
        "sentences_in": totals["sentences"],
        "sentences_kept": totals["kept"],
        "sentences_per_s": round(totals["sentences"] / wall, 1),
        "kowiki_paragraphs_per_s": round(kowiki.get("paragraphs_split", 0) / wall, 1),
        "cpu_time_s": round(cpu_s, 1),
        "sentences_per_cpu_s": round(totals["sentences"] / cpu_s, 1),
        "load_avg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "peak_rss_mb": round(peak_rss_mb, 1),
        "output_mb": round(out_bytes / 2**20, 1),
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
    }
    path = save_result("prepare", "Corpus preparation speed (kosimcse prepare, seed corpus)", wall,
                       data={"summary": summary, "stats": stats}, order=20)
    print(format_stats_table(stats))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
