"""How fast a call runs: the one timing loop the in-process benchmarks share."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["rate"]


def rate(
    fn: Callable[[], object],
    *,
    seconds: float = 1.5,
    repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Best-of-*repeats* calls per second of *fn* (the best window is the least disturbed).

    *clock* is wall time by default; ``time.process_time`` counts this process's CPU time
    only, which a machine loaded by others disturbs far less (for single-threaded code)."""
    calls = 50
    while True:  # size a batch to ~0.1 s
        start = clock()
        for _ in range(calls):
            fn()
        elapsed = clock() - start
        if elapsed > 0.1:
            break
        calls *= 2
    per_run = max(1, int(calls * (seconds / repeats) / elapsed))
    best = 0.0
    for _ in range(repeats):
        start = clock()
        for _ in range(per_run):
            fn()
        best = max(best, per_run / max(clock() - start, 1e-9))
    return best
