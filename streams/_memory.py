"""The worker process's memory: when the cyclic collector runs, and giving freed heap back.

Two process-wide settings a streams worker makes once (:func:`collect_less`, before it starts) and
every :data:`HEAP_TRIM_S` (:func:`trim_heap`, a timer of the app). Both were measured on the
backlog bench and the soak (issue #19: CPU per update; issue #22: RSS over time).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable
from typing import cast

__all__ = ["GC_THRESHOLDS", "HEAP_TRIM_S", "collect_less", "trim_heap"]

GC_THRESHOLDS = (50_000, 10, 10)
"""The worker process's cyclic garbage collector thresholds (:func:`gc.set_threshold`; Python's
default is ``(700, 10, 10)``). A batch makes and drops thousands of container objects (messages,
drafts, rows, datums), most freed by reference counting within the batch; at 700 allocations a
young collection runs several times per batch, promotes the batch's objects still alive to the
older generations, and that churn triggers a *full* collection every few batches, which walks
every object the worker holds (the decoded rows, faust's and the libraries' own). Measured on the
backlog bench (``bench/bench_streams.py``, 4 000 updates, one worker; CPU time of the collector
from :data:`gc.callbacks`): 1.0 s of the worker's 5.2 s CPU went to collecting, 0.79 s of it in
three full collections of ~0.26 s each (a pause with the GIL held). Young collections every
50 000 allocations promote little: every generation is still collected (the same rules decide
when), so cyclic garbage is freed as before, some thousands of allocations later. With these
settings the same run spent 0.45 s collecting of 18.4 s of worker CPU (initial load, backlog and
6-tier probe together), and the worker's CPU per backlog update went from 1.48-1.83 ms to
0.98-1.23 ms (four runs each, alternated with main's code in one session, load average 2.5-9 on
2 cores: lower bounds)."""


def collect_less() -> None:
    """Tune the collector for a worker process (:data:`GC_THRESHOLDS`), and move everything
    alive now -- modules, classes, the app and its schemas, built once at start-up -- out of
    its reach (:func:`gc.freeze`): those live as long as the process, and a full collection no
    longer walks them. Called once by :func:`streams.runtime.run_worker` before the worker
    starts."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


HEAP_TRIM_S = 30.0
"""How often a worker gives the free pages of its C heap back to the system (:func:`trim_heap`)."""


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    libc = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return cast(Callable[[int], int], trim)


def trim_heap() -> bool:
    """Give the free pages of the C heap back to the system (glibc's ``malloc_trim(0)``; no-op
    elsewhere); whether anything was given back.

    A worker churns through records, packs and rows of a few KB to 256 KB, which CPython takes
    from the C heap (its own allocator only serves objects up to 512 bytes). glibc returns freed
    memory to the system only from the top of its heap, so a live row allocated late pins
    everything freed below it: a worker's RSS keeps what its busiest moment needed (a roll-up
    backlog, a factor revision reaching a quarter of the graph). In a 2 000-product soak the
    heap's free part grew 33 -> 46 MB in 80 s while what was in use stayed at 94 MB (issue #22).
    ``malloc_trim`` releases the free pages wherever they are (a few ms every
    :data:`HEAP_TRIM_S`)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
