"""The one registry of STS evaluation sets; evaluator, leakage guard and STS training refusal all use ``task_path``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from kosimcse.data.readers import read_klue_sts_csv, read_klue_sts_json, read_korsts, sts_reader
from kosimcse.data.records import StsPair
from kosimcse.errors import KoSimCSEError
from kosimcse.paths import DATA_ENV
from kosimcse.paths import data_dir as default_data_dir

Reader = Callable[[Path], Iterator[StsPair]]


@dataclass(frozen=True)
class StsTask:
    """A task's file: ``relative`` to a data folder (the ``shared/data`` layout), also under
    ``kosimcse/resources/sts`` when ``embedded``; or a pinned ``path``."""

    name: str
    reader: Reader
    relative: str | None = None
    embedded: bool = True
    path: Path | None = None
    description: str = ""


_TASKS: dict[str, StsTask] = {task.name: task for task in (
    StsTask("korsts-dev", read_korsts, "korsts/sts-dev.tsv"),  # 1,500 pairs, human-translated STS-B
    StsTask("korsts-test", read_korsts, "korsts/sts-test.tsv"),  # 1,379 pairs
    StsTask("klue-sts-dev", read_klue_sts_json, "klue-sts/klue-sts-v1.1_dev.json"),  # 519 pairs, gold = real-label
    StsTask("klue-sts-dev-csv", read_klue_sts_csv, "klue-sts/klue_sts_val.csv", embedded=False),  # its CSV export
)}

# The sets the leakage guard removes from a training corpus unless told otherwise.
DEFAULT_EVAL_SETS = ("korsts-dev", "korsts-test", "klue-sts-dev")


def register_sts_task(name: str, path: str | os.PathLike, reader: Reader | str = "auto", description: str = "") -> None:
    """Add (or replace) a task read from ``path`` with ``reader``: a function, or a name for ``sts_reader``."""
    path = Path(path)
    if isinstance(reader, str):
        reader = sts_reader(path, reader)
    _TASKS[name] = StsTask(name, reader, path=path, description=description or str(path))
    _load_cached.cache_clear()


def unregister_sts_task(name: str) -> None:
    """Remove a task added with ``register_sts_task`` (e.g. one over a temporary file); built-in tasks stay."""
    if name in _TASKS and _TASKS[name].path is not None:
        del _TASKS[name]
        _load_cached.cache_clear()


def list_tasks() -> list[str]:
    return list(_TASKS)


def task_info(name: str) -> StsTask:
    try:
        return _TASKS[name]
    except KeyError:
        raise KoSimCSEError(f"unknown STS task {name!r}; known tasks: {', '.join(_TASKS)}") from None


def task_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The file a task reads, for evaluation and leakage guard alike: a pinned path; else the copy in the chosen
    data folder (``data_dir``, else ``$KOSIMCSE_DATA_DIR``; not the guessed default) when it holds one; else the
    embedded copy; else the file in the chosen or default data folder."""
    task = task_info(name)
    if task.path is not None:
        return task.path
    chosen = data_dir or os.environ.get(DATA_ENV)
    if chosen and (Path(chosen) / task.relative).is_file():
        return Path(chosen) / task.relative
    embedded = Path(str(resources.files("kosimcse") / "resources" / "sts")) / Path(task.relative).name
    if task.embedded and embedded.is_file():
        return embedded
    return Path(chosen or default_data_dir()) / task.relative


def task_files(data_dir: str | os.PathLike | None = None) -> set[Path]:
    """The resolved file of every registered task that has one for ``data_dir``: files training must not read."""
    files = set()
    for name in list_tasks():
        try:
            files.add(task_path(name, data_dir).resolve())
        except KoSimCSEError:  # a data-folder-only task without a data folder
            continue
    return files


@lru_cache(maxsize=32)
def _load_cached(name: str, path: Path) -> tuple[StsPair, ...]:
    return tuple(task_info(name).reader(path))


def load_sts_task(name: str, data_dir: str | os.PathLike | None = None) -> list[StsPair]:
    """All pairs of a task, in file order (bad rows raise ``DataError``: an eval set is never silently cut)."""
    return list(_load_cached(name, task_path(name, data_dir)))


def eval_sentences(names: Iterable[str] | None = None, data_dir: str | os.PathLike | None = None) -> set[str]:
    """Every sentence of the given tasks (default ``DEFAULT_EVAL_SETS``), as the evaluator reads them for
    ``data_dir``: what the leakage guard keeps out of a training corpus."""
    return {s for name in (DEFAULT_EVAL_SETS if names is None else names)
            for pair in load_sts_task(name, data_dir) for s in (pair.sentence1, pair.sentence2)}
