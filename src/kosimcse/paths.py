"""Where data and caches live: an explicit option wins, then an environment variable, then the default."""

from __future__ import annotations

import os
from pathlib import Path

from kosimcse.errors import KoSimCSEError

DATA_ENV = "KOSIMCSE_DATA_DIR"
CACHE_ENV = "KOSIMCSE_CACHE_DIR"


def _default_data_candidates() -> list[Path]:
    # The project is laid out as <root>/main (this repo) beside <root>/shared/data;
    # look beside the current directory first, then beside the source checkout.
    here = Path(__file__).resolve()
    repo_root = here.parents[2]  # src/kosimcse/paths.py -> repo root
    return [
        Path.cwd() / ".." / "shared" / "data",
        Path.cwd() / "shared" / "data",
        repo_root / ".." / "shared" / "data",
    ]


def data_dir(override: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """Root of the local Korean data (the layout of ``shared/data/README.md``).

    Order: ``override`` (a ``--data-dir`` option), ``$KOSIMCSE_DATA_DIR``, then ``../shared/data``.
    """
    if override:
        candidates = [Path(override)]
    elif os.environ.get(DATA_ENV):
        candidates = [Path(os.environ[DATA_ENV])]
    else:
        candidates = _default_data_candidates()
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if not must_exist:
        return candidates[0]
    tried = ", ".join(str(c) for c in candidates)
    raise KoSimCSEError(
        f"data directory not found (tried {tried}). Pass --data-dir PATH or set {DATA_ENV}=PATH "
        "to a folder laid out like shared/data (korsts/, klue-sts/, nli/, corpus/kowiki/, domain/)."
    )


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Writable cache for converted models and prepared corpora (``$KOSIMCSE_CACHE_DIR`` or ~/.cache/kosimcse)."""
    if override:
        p = Path(override)
    elif os.environ.get(CACHE_ENV):
        p = Path(os.environ[CACHE_ENV])
    else:
        p = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kosimcse"
    p.mkdir(parents=True, exist_ok=True)
    return p
