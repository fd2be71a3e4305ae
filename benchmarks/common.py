"""Shared benchmark plumbing: machine description, timing, and writing one JSON result per benchmark.

Each benchmark script saves ``benchmarks/results/<name>.json`` holding its measurements (data only),
the exact command that produced them, the date, the machine and the wall time.
``python -m benchmarks.render`` turns all results into ``docs/BENCHMARKS.md``; no number there
is typed by hand. Paths of this machine (data dir, cache dir, home, temp dir, the checkout) are written
as placeholders or relative paths, so a result file means the same on every clone.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpu_flags() -> set[str]:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine() -> dict:
    """CPU, cores, versions, the vector flags that decide bf16 speed, and the precision ``auto`` resolves to here."""
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = _cpu_flags()
    out = {"nproc": os.cpu_count(), "cpu": cpu, "cpu_flags": [f for f in CPU_FLAGS if f in flags],
           "python": platform.python_version()}
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        out["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    try:
        import torch

        from kosimcse.precision import resolve_precision

        out["torch"] = torch.__version__
        out["precision_auto"] = resolve_precision("auto", "cpu").name
    except ImportError:
        out["torch"] = "not installed"
    return out


def command_line() -> str:
    """The command as a user types it: ``python -m benchmarks.x ...`` when run as a module, without local paths."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = f"python -m {spec.name}" if spec is not None and spec.name else f"python {shlex.quote(sys.argv[0])}"
    return " ".join([head, *(shlex.quote(a) for a in sys.argv[1:])])


def _placeholders() -> list[tuple[str, str]]:
    """(absolute prefix, what to write instead), longest first."""
    pairs = [(str(ROOT), "."), (tempfile.gettempdir(), "<tmp>"), (str(Path.home()), "~")]
    from kosimcse.paths import cache_dir, data_dir

    pairs.append((str(cache_dir(None)), "<cache_dir>"))
    try:
        pairs.append((str(data_dir(None)), "<data_dir>"))
    except Exception:  # no data dir here: nothing of it can appear in a result
        pass
    pairs += [(str(Path(p).resolve()), r) for p, r in pairs]
    return sorted({p: r for p, r in pairs if p not in ("", "/")}.items(), key=lambda pr: -len(pr[0]))


def portable(value, placeholders: list[tuple[str, str]] | None = None):
    """``value`` with every absolute path of this machine replaced by a relative path or a placeholder."""
    placeholders = _placeholders() if placeholders is None else placeholders
    if isinstance(value, str):
        for prefix, replacement in placeholders:
            if prefix in value:
                value = value.replace(prefix + "/", "" if replacement == "." else replacement + "/")
                value = value.replace(prefix, replacement)
        return value
    if isinstance(value, dict):
        return {portable(k, placeholders): portable(v, placeholders) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, placeholders) for v in value]
    return value


def save_result(name: str, title: str, wall_time_s: float, data: dict | None = None, command: str | None = None,
                order: int = 50) -> Path:
    """Write one benchmark's result: its measurements only; ``benchmarks.render`` turns them into markdown."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "title": title,
        "order": order,
        "command": command or command_line(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "wall_time_s": round(wall_time_s, 1),
        "data": data or {},
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(portable(payload), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
