"""Benchmarks: scripts that measure quality and speed and write JSON results rendered into docs/BENCHMARKS.md."""
