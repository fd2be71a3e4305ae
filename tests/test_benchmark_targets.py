"""The rendered "targets at a glance" table judges each target from the result files, not from typed numbers, and
every section is computed from data-only results."""

from __future__ import annotations

import json

from benchmarks.render import render, targets_summary


def _write(folder, name, data, title="t"):
    payload = {"name": name, "title": title, "order": 50, "command": f"python -m benchmarks.{name}", "date": "d",
               "machine": {"nproc": 2, "cpu": "cpu", "torch": "x"}, "wall_time_s": 1.0, "data": data}
    (folder / f"{name}.json").write_text(json.dumps(payload), encoding="utf-8")


def _stats(median, lo):
    return {"ratios": [lo, median], "min": lo, "median": median, "max": median}


def _test(x, kept=False):
    metrics = {"cosine_spearman": x}
    return {"results": {"korsts-test": metrics, "korsts-dev": metrics, "klue-sts-dev": metrics}, "wall_time_s": 10.0,
            "kept_initial_model": kept}


def test_targets_table_gives_number_target_gap_and_status_from_the_results(tmp_path):
    _write(tmp_path, "speed", {"settings": {"smoke": False},
                               "training": {"m": {"kosimcse": _stats(1.2, 1.1), "kosimcse (frozen embeddings)": _stats(1.8, 1.6)},
                                            "matmul_peak_tflops": [0.5]},
                               "encoding": {"ours": "kosimcse fp32",
                                            "batch 128 vs SentenceTransformer fp32": _stats(2.3, 2.1),
                                            "batch 1 vs SentenceTransformer fp32": _stats(0.9, 0.8),
                                            "cosine_vs_fp32": {"min": 0.99995, "n": 8}}})
    _write(tmp_path, "objectives", {"runs": {"multitask_cosent": {"42": _test(83.0), "43": _test(84.0)},
                                             "unsup_infonce": {"42": _test(76.85, kept=True)}},
                                    "steps": 100, "sts_steps": 400, "batch": 32, "seeds": [42, 43]})
    _write(tmp_path, "objectives_long", {"runs": {"sts_cosent": {"42": _test(85.7), "43": _test(85.6)}}, "steps": 100,
                                         "sts_steps": 1200, "sts_lr": 5e-5, "batch": 32, "seeds": [42, 43]})
    # A mini-start comparison ranks objectives on a weak encoder; the e5-proxy targets must not judge it.
    _write(tmp_path, "objectives_mini", {"runs": {"sts_cosent": {"42": _test(60.0)}, "unsup_infonce": {"42": _test(50.0)}},
                                         "start": "mini", "steps": 100, "sts_steps": 400, "sts_lr": 1e-4, "batch": 32,
                                         "seeds": [42]})
    _write(tmp_path, "train_domain_nsmc", {"results": {"korsts-test": {"cosine_spearman": 76.849}},
                                           "summary": {"kept_initial_model": True}})
    _write(tmp_path, "train_unsup_seed", {"results": {"korsts-test": {"cosine_spearman": 76.1}},
                                          "summary": {"kept_initial_model": False}})
    table = targets_summary(tmp_path)
    # | target | measured | target | gap | status | note |
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| "))}
    assert rows["training speed vs sentence-transformers (m, kosimcse)"][:4] == ["1.20×", "1.5×", "-0.30×", "below"]
    assert rows["training speed vs sentence-transformers (m, kosimcse (frozen embeddings))"][3] == "met"
    assert rows["encoding speed vs SentenceTransformer.encode fp32 (batch 128, kosimcse fp32)"][3] == "met"
    assert rows["encoding speed vs SentenceTransformer.encode fp32 (batch 1, kosimcse fp32)"][:4] == \
        ["0.90×", "2×", "-1.10×", "below"]
    assert rows["multitask recipe, KorSTS test (multitask_cosent, 400 STS steps)"][:4] == ["83.50", "85.6", "-2.10", "below"]
    assert rows["supervised STS-only recipe, KorSTS test (sts_cosent, 1200 STS steps, lr 5e-05)"][:4] == \
        ["85.65", "85.6", "+0.05", "met"]
    # Unsupervised objectives are judged against the zero-shot start; equal to it only because the start was kept
    # is "start kept", not "met".
    assert rows["unsupervised objective, KorSTS test (unsup_infonce, 100 steps)"][:4] == ["76.85", "76.85", "+0.00",
                                                                                       "start kept"]
    assert not any("unsup_infonce" in key and "85.6" in cells for key, cells in rows.items())
    # 76.849 prints as 76.85: equal to the target at the precision shown, but the start was kept.
    assert rows["unsupervised/domain row, KorSTS test (domain_nsmc)"][3] == "start kept"
    assert rows["unsupervised/domain row, KorSTS test (unsup_seed)"][:4] == ["76.10", "76.85", "-0.75", "below"]
    assert not any("60.00" in " ".join(cells) or "50.00" in " ".join(cells) for cells in rows.values())
    for what in WHY_WORDS:
        assert what not in table  # numbers, not explanations
    (tmp_path / "speed.json").unlink()  # a partial speed result cannot be rendered as a section
    for name in ("train_domain_nsmc", "train_unsup_seed"):
        (tmp_path / f"{name}.json").unlink()
    doc = render(tmp_path, tmp_path / "BENCHMARKS.md")
    assert doc.index("Targets at a glance") < doc.index("## t")
    assert "| multitask: sup SimCSE → CoSENT | 100 × 32 triplets → 400 × 32 pairs | 83.50 ± 0.50 |" in doc
    # The objectives figure is drawn from the same results and linked from the page.
    assert "![KorSTS test per objective](objectives.png)" in doc
    assert (tmp_path / "objectives.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


WHY_WORDS = ("AdamW", "latency-bound", "trivial for e5")


def test_no_results_no_targets_section(tmp_path):
    assert targets_summary(tmp_path) == ""
    assert "objectives.png" not in render(tmp_path, tmp_path / "BENCHMARKS.md")
    assert not (tmp_path / "objectives.png").exists()
    _write(tmp_path, "speed", {"settings": {"smoke": True}, "training": {}, "encoding": {}})
    assert targets_summary(tmp_path) == ""


def test_every_committed_result_is_data_only_and_renders(tmp_path):
    from benchmarks.common import RESULTS_DIR
    from benchmarks.render import section

    results = sorted(RESULTS_DIR.glob("*.json"))
    assert results
    for path in results:
        result = json.loads(path.read_text(encoding="utf-8"))
        assert set(result) == {"name", "title", "order", "command", "date", "machine", "wall_time_s", "data"}, path.name
        body = section(result)
        assert body.startswith(f"## {result['title']}") and result["command"] in body
