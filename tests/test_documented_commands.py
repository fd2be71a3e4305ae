"""Every command the README (both languages) and the recipe comments show runs as written.

The commands are extracted from README.md's ```bash blocks (and its copy-paste ``.venv/bin/...`` inline spans)
and from the comment lines of recipes/*.yaml, split by ``shlex`` as a shell would, and then
- run through the real CLI (``kosimcse.cli.main``) in a temporary clone, in document order, so later commands use
  what earlier ones wrote (prepare -> train -> report). Only the environment is small: tiny random models behind
  the model ids (``e5-small-airgap`` via ``KOSIMCSE_CACHE_DIR``, Hub ids at the Hub boundary), a tiny data folder
  laid out like shared/data (``../shared/data`` and ``KOSIMCSE_DATA_DIR``), and step budgets APPENDED after the
  documented flags of train commands (later overrides win; the typed flags stay as they are);
- or, where they cannot run here (multi-GPU launchers, ``make`` targets that install or run the test suite),
  checked for parsing only, with the reason in the test id.
Every train command is also parsed in the default suite through the real CLI, override parser, recipe loader and
``validate_settings``. A command no handler accounts for fails ``test_every_command_is_accounted_for``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import make_tiny_model_dir

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
RESOURCES = ROOT / "src" / "kosimcse" / "resources" / "sts"

# Where a command starts inside prose (recipe comments): the verbs and launchers the project documents.
COMMAND_START = re.compile(r"(?<![\w./-])(?:(?:\.venv/bin/)?kosimcse [a-z]|python3? -m \w|torchrun |"
                           r"accelerate launch |make [a-z]|pip install )")
# Launchers that need several devices: their own flags go through their real parsers, the inner command is parsed.
LAUNCHERS = ("torchrun", "accelerate")
# Example values for the variables a multi-node command expects the user to set.
EXAMPLE_ENV = {"NODE_RANK": "0", "MASTER_ADDR": "10.0.0.1"}
# The budget appended after a train command's own flags; later overrides win.
TRAIN_BUDGET = ["--max_steps", "2", "--eval_steps", "1", "--save_steps", "1", "--logging_steps", "1"]
QUICKSTART_BUDGET = ["--max-steps", "2", "--eval-steps", "1"]


@dataclass(frozen=True)
class DocCommand:
    where: str   # file:line of the command's first line
    session: str  # commands of one session run in order in one working folder
    text: str    # as a shell sees it, continuations joined
    argv: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.where} {shlex.join(self.argv)[:70]}"


# ---------------------------------------------------------------- extraction


def _join_continuations(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """A trailing backslash joins the next line, as the shell does (backslash-newline is removed)."""
    out, pending = [], None
    for no, line in lines:
        start, text = (pending[0], pending[1] + line) if pending else (no, line)
        if text.rstrip("\n").endswith("\\") and not text.endswith("\\\\"):
            pending = (start, text[:-1])
            continue
        pending = None
        out.append((start, text))
    if pending:
        out.append(pending)
    return out


def _command(where: str, session: str, text: str) -> DocCommand | None:
    argv = shlex.split(text, comments=True)  # quoting and trailing `# comments` exactly as a shell reads them
    return DocCommand(where, session, text.strip(), tuple(argv)) if argv else None


def readme_commands(text: str, name: str = "README.md") -> list[DocCommand]:
    """Commands of every ```bash block and every inline ``.venv/bin/...`` span; one session per ``## `` section."""
    commands: list[DocCommand] = []
    session, fence, block = f"{name}:1", None, []
    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if fence is None:
                fence, block = stripped[3:].strip() or "text", []
            else:
                if fence in ("bash", "sh", "shell", "console"):
                    for start, joined in _join_continuations(block):
                        cmd = _command(f"{name}:{start}", session, joined)
                        if cmd:
                            commands.append(cmd)
                fence = None
            continue
        if fence is not None:
            block.append((no, line))
            continue
        if line.startswith("## "):
            session = f"{name}:{no}"
        for span in re.findall(r"`([^`]+)`", line):
            if span.startswith(".venv/bin/"):
                cmd = _command(f"{name}:{no}", session, span)
                if cmd:
                    commands.append(cmd)
    return commands


def recipe_commands(path: Path) -> list[DocCommand]:
    """Commands in a recipe's comment lines: backquoted ones, else the rest of the line from where one starts."""
    name = f"recipes/{path.name}"
    comments = [(no, line.strip()[1:]) for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if line.strip().startswith("#")]
    commands = []
    for no, text in _join_continuations(comments):
        spans = re.findall(r"`([^`]+)`", text)
        if spans:
            candidates = [s for s in spans if COMMAND_START.match(s)]
        else:
            match = COMMAND_START.search(text)
            candidates = [text[match.start():]] if match else []
        for candidate in candidates:
            cmd = _command(f"{name}:{no}", name, candidate)
            if cmd:
                commands.append(cmd)
    return commands


def all_commands(readme_text: str | None = None) -> list[DocCommand]:
    text = README.read_text(encoding="utf-8") if readme_text is None else readme_text
    return readme_commands(text) + [c for path in RECIPES for c in recipe_commands(path)]


# ---------------------------------------------------------------- classification


class Unaccounted(Exception):
    """A documented command that no handler below knows how to run or check."""


@dataclass
class Plan:
    kind: str            # "run", "parse", "make", "launcher", "mention"
    reason: str
    cli: list[str] = field(default_factory=list)  # argv for kosimcse.cli.main


def _cli_argv(argv: list[str]) -> list[str] | None:
    """The ``kosimcse`` arguments of a command that invokes the CLI directly, else None."""
    if argv[0] in ("kosimcse", ".venv/bin/kosimcse"):
        return argv[1:]
    if len(argv) >= 3 and re.fullmatch(r"(\.venv/bin/)?python3?", argv[0]) and argv[1] == "-m":
        if argv[2] == "kosimcse":
            return argv[3:]
    return None


def _expand(argv: tuple[str, ...]) -> list[str]:
    """``$VAR`` as the shell expands it, with example values for the variables a multi-node command names."""
    def sub(token: str) -> str:
        for var in re.findall(r"\$\{?(\w+)\}?", token):
            if var not in EXAMPLE_ENV:
                raise Unaccounted(f"uses ${var}, which has no example value here")
        return re.sub(r"\$\{?(\w+)\}?", lambda m: EXAMPLE_ENV[m.group(1)], token)
    return [sub(t) for t in argv]


def plan(cmd: DocCommand) -> Plan:
    argv = _expand(cmd.argv)
    if any(t in ("|", "||", "&&", ";", ">", ">>", "<", "&") for t in argv):
        raise Unaccounted("shell operators (pipes, redirections, chains) have no handler")
    cli = _cli_argv(argv)
    if cli is not None:
        from kosimcse.cli import COMMANDS

        if len(cli) == 1 and cli[0] in COMMANDS and cmd.session.startswith("recipes/") and cli[0] != "quickstart":
            # A verb named in a recipe's prose (`kosimcse train` run), not a command line: its --help must load.
            return Plan("mention", "verb named in prose: --help", [cli[0], "--help"])
        return Plan("run", "run", cli)
    if argv[0] == "make" and len(argv) == 2:
        if argv[1] == "quickstart":
            return Plan("make", "make quickstart: install step skipped, its kosimcse line runs")
        return Plan("make", f"make {argv[1]}: installs .venv and runs the suite; Makefile target checked")
    if argv[0] == "torchrun" or argv[:2] == ["accelerate", "launch"]:
        return Plan("launcher", f"{argv[0]}: needs several GPUs; launcher and train options parsed")
    if argv[:2] == ["pip", "install"]:
        return Plan("parse", "pip install: needs the package index")
    raise Unaccounted(f"no handler for {cmd.text!r}")


def test_every_command_is_accounted_for():
    commands = all_commands()
    sections = {c.session for c in commands}
    # Both README languages and the recipe comments are really read (an extraction bug would make this test empty).
    korean = [c for c in commands if c.session.startswith("README.md") and "빠른 시작" in _heading(c.session)]
    assert korean and any(c.argv[1:2] == ("train",) for c in korean), "no command extracted from the Korean section"
    assert any(s.startswith("recipes/multitask.yaml") for s in sections)
    assert sum(c.where.startswith("README.md") for c in commands) >= 10
    problems = []
    for c in commands:
        try:
            plan(c)
        except Unaccounted as e:
            problems.append(f"{c.where}: {e}")
    assert not problems, "documented commands without a test handler:\n" + "\n".join(problems)


def _heading(session: str) -> str:
    name, line = session.rsplit(":", 1)
    return README.read_text(encoding="utf-8").splitlines()[int(line) - 1] if name == "README.md" else ""


def test_unknown_command_is_unaccounted():
    (cmd,) = readme_commands("## x\n```bash\ncurl -O https://example.com/model.bin\n```\n")
    with pytest.raises(Unaccounted):
        plan(cmd)


def test_extraction_reads_quoting_continuations_and_comments():
    text = ('## x\n```bash\n.venv/bin/kosimcse train r.yaml --a 1 \\\n    --prefix "query: " --b \'x y\'   # note\n'
            "# a comment line\n```\n")
    (cmd,) = readme_commands(text)
    assert cmd.argv == (".venv/bin/kosimcse", "train", "r.yaml", "--a", "1", "--prefix", "query: ", "--b", "x y")


# ---------------------------------------------------------------- the environment: a tiny clone


def _korsts_rows(name: str) -> list[list[str]]:
    with open(RESOURCES / name, encoding="utf-8", newline="") as fh:
        return [r for r in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]


def write_tiny_data(root: Path) -> Path:
    """A data folder laid out like shared/data, holding only what the documented commands read.

    Evaluation sets are the first rows of the embedded KorSTS/KLUE-STS dev/test (a few dozen pairs); training text
    comes from later rows, so the leakage guard keeps it. The training sources hold a few hundred sentences: the
    recipes' batches (up to the README's 512) drop incomplete batches, so a smaller corpus would train 0 steps.
    """
    dev, test = _korsts_rows("sts-dev.tsv"), _korsts_rows("sts-test.tsv")
    header = dev[0]
    klue = json.loads((RESOURCES / "klue-sts-v1.1_dev.json").read_text(encoding="utf-8"))
    (root / "korsts").mkdir(parents=True)
    for name, rows in (("sts-dev.tsv", dev[1:31]), ("sts-test.tsv", test[1:31]), ("sts-train.tsv", dev[200:500])):
        (root / "korsts" / name).write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    (root / "klue-sts").mkdir()
    (root / "klue-sts" / "klue-sts-v1.1_dev.json").write_text(json.dumps(klue[:20], ensure_ascii=False),
                                                             encoding="utf-8")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["sentence1", "sentence2", "label"])
    for item in klue[100:400]:
        writer.writerow([item["sentence1"], item["sentence2"], item["labels"]["real-label"]])
    (root / "klue-sts" / "klue_sts_train.csv").write_text(buf.getvalue(), encoding="utf-8")
    # KLUE-NLI train as the DACON CSV (CP949): each premise with an entailment, a contradiction and a neutral row.
    premises, others = [r[5] for r in test[300:450]], [r[6] for r in test[300:450]]
    nli = io.StringIO()
    writer = csv.writer(nli)
    writer.writerow(["index", "premise", "hypothesis", "label"])
    for i, premise in enumerate(premises):
        for j, label in enumerate(("entailment", "contradiction", "neutral")):
            writer.writerow([3 * i + j, premise, others[(i + 7 * j) % len(others)], label])
    nli_dir = root / "nli" / "klue-nli-train-dacon"
    nli_dir.mkdir(parents=True)
    (nli_dir / "benchmark_train_data.csv").write_bytes(nli.getvalue().encode("cp949", errors="replace"))
    wiki = root / "corpus" / "kowiki" / "AA"
    wiki.mkdir(parents=True)
    docs = []
    for d in range(60):
        paragraph = " ".join(r[5] for r in test[500 + 10 * d:510 + 10 * d])
        docs += [f'<doc id="{d}" url="u" title="문서{d}">', f"문서{d}", "", paragraph, "</doc>"]
    (wiki / "wiki_00").write_text("\n".join(docs) + "\n", encoding="utf-8")
    nsmc = root / "domain" / "nsmc" / "raw"
    nsmc.mkdir(parents=True)
    (nsmc / "10001.json").write_text(json.dumps([{"review": r[6], "rating": "10"} for r in test[600:640]],
                                                ensure_ascii=False), encoding="utf-8")
    return root


def domain_lines(n: int = 40) -> str:
    return "\n".join(r[6] for r in _korsts_rows("sts-test.tsv")[700:700 + n]) + "\n"


# Files the documentation invents (the user's own): created before the commands run.
INVENTED_TEXT = ("my_corpus.txt", "내_말뭉치.txt", "my.txt", "corpus.txt", "PATH")
INVENTED_MODEL = ("모델_폴더", "MODEL")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    hub = make_tiny_model_dir(root / "hub-roberta-small", model_type="roberta")
    cache = root / "cache"
    e5 = make_tiny_model_dir(cache / "e5-small-airgap", seed=1)
    # What a finished `kosimcse import-e5` leaves (kosimcse.loading.airgap.is_complete), with e5's own settings.
    (e5 / "kosimcse_config.json").write_text(json.dumps(
        {"pooling": "avg", "prefix": "query: ", "max_length": 128, "source": "tiny random test model"}), encoding="utf-8")
    (e5 / "README.md").write_text("tiny random stand-in for multilingual-e5-small\n", encoding="utf-8")
    if not (e5 / "special_tokens_map.json").exists():
        (e5 / "special_tokens_map.json").write_text("{}", encoding="utf-8")
    return {"hub": hub, "cache": cache, "plain": make_tiny_model_dir(root / "plain", seed=2)}


@pytest.fixture()
def clone(tmp_path, monkeypatch, tiny_models):
    """A working folder like a fresh clone (recipes/, Makefile) beside a tiny ``../shared/data``."""
    import torch

    from kosimcse.loading import resolve
    from kosimcse.loading.airgap import is_complete

    work = tmp_path / "clone"
    work.mkdir()
    shutil.copytree(ROOT / "recipes", work / "recipes")
    shutil.copy(ROOT / "Makefile", work / "Makefile")
    data = write_tiny_data(tmp_path / "shared" / "data")
    for name in INVENTED_TEXT:
        (work / name).write_text(domain_lines(), encoding="utf-8")
    for name in INVENTED_MODEL:
        shutil.copytree(tiny_models["plain"], work / name)
    cache = tmp_path / "cache"
    shutil.copytree(tiny_models["cache"], cache)
    assert is_complete(cache / "e5-small-airgap")
    monkeypatch.chdir(work)
    monkeypatch.setenv("KOSIMCSE_DATA_DIR", str(data))
    monkeypatch.setenv("KOSIMCSE_CACHE_DIR", str(cache))
    hub_models = {"klue/roberta-small": tiny_models["hub"]}

    def from_hub(repo_id, allow_pickle):  # the Hub boundary: documented Hub ids are tiny local models here
        if repo_id not in hub_models:
            raise resolve.ModelLoadError(f"{repo_id!r} is not one of the test's Hub stand-ins")
        return hub_models[repo_id]

    monkeypatch.setattr(resolve, "_from_hub", from_hub)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield work
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- running


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_cli(argv: list[str]) -> Outcome:
    """``kosimcse ARGV`` in-process, as the console script runs it; a raw exception fails the caller's test."""
    from kosimcse.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Outcome(code, out.getvalue(), err.getvalue())


def _with_budget(cli: list[str]) -> list[str]:
    """A train command with the budget appended after the documented flags (which stay as typed)."""
    if cli[0] != "train":
        return cli
    extra = list(TRAIN_BUDGET)
    recipe = cli[1] if len(cli) > 1 and not cli[1].startswith("--") else None
    if recipe:
        from kosimcse.training.args import read_recipe

        for stage in read_recipe(recipe).get("stages", []):
            extra += [f"--{stage['name']}.max_steps", "2"]  # a documented --STAGE.max_steps beats a plain one
    return [*cli, *extra]


def _makefile_targets(path: Path) -> dict[str, list[str]]:
    targets, current = {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([\w.-]+)\s*:(?!=)", line)
        if match:
            current = match.group(1)
            targets[current] = []
        elif line.startswith("\t") and current:
            targets[current].append(line.strip())
    return targets


def check_launcher(argv: list[str]) -> Outcome:
    """The launcher's own options through its real parser; the inner ``-m kosimcse train`` parsed, not trained."""
    if argv[0] == "torchrun":
        from torch.distributed.run import get_args_parser

        args = get_args_parser().parse_args(argv[1:])
    else:
        from accelerate.commands.launch import launch_command_parser

        args = launch_command_parser().parse_args(argv[2:])
    assert args.module and args.training_script == "kosimcse", f"{argv}: expected `-m kosimcse ...`"
    return parse_train(list(args.training_script_args))


def parse_train(cli: list[str]) -> Outcome:
    """``kosimcse train ...`` through the real CLI, override parser and recipe loader, with training replaced by
    ``validate_settings`` (each stage of a staged recipe included)."""
    import kosimcse.training.run as run

    seen = []

    def validate_only(margs, dargs, targs, **_):
        run.validate_settings(margs, dargs, targs)
        seen.append(margs.model_name_or_path)
        return {"results": {}}

    original = run.train
    run.train = validate_only
    try:
        outcome = run_cli(cli)
    finally:
        run.train = original
    if outcome.code == 0 and not seen:
        outcome = Outcome(1, outcome.out, outcome.err + "\nno training run was configured")
    return outcome


def execute(cmd: DocCommand, work: Path, parse_only: bool = False) -> tuple[Plan, Outcome]:
    """Run (or, for launchers and make, check) one documented command in the clone ``work``."""
    p = plan(cmd)
    argv = _expand(cmd.argv)
    if p.kind in ("run", "mention"):
        if parse_only:
            if p.cli[0] == "train" and p.kind == "run":
                return p, parse_train(p.cli)
            return p, Outcome(0, "", "")
        if p.cli[0] == "search":
            _make_index(p.cli)
        return p, run_cli(_with_budget(p.cli))
    if p.kind == "launcher":
        return p, check_launcher(argv)
    if p.kind == "make":
        targets = _makefile_targets(work / "Makefile")
        if argv[1] not in targets:
            return p, Outcome(2, "", f"make: no target {argv[1]!r} in the Makefile")
        if argv[1] == "quickstart" and not parse_only:
            # After the install prerequisite, the target is its `$(BIN)/kosimcse ...` line: run that.
            lines = [shlex.split(line) for line in targets["quickstart"]]
            cli_lines = [words[1:] for words in lines if words and words[0] == "$(BIN)/kosimcse"]
            assert cli_lines, f"the quickstart target runs no kosimcse command: {targets['quickstart']}"
            return p, run_cli([*cli_lines[0], *QUICKSTART_BUDGET])
        return p, Outcome(0, "", "")
    return p, Outcome(0, "", "")


def _make_index(cli: list[str]) -> None:
    """The index a search command names is the user's earlier `kosimcse encode MODEL TEXTS -o INDEX` output."""
    words = dict(zip(cli, cli[1:]))
    index, texts = words.get("--index"), words.get("--texts")
    if index and texts and not Path(index).exists():
        outcome = run_cli(["encode", cli[1], texts, "-o", index])
        assert outcome.code == 0, outcome.err


def _check(cmd: DocCommand, outcome: Outcome, trained: bool = False):
    assert outcome.code == 0, (f"{cmd.where}: `{cmd.text}` exited {outcome.code}\n--- stderr\n{outcome.err[-3000:]}"
                               f"\n--- stdout\n{outcome.out[-2000:]}")
    if trained:  # every run (each stage of a staged recipe) really took optimizer steps
        steps = [int(n) for n in re.findall(r"^exported: .* \((\d+) steps,", outcome.out, flags=re.M)]
        assert steps and all(steps), f"{cmd.where}: `{cmd.text}` trained {steps or 'no'} steps\n{outcome.out[-2000:]}"


def _sessions(commands: list[DocCommand]) -> dict[str, list[DocCommand]]:
    out: dict[str, list[DocCommand]] = {}
    for c in commands:
        out.setdefault(c.session, []).append(c)
    return out


ALL = all_commands()
TRAINS = [c for c in ALL if (cli := _cli_argv(list(c.argv))) and cli[:1] == ["train"] and len(cli) > 1]
LAUNCHED = [c for c in ALL if c.argv[0] in LAUNCHERS]
MAKES = [c for c in ALL if c.argv[0] == "make"]


@pytest.mark.parametrize("cmd", TRAINS, ids=[f"train-parse {c.id}" for c in TRAINS])
def test_train_command_parses(cmd, clone):
    _, outcome = execute(cmd, clone, parse_only=True)
    _check(cmd, outcome)


@pytest.mark.parametrize("cmd", LAUNCHED, ids=[f"parse-only (needs several GPUs) {c.id}" for c in LAUNCHED])
def test_launcher_command_parses(cmd, clone):
    _, outcome = execute(cmd, clone)
    _check(cmd, outcome)


@pytest.mark.parametrize("cmd", MAKES, ids=[f"make target exists {c.id}" for c in MAKES])
def test_make_target_exists(cmd, clone):
    _, outcome = execute(cmd, clone, parse_only=True)
    _check(cmd, outcome)


SESSIONS = _sessions(ALL)
# The README's sections run in the default suite (about 30 s on tiny models); the recipes' longer chains of
# trainings (multitask: 6 runs) are slow, and their every train command is still parsed above by default.
SESSION_PARAMS = [pytest.param(s, id=f"run {s}", marks=[pytest.mark.slow] if s.startswith("recipes/") else [])
                  for s in SESSIONS]


@pytest.mark.parametrize("session", SESSION_PARAMS)
def test_documented_session_runs(session, clone):
    """Each README section / recipe's commands, in order, in one clone: what a user following it would do."""
    for cmd in SESSIONS[session]:
        p, outcome = execute(cmd, clone)
        _check(cmd, outcome, trained=p.kind == "run" and p.cli[0] == "train")


# ---------------------------------------------------------------- the checker catches a broken README


def _changed(original: str, edited: str) -> list[DocCommand]:
    before = {c.argv for c in readme_commands(original)}
    return [c for c in readme_commands(edited) if c.argv not in before]


@pytest.mark.parametrize("old, new, message", [
    ("--pooler avg --prefix", "--poolr avg --prefix", "unknown option --poolr; did you mean --pooler?"),
    ("--grad_cache_chunk_size 64", "--grad_cache_chunk_size 64 --learning_rate abc", "option --learning_rate"),
    ('--prefix "query: " --mlp_only_train true', "--prefix query: --mlp_only_train maybe", "option --mlp_only_train"),
])
def test_a_broken_train_command_is_reported(old, new, message, clone):
    original = README.read_text(encoding="utf-8")
    assert old in original
    changed = _changed(original, original.replace(old, new))
    assert changed
    for cmd in changed:
        p, outcome = execute(cmd, clone, parse_only=True)
        assert p.kind == "run" and outcome.code == 2, outcome
        assert message in outcome.err and "Traceback" not in outcome.err
    # The documented form parses (so the failure above comes from the edit alone).
    for cmd in _changed(original.replace(old, new), original):
        assert execute(cmd, clone, parse_only=True)[1].code == 0


def test_a_broken_command_that_parses_is_caught_by_running(clone):
    original = README.read_text(encoding="utf-8")
    edited = original.replace("prepare --no-sts --domain my_corpus.txt", "prepare --no-sts --domian my_corpus.txt", 1)
    (cmd,) = _changed(original, edited)
    _, outcome = execute(cmd, clone)
    assert outcome.code == 2 and "--domian" in outcome.err
    with pytest.raises(AssertionError, match="exited 2"):
        _check(cmd, outcome)


def test_a_broken_launcher_command_is_reported(clone):
    original = README.read_text(encoding="utf-8")
    edited = original.replace("--num_processes 4 -m kosimcse train recipes/unsup-seed.yaml",
                              "--num_processes 4 -m kosimcse train recipes/unsup-seed.yaml --temperture 0.1")
    (cmd,) = _changed(original, edited)
    _, outcome = execute(cmd, clone)
    assert outcome.code == 2 and "unknown option --temperture" in outcome.err


def test_a_new_command_without_a_handler_fails_the_accounting():
    original = README.read_text(encoding="utf-8")
    edited = original.replace("make test         # the tests", "make test && ./scripts/export.sh runs/x", 1)
    (cmd,) = _changed(original, edited)
    with pytest.raises(Unaccounted):
        plan(cmd)
