"""Quality table: every measured row (floors, e5 zero-shot, trained models) plus published anchors, one table per task.

Run: python -m benchmarks.quality
It only collects: each row comes from a result file another benchmark wrote (``floors.json``,
``eval_e5.json``, ``train_*.json`` with ``data.row_name`` and ``data.results``), so every number
keeps the command that produced it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.harness import TASKS
from benchmarks.published import published_rows

GROUPS = ("floor", "zero-shot", "trained", "published")


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def collect(results_dir: Path) -> tuple[dict[str, dict[str, dict]], dict[str, str]]:
    """``({task: {row: metrics}}, {row: source note})`` in table order: floors, zero-shot, trained, published."""
    tables: dict[str, dict[str, dict]] = {task: {} for task in TASKS}
    sources: dict[str, str] = {}

    def add(result: dict | None, rows_by_task: dict, label: str) -> None:
        for task in TASKS:
            for row, metrics in (rows_by_task.get(task) or {}).items():
                tables[task][row] = metrics
                sources.setdefault(row, f"{label}: `{result['command']}`" if result else label)

    floors = _load(results_dir / "floors.json")
    if floors:
        add(floors, floors["data"]["results"], "floor")
    e5 = _load(results_dir / "eval_e5.json")
    if e5:
        add(e5, e5["data"]["results"], "zero-shot")
    for path in sorted(results_dir.glob("train_*.json")):
        trained = _load(path)
        if not trained or "results" not in trained.get("data", {}):
            continue
        row = trained["data"].get("row_name") or trained.get("title") or path.stem
        budget = trained["data"].get("budget")
        label = "trained" + (f" ({budget})" if budget else "")
        add(trained, {task: {row: m} for task, m in trained["data"]["results"].items()}, label)
    add(None, {task: published_rows(task) for task in TASKS}, "published, not measured here")
    return tables, sources


def run(command: str = "python -m benchmarks.quality") -> dict:
    from benchmarks.common import save_result
    from benchmarks.harness import current_results_dir

    start = time.perf_counter()
    tables, sources = collect(current_results_dir())
    save_result("quality", "Quality: Korean STS, all rows side by side", time.perf_counter() - start,
                data={"tables": tables, "sources": sources}, order=10, command=command)
    return tables


if __name__ == "__main__":
    run()
