"""Registry of STS evaluation tasks: a name maps to a file (embedded copy or data folder) and the reader for it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from kosimcse.data.readers import read_klue_sts_csv, read_klue_sts_json, read_korsts
from kosimcse.data.records import StsPair
from kosimcse.errors import KoSimCSEError

Reader = Callable[[Path], Iterator[StsPair]]


@dataclass(frozen=True)
class StsTask:
    """Where a task's pairs live: ``embedded`` is a file under ``kosimcse/resources/sts``,
    ``relative`` its place inside a data folder (the ``shared/data`` layout); ``path`` pins a file."""

    name: str
    reader: Reader
    embedded: str | None = None
    relative: str | None = None
    path: Path | None = None
    description: str = ""


_TASKS: dict[str, StsTask] = {}


def _embedded_dir() -> Path:
    return Path(str(resources.files("kosimcse") / "resources" / "sts"))


def register_sts_task(name: str, path: str | os.PathLike, reader: Reader | str = "auto", description: str = "") -> None:
    """Add (or replace) a task read from ``path`` with ``reader``: a function, or ``korsts``/``klue-json``/``klue-csv``/``auto``."""
    path = Path(path)
    if isinstance(reader, str):
        reader = _reader_for(path, reader)
    _TASKS[name] = StsTask(name, reader, path=path, description=description or str(path))
    _load_cached.cache_clear()


def unregister_sts_task(name: str) -> None:
    """Remove a task added with ``register_sts_task`` (e.g. one over a temporary file); built-in tasks stay."""
    if name in _TASKS and _TASKS[name].path is not None:
        del _TASKS[name]
        _load_cached.cache_clear()


def _reader_for(path: Path, kind: str) -> Reader:
    readers = {"korsts": read_korsts, "klue-json": read_klue_sts_json, "klue-csv": read_klue_sts_csv}
    if kind == "auto":
        kind = {".tsv": "korsts", ".json": "klue-json", ".csv": "klue-csv"}.get(path.suffix.lower(), "")
        if not kind:
            raise KoSimCSEError(f"cannot tell the STS format of {path}; pass reader='korsts', 'klue-json' or 'klue-csv'")
    if kind not in readers:
        raise KoSimCSEError(f"unknown STS reader {kind!r}; choose one of {', '.join(readers)}")
    return readers[kind]


def _register_builtin() -> None:
    _TASKS["korsts-dev"] = StsTask("korsts-dev", read_korsts, "sts-dev.tsv", "korsts/sts-dev.tsv",
                                   description="KorSTS dev, 1,500 pairs (human-translated STS-B)")
    _TASKS["korsts-test"] = StsTask("korsts-test", read_korsts, "sts-test.tsv", "korsts/sts-test.tsv",
                                    description="KorSTS test, 1,379 pairs (human-translated STS-B)")
    _TASKS["klue-sts-dev"] = StsTask("klue-sts-dev", read_klue_sts_json, "klue-sts-v1.1_dev.json",
                                     "klue-sts/klue-sts-v1.1_dev.json",
                                     description="KLUE-STS v1.1 dev, 519 pairs (gold = real-label, 0-5)")


_register_builtin()


def list_tasks() -> list[str]:
    """Names of all registered STS tasks."""
    return list(_TASKS)


def task_info(name: str) -> StsTask:
    try:
        return _TASKS[name]
    except KeyError:
        raise KoSimCSEError(f"unknown STS task {name!r}; known tasks: {', '.join(_TASKS)}") from None


def task_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The file a task reads: an explicit ``data_dir`` wins, then the embedded copy, then the default data folder."""
    task = task_info(name)
    if task.path is not None:
        return task.path
    if data_dir is not None and task.relative:
        return Path(data_dir) / task.relative
    if task.embedded:
        embedded = _embedded_dir() / task.embedded
        if embedded.is_file():
            return embedded
    if task.relative:
        from kosimcse.paths import data_dir as default_data_dir

        return default_data_dir() / task.relative
    raise KoSimCSEError(f"STS task {name!r} has no file")


@lru_cache(maxsize=32)
def _load_cached(name: str, path: Path) -> tuple[StsPair, ...]:
    return tuple(task_info(name).reader(path))


def load_sts_task(name: str, data_dir: str | os.PathLike | None = None) -> list[StsPair]:
    """All pairs of a task, in file order (bad rows raise ``DataError``: an eval set is never silently cut)."""
    return list(_load_cached(name, task_path(name, data_dir)))


def eval_sentences(names: Iterable[str] | None = None, data_dir: str | os.PathLike | None = None) -> set[str]:
    """Every sentence of the given tasks (default: all registered), e.g. to keep them out of a training corpus."""
    sentences: set[str] = set()
    for name in (list_tasks() if names is None else names):
        for pair in load_sts_task(name, data_dir):
            sentences.add(pair.sentence1)
            sentences.add(pair.sentence2)
    return sentences
