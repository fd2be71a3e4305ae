"""``kosimcse train RECIPE.yaml [--key value ...]``: run a SimCSE recipe through the Hugging Face Trainer."""

from __future__ import annotations

import json

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@click.option("--resume", is_flag=True, help="Resume from the last checkpoint in output_dir (model, optimizer, "
              "scheduler, RNG and data position).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_context
def command(ctx, recipe, resume, as_json):
    """Train SimCSE from a YAML/JSON RECIPE; any option may be overridden as --key value.

    \b
    Options are the fields of ModelArguments, DataArguments and SimCSETrainingArguments (kosimcse/training/args.py),
    which include every transformers TrainingArguments field. A value is read by its field's type: text as typed
    (--prefix "query: "), true/false (a bare --bf16 is true), numbers, lists (--report_tasks korsts-dev
    klue-sts-dev), none for an optional field. --STAGE.key value sets one stage of a staged recipe.
    Hub model code is never run unless --trust_remote_code is given.

    \b
    Examples:
      kosimcse train recipes/unsup-seed.yaml --max_steps 200 --output_dir runs/try
      kosimcse train recipes/sup-nli.yaml --model_name_or_path e5-small-airgap --bf16
      kosimcse train recipes/domain.yaml --resume
      kosimcse train recipes/multitask.yaml          # stages: sup NLI, then CoSENT on STS train
      torchrun --nproc_per_node 4 -m kosimcse train recipes/unsup-seed.yaml   # DDP: negatives from all devices
    """
    from kosimcse.training.args import load_recipe, parse_overrides, read_recipe
    from kosimcse.training.run import train, train_stages

    extra = list(ctx.args)
    if recipe is not None and recipe.startswith("--"):  # no recipe given: click took the first override for it
        extra, recipe = [recipe, *extra], None
    overrides = parse_overrides(extra)
    if recipe is not None and "stages" in read_recipe(recipe):
        # Each stage is one run from the previous export; train_stages checks every stage before the first trains.
        summaries = train_stages(recipe, overrides, resume=resume)
    else:
        margs, dargs, targs = load_recipe(recipe, overrides)
        if margs.trust_remote_code:
            click.echo("warning: --trust_remote_code is on: model code from the Hub will run on this machine.",
                       err=True)
        summaries = [train(margs, dargs, targs, resume_from_checkpoint=True if resume else None)]
    for summary in summaries:
        if summary.get("results"):  # else not the main process
            click.echo(json.dumps(summary, ensure_ascii=False, indent=2, default=str) if as_json
                       else _summary_text(summary))


def _summary_text(summary: dict) -> str:
    from kosimcse.evaluation.domain import SCORE_KEYS
    from kosimcse.evaluation.sts import markdown_table

    chosen = summary["best_checkpoint"] or "the starting model (no checkpoint did better)"
    task = summary.get("eval_task", "korsts-dev")
    dev = summary["results"].get(task, {}).get("cosine_spearman", float("nan"))
    start = summary.get("start_dev")
    lines = [f"\nselected ({summary.get('selection', 'best dev score')}): {chosen}; {task} cosine Spearman "
             + (f"{start:.2f} at the start, " if start is not None else "") + f"{dev:.2f} selected",
             f"exported: {summary['exported']}  ({summary['global_step']} steps, {summary['wall_time_s']:.0f} s, "
             f"{summary['sentences_per_s']:.1f} sentences/s)\n"]
    lines += [f"### {task}\n\n{markdown_table({summary['exported']: metrics})}\n"
              for task, metrics in summary["results"].items()]
    if domain := summary.get("domain"):
        lines += [f"### domain score: {domain['file']} (held-out retrieval, x100)\n", "| | MRR@10 | R@1 | R@10 |",
                  "|---|---|---|---|"]
        lines += [f"| {name} | " + " | ".join(f"{scores[k]:.2f}" for k in SCORE_KEYS) + " |"
                  for name in ("before", "after") if (scores := domain.get(name))]
        if domain.get("selected_on"):
            lines.append("\nThe checkpoint was chosen by this score on these documents, so 'after' is optimistic; "
                         "selection by the dev tolerance alone (selection_metric: dev) does not use it.")
    return "\n".join(lines)

