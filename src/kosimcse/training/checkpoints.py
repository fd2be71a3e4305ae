"""Checkpoint integrity: checkpoints appear only complete (staged, fsynced, renamed), and resume skips damaged ones.

transformers' ``Trainer._save_checkpoint`` writes straight into ``checkpoint-N``, so a run killed mid-save
leaves a folder that ``get_last_checkpoint`` happily returns. ``SimCSETrainer`` saves into
``.staging/checkpoint-N`` instead and calls :func:`commit_checkpoint`, which records every file's size in a
manifest, fsyncs, and renames the folder into place in one step. :func:`latest_valid_checkpoint` is what
resuming uses: the newest checkpoint that passes :func:`checkpoint_problem`, naming each one it skipped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

STAGING_DIR = ".staging"
MANIFEST = "checkpoint_manifest.json"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Files the Trainer writes with torch.save (zip archives); a truncated one has no readable central directory.
_TORCH_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the rename is still atomic there
        pass
    finally:
        os.close(fd)


def write_manifest(folder: Path) -> Path:
    """Record the size of every file under ``folder`` (so truncation or a missing file is detectable), fsynced."""
    folder = Path(folder)
    sizes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        _fsync(path)
        sizes[path.relative_to(folder).as_posix()] = path.stat().st_size
    target = folder / MANIFEST
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"files": sizes}, indent=1) + "\n", encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, target)
    return target


def staging_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / STAGING_DIR


def commit_checkpoint(staged: str | os.PathLike, run_dir: str | os.PathLike) -> Path:
    """Move a fully written ``.staging/checkpoint-N`` to ``run_dir/checkpoint-N`` in one rename.

    An existing ``checkpoint-N`` (left by an earlier run that reached the same step) is replaced.
    """
    staged, run_dir = Path(staged), Path(run_dir)
    final = run_dir / staged.name
    write_manifest(staged)
    _fsync(staged)
    if final.exists():
        # Move the old one aside first so that at every instant one complete checkpoint-N exists or none does.
        old = staged.parent / f"replaced-{staged.name.rsplit('-', 1)[-1]}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, final)
    _fsync(run_dir)
    return final


def _safetensors_problem(path: Path) -> str | None:
    """None if the header parses and the file is exactly as long as the header says."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{path.name} is truncated ({size} bytes)"
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            return f"{path.name} is truncated: header says {n} bytes, file has {size}"
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, ValueError):
            return f"{path.name} has an unreadable header"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        return f"{path.name} is {size} bytes but its header needs {expected} (truncated or padded)"
    return None


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` cannot be resumed from, or ``None`` when it looks complete and readable."""
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            sizes = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            return f"{MANIFEST} is unreadable"
        for name, size in sizes.items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} is {path.stat().st_size} bytes, {size} when saved"
    state = folder / TRAINER_STATE
    if not state.is_file():
        return f"{TRAINER_STATE} is missing"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"{TRAINER_STATE} does not parse ({e})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no *.safetensors weights"
    for path in weights:
        problem = _safetensors_problem(path)
        if problem:
            return problem
    for name in _TORCH_FILES:
        path = folder / name
        if path.is_file():
            try:
                with zipfile.ZipFile(path) as zf:
                    zf.namelist()
            except (zipfile.BadZipFile, OSError) as e:
                return f"{name} is damaged ({e})"
    return None


def checkpoints_newest_first(run_dir: str | os.PathLike) -> list[Path]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_valid_checkpoint(run_dir: str | os.PathLike) -> tuple[Path | None, list[tuple[Path, str]]]:
    """``(newest checkpoint that passes the integrity check or None, [(skipped checkpoint, why), ...])``."""
    skipped: list[tuple[Path, str]] = []
    for folder in checkpoints_newest_first(run_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, skipped
        skipped.append((folder, problem))
    return None, skipped
