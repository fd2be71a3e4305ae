"""Domain adaptation from e5-small (issue #16): document-aware positives and distillation towards the start, measured
by the label-free domain score on held-out documents (MRR@10, R@1, R@10) and by KorSTS test / KLUE-STS dev.

Each corpus is a folder with ``documents.jsonl`` (training documents) and ``heldout.jsonl`` (held-out documents),
as ``kosimcse prepare --heldout`` writes them (``--prepare NAME=SPEC`` runs it for a missing folder). Every run is
one ``kosimcse train``; results accumulate in ``benchmarks/results/domain_adaptation.json`` (one entry per corpus x
setting x seed) and a finished run is not trained again unless ``--rerun``.

    python -m benchmarks.domain --corpus petitions=runs/domain-data/petitions kowiki=runs/domain-data/kowiki \\
        --settings ict_distill dropout --seeds 42 --steps 500
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from benchmarks import common
from benchmarks.harness import E5_PATH, TASKS, evaluators

NAME = "domain_adaptation"
# What each setting changes over the common e5 settings; "dropout" is classic unsupervised SimCSE on the same
# training documents' sentences (and titles).
SETTINGS = {
    "ict_distill": dict(ict_ratio=0.5, distill_weight=1.0),
    "ict": dict(ict_ratio=0.5),
    "dropout": dict(ict_ratio=0.0),
    "distill_dropout": dict(ict_ratio=0.0, distill_weight=1.0),
    "ict_only_distill": dict(ict_ratio=1.0, distill_weight=1.0),
    "crop_distill": dict(ict_ratio=0.5, document_positive="crop", distill_weight=1.0),
    # ICT on every domain anchor, half the examples --general sentences (Wikipedia) as dropout pairs: the ICT share
    # of ict_distill, its dropout half general text instead of the domain's
    "ict_general_distill": dict(ict_ratio=1.0, sentence_share=0.5, distill_weight=1.0),
    "ict_distill_w3": dict(ict_ratio=0.5, distill_weight=3.0),  # the regulariser three times as strong
    # titles a quarter of the anchors (2-5% otherwise): more title -> body pairs, the form the domain score queries
    "ict_distill_w3_titles": dict(ict_ratio=0.5, distill_weight=3.0, title_share=0.25),
}
LABELS = {"ict_distill": "ICT (50%) + dropout + distillation", "ict": "ICT (50%) + dropout",
          "dropout": "dropout only (classic unsup)", "distill_dropout": "dropout + distillation",
          "ict_only_distill": "ICT only + distillation", "crop_distill": "crops (50%) + dropout + distillation",
          "ict_general_distill": "ICT on the domain (50%) + Wikipedia dropout pairs (50%) + distillation",
          "ict_distill_w3": "ICT (50%) + dropout + distillation × 3",
          "ict_distill_w3_titles": "ICT (50%) + dropout + distillation × 3, titles 25% of the anchors"}
E5 = dict(model_name_or_path=E5_PATH, pooler="avg", prefix="query: ", mlp_only_train=False, freeze_embeddings=True,
          temperature=0.05, precision="auto", report_to=[], disable_tqdm=True, eval_on_start=True,
          report_tasks=list(TASKS), selection_tolerance=0.5, logging_steps=25)


def prepare(spec: str, out: Path, fraction: float, seed: int = 0) -> None:
    """``kosimcse prepare`` of one domain source with a held-out share: documents.jsonl and heldout.jsonl."""
    from kosimcse.cli import main

    main(["prepare", "--out", str(out), "--no-seed", "--no-sts", "--domain", spec, "--heldout", str(fraction),
          "--heldout-seed", str(seed), "--quiet"])


def _encoder(path, start=None, start_weight: float = 0.0):
    from kosimcse import KoSimCSE
    from kosimcse.modeling.distill import merge_with_start
    from kosimcse.precision import resolve_precision

    model = KoSimCSE.from_pretrained(str(path), backend="torch", dtype="fp32")
    if start_weight:  # what `start_weight` in a recipe does at export (the encoder only), to a finished run's export
        start_encoder = KoSimCSE.from_pretrained(str(start), backend="torch", dtype="fp32").module.encoder
        merge_with_start(model.module.encoder, start_encoder.state_dict(), start_weight)
    return model.module, model.tokenizer, resolve_precision("auto", "cpu").name


def scores(path, heldout: Path, passage_max_length: int, sts: bool, start=None, start_weight: float = 0.0) -> dict:
    """Domain score on ``heldout`` (and the STS tasks) of the model folder ``path`` (moved ``start_weight`` of the
    way back to ``start``'s weights), through its encode path."""
    from kosimcse.evaluation.domain import domain_scores, model_encoder

    from kosimcse.data.documents import load_documents

    module, tokenizer, precision = _encoder(path, start, start_weight)
    encode, docs = model_encoder(module, tokenizer, batch_size=64, precision=precision), load_documents(heldout)
    out = {"domain": domain_scores(encode, docs, passage_max_length=passage_max_length)}
    # titles make an easy query (an entity name): score the ICT task too
    out["domain_ict"] = (domain_scores(encode, docs, passage_max_length=passage_max_length, queries="ict")
                         if any(d.title for d in docs) else None)
    if sts:
        for task, evaluator in evaluators().items():
            out[task] = evaluator(lambda texts: module.encode(tokenizer, texts, batch_size=128, precision=precision))
    return out


def last_checkpoint_scores(run_dir: Path, run: dict, model: str, heldout: Path, passage_max_length: int) -> dict | None:
    """Scores of a run's last Trainer checkpoint, exported as training built the model: for a run whose start was
    kept, what it trained to outside the KorSTS-dev tolerance (its export is the start, which says nothing)."""
    import tempfile

    from kosimcse.training.args import load_recipe
    from kosimcse.training.checkpoints import checkpoints_newest_first, load_checkpoint_weights
    from kosimcse.training.run import build_model

    ckpts = checkpoints_newest_first(run_dir)
    if not ckpts:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        # the results hold no path of this machine: the model comes from the command line
        margs = load_recipe(None, dict(run["settings"], model_name_or_path=model, output_dir=tmp))[0]
        model, tokenizer, _ = build_model(margs)
        load_checkpoint_weights(model, ckpts[0])
        model.save_pretrained(Path(tmp) / "export", tokenizer=tokenizer)
        out = scores(Path(tmp) / "export", heldout, passage_max_length, sts=True)
    return dict(out, step=int(ckpts[0].name.rsplit("-", 1)[1]))


def _count(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _load() -> dict:
    path = common.RESULTS_DIR / f"{NAME}.json"
    return json.loads(path.read_text(encoding="utf-8"))["data"] if path.is_file() else {"corpora": {}, "runs": {}}


def _save(data: dict, wall: float, command: str) -> None:
    data["commands"] = list(dict.fromkeys([*data.get("commands", []), command]))
    common.save_result(NAME, "Domain adaptation from multilingual-e5-small: label-free domain score and STS", wall,
                       data=data, command=command, order=45)


def settings_for(setting: str, corpus_dir: Path, out: Path, seed: int, steps: int, args) -> dict:
    eval_steps = args.eval_steps or steps
    return dict(E5, **SETTINGS[setting], model_name_or_path=args.model, documents_file=str(corpus_dir / "documents.jsonl"), output_dir=str(out),
                seed=seed, max_steps=steps, eval_steps=eval_steps, save_steps=eval_steps,
                per_device_train_batch_size=args.batch, max_length=args.max_length,
                passage_max_length=args.passage_max_length, learning_rate=args.lr, warmup_steps=args.warmup,
                max_train_sentences=args.batch * steps,
                **({"train_file": args.general} if "sentence_share" in SETTINGS[setting] else {}))


def main(argv=None) -> None:
    from kosimcse.training.args import load_recipe
    from kosimcse.training.run import BEST_DIR, train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs="+", required=True, metavar="NAME=DIR")
    parser.add_argument("--prepare", nargs="*", default=[], metavar="NAME=SPEC",
                        help="make a missing corpus folder from this source spec")
    parser.add_argument("--heldout", type=float, default=0.1, help="--prepare: held-out share of the documents")
    parser.add_argument("--settings", nargs="+", default=["ict_distill", "dropout"], choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--eval-steps", type=int, default=250, help="0: evaluate at the start and the end only")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--passage-max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--general", metavar="FILE", help="general sentences (a kowiki sentences.txt of kosimcse "
                        "prepare) for the settings that mix them in (ict_general_distill)")
    parser.add_argument("--model", default=E5_PATH, help="the start (default: e5-small, see benchmarks/harness.py)")
    parser.add_argument("--runs-dir", default="runs/domain-bench")
    parser.add_argument("--rerun", action="store_true", help="train again even where a result exists")
    parser.add_argument("--results-dir", help="write results here instead of benchmarks/results (trial runs)")
    parser.add_argument("--start-weights", nargs="*", type=float, default=[], metavar="W",
                        help="also score each finished run's export moved W of the way back to the start's weights "
                             "(what `start_weight: W` does at export), without training again")
    args = parser.parse_args(argv)
    if not args.general and any("sentence_share" in SETTINGS[s] for s in args.settings):
        parser.error("--general FILE: the general sentences that these settings mix in")
    if args.results_dir:
        common.RESULTS_DIR = Path(args.results_dir)
    command = common.command_line()
    specs = dict(item.split("=", 1) for item in args.prepare)
    data = _load()
    for item in args.corpus:
        name, folder = item.split("=", 1)
        folder = Path(folder)
        if not (folder / "documents.jsonl").is_file():
            if name not in specs:
                raise SystemExit(f"{folder}/documents.jsonl is missing: run `kosimcse prepare` or pass --prepare")
            prepare(specs[name], folder, args.heldout)
        corpus = data["corpora"].setdefault(name, {})
        corpus.update(documents=_count(folder / "documents.jsonl"), heldout_documents=_count(folder / "heldout.jsonl"),
                      passage_max_length=args.passage_max_length, **({"spec": specs[name]} if name in specs else {}))
        if ("start" not in corpus or corpus["start"].get("passage_max_length") != args.passage_max_length
                or "domain_ict" not in corpus["start"]):
            t = time.time()
            corpus["start"] = dict(scores(args.model, folder / "heldout.jsonl", args.passage_max_length,
                                          sts="start_sts" not in data), passage_max_length=args.passage_max_length)
            data.setdefault("start_sts", {k: v for k, v in corpus["start"].items() if k in TASKS})
            _save(data, time.time() - t, command)
        for setting in args.settings:
            for seed in args.seeds:
                runs = data["runs"].setdefault(name, {}).setdefault(setting, {})
                if str(seed) in runs and not args.rerun:
                    continue
                out = Path(args.runs_dir) / name / f"{setting}-s{seed}"
                shutil.rmtree(out, ignore_errors=True)  # metrics.jsonl appends: an old run would mix in
                values = settings_for(setting, folder, out, seed, args.steps, args)
                start = time.time()
                summary = train(*load_recipe(None, values))
                wall = time.time() - start
                after = scores(out / BEST_DIR, folder / "heldout.jsonl", args.passage_max_length, sts=False)
                runs[str(seed)] = {"domain": after["domain"], "domain_ict": after.get("domain_ict"), "results": summary["results"], "wall_time_s": wall,
                                   "steps": summary["global_step"], "kept_initial_model": summary["kept_initial_model"],
                                   "best_checkpoint": Path(summary["best_checkpoint"]).name
                                   if summary["best_checkpoint"] else None, "start_dev": summary.get("start_dev"),
                                   "settings": {k: v for k, v in values.items()
                                                if k not in ("output_dir", "documents_file", "train_file")}}
                if "train_file" in values:  # which general text, without this machine's path
                    runs[str(seed)]["general"] = {"file": "/".join(Path(args.general).parts[-2:]),
                                                  "sentences": _count(Path(args.general))}
                _save(data, wall, command)
                print(f"{name} {setting} seed {seed}: MRR@10 {corpus['start']['domain']['mrr@10']:.2f} -> "
                      f"{after['domain']['mrr@10']:.2f}, KorSTS test "
                      f"{summary['results']['korsts-test']['cosine_spearman']:.2f} ({wall:.0f} s)", flush=True)
        for setting in args.settings:
            for seed, run in data["runs"].get(name, {}).get(setting, {}).items():
                run_dir = Path(args.runs_dir) / name / f"{setting}-s{seed}"
                best = run_dir / BEST_DIR
                if run["kept_initial_model"]:  # its export is the start: score what it trained to instead
                    if "last_checkpoint" not in run or args.rerun:
                        t = time.time()
                        scored = last_checkpoint_scores(run_dir, run, args.model, folder / "heldout.jsonl",
                                                        args.passage_max_length)
                        if scored:
                            run["last_checkpoint"] = scored
                            _save(data, time.time() - t, command)
                    continue  # a merge of the start with itself is the start
                for weight in args.start_weights:
                    merged = run.setdefault("merged", {})
                    if f"{weight:g}" in merged and not args.rerun:
                        continue
                    if not best.is_dir():
                        raise SystemExit(f"{best} is missing: --start-weights scores a finished run's export")
                    t = time.time()
                    merged[f"{weight:g}"] = scores(best, folder / "heldout.jsonl", args.passage_max_length, sts=True,
                                                   start=args.model, start_weight=weight)
                    _save(data, time.time() - t, command)
                    print(f"{name} {setting} seed {seed} start weight {weight:g}: MRR@10 "
                          f"{merged[f'{weight:g}']['domain']['mrr@10']:.2f}, KorSTS test "
                          f"{merged[f'{weight:g}']['korsts-test']['cosine_spearman']:.2f}", flush=True)


# ---------------------------------------------------------------- rendering (benchmarks/render.py calls this)
UNSUP_FLOOR = 76.55  # KorSTS test the domain recipe must keep (zero-shot e5-small: 76.85)
MRR_GAIN = 3.0  # domain MRR@10 points over zero-shot e5-small the recipe must add


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _cell(values: list[float], start: float | None = None) -> str:
    text = f"{_mean(values):.2f}" + (f" ± {(max(values) - min(values)) / 2:.2f}" if len(values) > 1 else "")
    return text + (f" ({_mean(values) - start:+.2f})" if start is not None else "")


def _variants(by_setting: dict):
    """``(label, seeds, runs)`` per setting, then per start weight its runs' merged exports (as runs of their own)."""
    for setting, by_seed in by_setting.items():
        if not by_seed:
            continue
        label = LABELS.get(setting, setting)
        general = next((r["general"] for r in by_seed.values() if r.get("general")), None)
        if general:  # which general text was mixed in
            label += f" (`{general['file']}`, {general['sentences']:,} sentences)"
        yield label, list(by_seed), list(by_seed.values())
        weights = sorted({w for r in by_seed.values() for w in r.get("merged", {})}, key=float)
        for w in weights:
            seeds = [s for s, r in by_seed.items() if w in r.get("merged", {})]
            runs = [dict(by_seed[s], domain=m["domain"], domain_ict=m.get("domain_ict"),
                         results={t: m[t] for t in TASKS if t in m}) for s in seeds
                    for m in [by_seed[s]["merged"][w]]]
            yield f"{label}; export moved {w} of the way back to the start", seeds, runs
        last = [s for s, r in by_seed.items() if r.get("last_checkpoint")]
        if last:  # not selected, so never counted towards the target
            runs = [dict(by_seed[s], domain=c["domain"], domain_ict=c.get("domain_ict"), kept_initial_model=False,
                         unselected=True, results={t: c[t] for t in TASKS if t in c})
                    for s in last for c in [by_seed[s]["last_checkpoint"]]]
            steps = "/".join(sorted({str(by_seed[s]["last_checkpoint"]["step"]) for s in last}))
            yield f"{label}; its checkpoint-{steps}, outside the KorSTS-dev tolerance (not selected)", last, runs


def render_section(d: dict) -> list[str]:
    start_sts = d.get("start_sts", {})
    sts = lambda res, task: res[task]["cosine_spearman"]  # noqa: E731
    parts = ["Start: multilingual-e5-small (`e5-small-airgap`, mean pooling, prefix `query: `, frozen token "
             "embeddings, precision auto). Domain score: on the held-out documents only, one pseudo-query per "
             "document (its title where it has one, else a random sentence) against its own passage (the rest of the "
             "document) among all held-out passages, cosine; x100. Where documents have titles, \"ICT MRR@10\" scores "
             "the same pool with a random sentence as the query instead of the title. Selection: the most-trained checkpoint within 0.5 "
             "KorSTS-dev points of the start, else the start itself (\"start kept\"). Cells: mean ± half the range "
             "over seeds (change against the start). Every run is kept, failures included.", ""]
    if start_sts:
        parts.append("The start on STS: " + ", ".join(f"{t} {sts(start_sts, t):.2f}" for t in TASKS if t in start_sts)
                     + ".\n")
    parts += ["| corpus | positives and regulariser | seeds | steps × batch | domain MRR@10 | R@1 | R@10 | "
              "ICT MRR@10 | KorSTS test | KLUE-STS dev | KorSTS dev | start kept | wall s / run |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts: dict[str, list[str]] = {}
    for corpus, by_setting in d["runs"].items():
        info = d["corpora"][corpus]
        start = info["start"]["domain"]
        parts.append(f"| {corpus} | zero-shot start | | | {start['mrr@10']:.2f} | {start['r@1']:.2f} | "
                     f"{start['r@10']:.2f} | {_ict([info['start']])} | {_num(start_sts, 'korsts-test')} | {_num(start_sts, 'klue-sts-dev')} | "
                     f"{_num(start_sts, 'korsts-dev')} | | |")
        for label, seeds, runs in _variants(by_setting):
            col = lambda key: [r["domain"][key] for r in runs]  # noqa: E731
            task = lambda t: [sts(r["results"], t) for r in runs]  # noqa: E731
            first = runs[0]["settings"]
            parts.append(
                f"| {corpus} | {label} | {', '.join(seeds)} | {first['max_steps']} × "
                f"{first['per_device_train_batch_size']} | {_cell(col('mrr@10'), start['mrr@10'])} | "
                f"{_cell(col('r@1'), start['r@1'])} | {_cell(col('r@10'), start['r@10'])} | "
                f"{_ict(runs, info['start'])} | "
                f"{_cell(task('korsts-test'), _get(start_sts, 'korsts-test'))} | "
                f"{_cell(task('klue-sts-dev'), _get(start_sts, 'klue-sts-dev'))} | "
                f"{_cell(task('korsts-dev'), _get(start_sts, 'korsts-dev'))} | "
                f"{sum(bool(r['kept_initial_model']) for r in runs)}/{len(runs)} | "
                f"{_mean([r['wall_time_s'] for r in runs]):.0f} |")
            gain = _mean(col("mrr@10")) - start["mrr@10"]
            test = _mean(task("korsts-test"))
            if gain >= MRR_GAIN and round(test, 2) >= UNSUP_FLOOR and not runs[0].get("unselected"):
                verdicts[corpus] = verdicts.get(corpus, []) + [
                    f"{label} (MRR@10 {gain:+.2f}, KorSTS test {test:.2f})"]
    met = "met" if len(verdicts) >= 2 else "not met"
    parts += ["", f"Acceptance (MRR@10 ≥ +{MRR_GAIN:g} over the start with KorSTS test ≥ {UNSUP_FLOOR}, on two "
              f"corpora): {met}" + ("; settings that meet it: " + "; ".join(
                  f"{c}: {', '.join(v)}" for c, v in verdicts.items()) + "." if verdicts else "; no setting meets it."),
              ""]
    parts.append("Held-out pools: " + "; ".join(
        f"{c}: {i['heldout_documents']} held-out documents ({i['start']['domain']['queries']} queries), "
        f"{i['documents']} training documents, passages cut at {i['passage_max_length']} tokens"
        for c, i in d["corpora"].items()) + ".")
    parts += ["", *(f"- {note}" for note in d.get("notes", []))] if d.get("notes") else []
    if d.get("commands"):
        parts += ["", "Commands that produced these runs:", *(f"- `{c}`" for c in d["commands"])]
    return parts


def _ict(runs: list[dict], start: dict | None = None) -> str:
    values = [r["domain_ict"]["mrr@10"] for r in runs if r.get("domain_ict")]
    if not values:
        return ""
    return _cell(values, start["domain_ict"]["mrr@10"] if start and start.get("domain_ict") else None)


def target_values(d: dict) -> list[tuple]:
    """``(what, measured, target, note, start kept)`` per corpus and setting, for the page's targets table."""
    rows = []
    for corpus, by_setting in d["runs"].items():
        start = d["corpora"][corpus]["start"]["domain"]["mrr@10"]
        for label, seeds, runs in _variants(by_setting):
            if runs[0].get("unselected"):
                continue
            what, kept = f"({corpus}, {label})", all(r["kept_initial_model"] for r in runs)
            note = f"seeds {', '.join(seeds)}; {runs[0]['steps']} steps; {NAME}"
            rows.append((f"domain MRR@10 gain over e5-small {what}",
                         _mean([r["domain"]["mrr@10"] for r in runs]) - start, MRR_GAIN, note, kept))
            rows.append((f"domain recipe, KorSTS test {what}",
                         _mean([r["results"]["korsts-test"]["cosine_spearman"] for r in runs]), UNSUP_FLOOR, note, kept))
    return rows


def _get(results: dict, task: str) -> float | None:
    return results[task]["cosine_spearman"] if task in results else None


def _num(results: dict, task: str) -> str:
    value = _get(results, task)
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
