"""Helpers for benchmarks: timing and peak memory of a child process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_child(code: str) -> dict:
    """Run python code in a child; it must print one JSON line. Adds peak RSS (MB)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    wrapped = code + "\nimport resource, json as _j\nprint(_j.dumps({'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    out = subprocess.run([sys.executable, "-c", wrapped], env=env, capture_output=True, text=True, check=True)
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    merged = {}
    for d in lines:
        merged.update(d)
    return merged
