"""Where data and caches live: an explicit option wins, then an environment variable, then the default."""

from __future__ import annotations

import os
from pathlib import Path

from kosimcse.errors import KoSimCSEError

DATA_ENV = "KOSIMCSE_DATA_DIR"
CACHE_ENV = "KOSIMCSE_CACHE_DIR"


def data_dir(override: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """Root of the local Korean data (the layout of ``shared/data/README.md``): ``override`` (``--data-dir``),
    ``$KOSIMCSE_DATA_DIR``, then ``shared/data`` beside the current directory or beside the source checkout."""
    if override or os.environ.get(DATA_ENV):
        candidates = [Path(override or os.environ[DATA_ENV])]
    else:
        repo_root = Path(__file__).resolve().parents[2]  # src/kosimcse/paths.py -> repo root
        candidates = [Path.cwd() / ".." / "shared" / "data", Path.cwd() / "shared" / "data",
                      repo_root / ".." / "shared" / "data"]
    found = next((c for c in candidates if c.is_dir()), None)
    if found or not must_exist:
        return found.resolve() if found else candidates[0]
    raise KoSimCSEError(
        f"data directory not found (tried {', '.join(map(str, candidates))}). Pass --data-dir PATH or set "
        f"{DATA_ENV}=PATH to a folder laid out like shared/data (korsts/, klue-sts/, nli/, corpus/kowiki/, domain/)."
    )


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Writable cache for converted models and prepared corpora (``$KOSIMCSE_CACHE_DIR`` or ~/.cache/kosimcse)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kosimcse"
    path = Path(override or os.environ.get(CACHE_ENV) or default)
    path.mkdir(parents=True, exist_ok=True)
    return path
