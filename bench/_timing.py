"""How fast a call runs: the one timing loop the in-process benchmarks share."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["rate"]


def rate(fn: Callable[[], object], *, seconds: float = 1.5, repeats: int = 5) -> float:
    """Best-of-*repeats* calls per second of *fn* (the best window is the least disturbed)."""
    calls = 50
    while True:  # size a batch to ~0.1 s
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > 0.1:
            break
        calls *= 2
    per_run = max(1, int(calls * (seconds / repeats) / elapsed))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_run):
            fn()
        best = max(best, per_run / (time.perf_counter() - start))
    return best
