"""Checkpoints appear only complete (staged, fsynced, renamed into place); resume skips damaged ones."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers.trainer_utils import sort_checkpoints

from kosimcse.errors import KoSimCSEError

log = logging.getLogger(__name__)

STAGING_DIR = ".staging"
MANIFEST = "checkpoint_manifest.json"
TRAINER_STATE = "trainer_state.json"
# Files the Trainer writes with torch.save (zip archives); a truncated one has no readable central directory.
_TORCH_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:  # some filesystems refuse fsync on directories; the rename is still atomic there
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def commit_checkpoint(staged: str | os.PathLike, run_dir: str | os.PathLike) -> Path:
    """Record every file's size in a manifest (so truncation or a missing file is detectable), fsync, and move
    ``.staging/checkpoint-N`` to ``run_dir/checkpoint-N`` in one rename, replacing one an earlier run left."""
    staged, run_dir = Path(staged), Path(run_dir)
    sizes = {}
    for path in sorted(p for p in staged.rglob("*") if p.is_file() and p.name != MANIFEST):
        _fsync(path)
        sizes[path.relative_to(staged).as_posix()] = path.stat().st_size
    (staged / MANIFEST).write_text(json.dumps({"files": sizes}, indent=1) + "\n", encoding="utf-8")
    _fsync(staged / MANIFEST)
    _fsync(staged)
    final, old = run_dir / staged.name, staged.parent / f"replaced-{staged.name.rsplit('-', 1)[-1]}"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():  # moved aside first, so that at every instant one complete checkpoint-N exists or none does
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)
    _fsync(run_dir)
    return final


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` cannot be resumed from, or ``None`` when it looks complete and readable."""
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    if (folder / MANIFEST).is_file():
        try:
            sizes = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            return f"{MANIFEST} is unreadable"
        for name, size in sizes.items():
            if not (folder / name).is_file():
                return f"{name} is missing"
            if (folder / name).stat().st_size != size:
                return f"{name} is {(folder / name).stat().st_size} bytes, {size} when saved"
    # Without a manifest the file formats alone still give truncation away.
    try:
        json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{TRAINER_STATE} is missing"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"{TRAINER_STATE} does not parse ({e})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no *.safetensors weights"
    for path in weights:
        try:  # safetensors checks that the file is exactly as long as its header says
            with safe_open(path, "pt"):
                pass
        except (SafetensorError, OSError) as e:
            return f"{path.name} is damaged ({e})"
    for name in _TORCH_FILES:
        if (folder / name).is_file():
            try:
                with zipfile.ZipFile(folder / name) as zf:
                    zf.namelist()
            except (zipfile.BadZipFile, OSError) as e:
                return f"{name} is damaged ({e})"
    return None


def load_checkpoint_weights(model, checkpoint: str | os.PathLike) -> None:
    """A Trainer checkpoint's weights into ``model`` as training built it (what the model leaves out on save, the
    frozen teacher, may be missing)."""
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(Path(checkpoint) / "model.safetensors"), strict=False)
    if set(missing) - set(model._keys_to_ignore_on_save) or unexpected:
        raise KoSimCSEError(f"{checkpoint} does not fit the model: missing {sorted(missing)[:3]}, "
                            f"unexpected {sorted(unexpected)[:3]}")


def checkpoints_newest_first(run_dir: str | os.PathLike) -> list[Path]:
    return [Path(p) for p in reversed(sort_checkpoints(str(run_dir)))]


def latest_valid_checkpoint(run_dir: str | os.PathLike) -> tuple[Path | None, list[tuple[Path, str]]]:
    """``(newest checkpoint that passes the integrity check or None, [(skipped checkpoint, why), ...])``."""
    skipped: list[tuple[Path, str]] = []
    for folder in checkpoints_newest_first(run_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, skipped
        skipped.append((folder, problem))
    return None, skipped


def resume_checkpoint(resume: str | bool | None, output_dir: str) -> str | None:
    """``True``: the newest intact checkpoint in ``output_dir`` (damaged ones are skipped, with the reason);
    a path: that checkpoint, refused if damaged."""
    if resume is True:
        folder, skipped = latest_valid_checkpoint(output_dir)
        for bad, why in skipped:
            log.warning("skipping damaged checkpoint %s: %s", bad, why)
        if folder is None:
            log.warning("no intact checkpoint in %s; starting from scratch", output_dir)
        return str(folder) if folder else None
    problem = checkpoint_problem(resume) if resume else None
    if problem:
        raise KoSimCSEError(f"cannot resume from {resume}: {problem}")
    return str(resume) if resume else None
