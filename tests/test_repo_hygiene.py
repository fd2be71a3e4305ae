"""What a clone must not carry: absolute folders of one machine, and library or benchmark code leaning on the tests."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A work, home, root or tmp folder of some machine, e.g. a developer's cache or a temp dir baked into a result.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(work|home|root|tmp)/[A-Za-z]")


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    proc = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / name for name in proc.stdout.decode("utf-8").split("\0") if name]


def test_no_tracked_file_names_an_absolute_folder_of_one_machine():
    hits = []
    for path in _tracked_files():
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (a figure)
        for lineno, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:120]}")
    assert not hits, "machine paths in tracked files (use an option, an env var or the cache dir):\n" + "\n".join(hits)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_library_and_benchmarks_use_neither_the_tests_nor_sys_path():
    offenders = []
    for folder in ("src", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            imported = _imported_modules(path)
            if any(name == "tests" or name.startswith("tests.") or name == "helpers" for name in imported):
                offenders.append(f"{path.relative_to(ROOT)} imports the tests")
            if "sys.path" in path.read_text(encoding="utf-8"):
                offenders.append(f"{path.relative_to(ROOT)} edits sys.path")
    assert not offenders, "\n".join(offenders)


def test_the_path_pattern_catches_machine_paths_and_spares_relative_ones():
    # Spelt in two pieces, so that this file does not trip the check it tests.
    root = "/"
    assert MACHINE_PATH.search(f"E5 = '{root}work/cache/me5-small'")
    assert MACHINE_PATH.search(f'"spec": "kowiki:{root}work/shared/data/corpus/kowiki"')
    assert MACHINE_PATH.search(f"output {root}tmp/kosimcse-prepare-2bzf193o/sentences.txt")
    assert MACHINE_PATH.search(f"cd {root}root/project and {root}home/user")
    assert not MACHINE_PATH.search("runs/bench/scratch/mlm and shared/data/corpus/kowiki")
    assert not MACHINE_PATH.search("~/.cache/kosimcse/e5-small-airgap")
