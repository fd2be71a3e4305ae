"""Shared benchmark plumbing: machine description, timing, and writing one JSON result per benchmark.

Each benchmark script saves ``benchmarks/results/<name>.json`` holding its tables (as markdown),
the exact command that produced them, the date, the machine and the wall time.
``python -m benchmarks.render`` turns all results into ``docs/BENCHMARKS.md``; no number there
is typed by hand.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return {"nproc": os.cpu_count(), "cpu": cpu, "torch": torch_version, "python": platform.python_version()}


def command_line() -> str:
    """The command as a user types it: ``python -m benchmarks.x ...`` when run as a module, without local paths."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = f"python -m {spec.name}" if spec is not None and spec.name else f"python {shlex.quote(sys.argv[0])}"
    return " ".join([head, *(shlex.quote(a) for a in sys.argv[1:])])


def save_result(name: str, title: str, markdown: str, wall_time_s: float, data: dict | None = None,
                command: str | None = None, order: int = 50) -> Path:
    """Write one benchmark's result; ``markdown`` is the section body (tables and notes)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "title": title,
        "order": order,
        "command": command or command_line(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "wall_time_s": round(wall_time_s, 1),
        "markdown": markdown,
        "data": data or {},
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
