"""The rendered "targets at a glance" table judges each target from the result files, not from typed numbers."""

from __future__ import annotations

import json

from benchmarks.render import render, targets_summary


def _write(folder, name, data, title="t"):
    payload = {"name": name, "title": title, "order": 50, "command": f"python -m benchmarks.{name}", "date": "d",
               "machine": {"nproc": 2, "cpu": "cpu", "torch": "x"}, "wall_time_s": 1.0, "markdown": "body",
               "data": data}
    (folder / f"{name}.json").write_text(json.dumps(payload), encoding="utf-8")


def _stats(median, lo):
    return {"ratios": [lo, median], "min": lo, "median": median, "max": median}


def test_targets_table_reports_met_and_missed_from_the_results(tmp_path):
    _write(tmp_path, "speed", {"settings": {"smoke": False},
                               "training": {"m": {"kosimcse": _stats(1.2, 1.1), "kosimcse (frozen embeddings)": _stats(1.8, 1.6)},
                                            "matmul_peak_tflops": [0.5]},
                               "encoding": {"batch 128 vs SentenceTransformer fp32": _stats(2.3, 2.1),
                                            "batch 1 vs SentenceTransformer fp32": _stats(0.9, 0.8),
                                            "cosine_vs_fp32": {"min": 0.99995}}})
    test = lambda x: {"results": {"korsts-test": {"cosine_spearman": x}}}  # noqa: E731
    _write(tmp_path, "objectives", {"runs": {"multitask_cosent": {"42": test(83.0), "43": test(84.0)},
                                             "unsup_infonce": {"42": test(70.0)}}, "steps": 100})
    _write(tmp_path, "objectives_long", {"runs": {"sts_cosent": {"42": test(85.7), "43": test(85.6)}},
                                         "sts_steps": 1200, "sts_lr": 5e-5})
    # A mini-start comparison ranks objectives on a weak encoder; the e5-proxy targets must not judge it.
    _write(tmp_path, "objectives_mini", {"runs": {"sts_cosent": {"42": test(60.0)}, "unsup_infonce": {"42": test(50.0)}},
                                         "start": "mini", "steps": 100, "sts_steps": 400, "sts_lr": 1e-4})
    _write(tmp_path, "train_domain_nsmc", {"results": {"korsts-test": {"cosine_spearman": 76.849}},
                                           "summary": {"kept_initial_model": True}})
    table = targets_summary(tmp_path)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "missed by 0.30" in lines["training speed ≥ 1.5× sentence-transformers (m, kosimcse)"]
    assert lines["training speed ≥ 1.5× sentence-transformers (m, kosimcse (frozen embeddings))"].endswith("| met |")
    assert lines["encoding ≥ 2× SentenceTransformer.encode fp32 (batch 128)"].endswith("| met |")
    assert "missed by 1.10" in lines["encoding ≥ 2× SentenceTransformer.encode fp32 (batch 1)"]
    assert "| 83.50 | missed by 2.10" in lines["multitask recipe ≥ 85.6 KorSTS test (multitask_cosent, 2 seeds)"]
    assert lines["supervised STS-only recipe ≥ 85.6 KorSTS test (sts_cosent, 2 seeds, 1200 STS steps, lr 5e-05)"] \
        .endswith("| 85.65 | met |")
    # Unsupervised objectives are judged against the zero-shot start, not the supervised target.
    assert not any("unsup_infonce" in key and "85.6" in key for key in lines)
    assert "| 70.00 | missed by 6.85" in lines["unsupervised objective ≥ 76.85 KorSTS test (unsup_infonce, 1 seed, 100 steps)"]
    # 76.849 prints as 76.85: equal to the target at the precision shown.
    assert "76.85 (start kept) | met" in lines["unsupervised/domain ≥ 76.85 KorSTS test (domain_nsmc)"]
    assert not any("60.00" in line or "50.00" in line for line in lines.values())
    doc = render(tmp_path, tmp_path / "BENCHMARKS.md")
    assert doc.index("Targets at a glance") < doc.index("## t")
    # The objectives figure is drawn from the same results and linked from the page.
    assert "![KorSTS test per objective](objectives.png)" in doc
    assert (tmp_path / "objectives.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_results_no_targets_section(tmp_path):
    assert targets_summary(tmp_path) == ""
    assert "objectives.png" not in render(tmp_path, tmp_path / "BENCHMARKS.md")
    assert not (tmp_path / "objectives.png").exists()
    _write(tmp_path, "speed", {"settings": {"smoke": True}, "training": {}, "encoding": {}})
    assert targets_summary(tmp_path) == ""
