"""What a streams worker holds in memory besides its state (issue #22: the workers' RSS grew
+29/+39 MB a minute in the 10k soak, with the roll-up topic's backlog, and did not come down).

- faust fetches ahead into each stream's queue until it holds ``stream_buffer_maxsize`` records
  (4 096 by default): on the roll-up topic, packs of up to 256 KB each, all in memory for as
  long as the worker is behind. The worker's app holds at most one batch ahead
  (:data:`streams._faust.STREAM_BUFFER_MAX`).
- glibc gives freed memory back to the system only from the top of its heap: a live allocation
  made late pins everything freed below it. The worker trims its heap every
  :data:`streams._memory.HEAP_TRIM_S` seconds (:func:`streams._memory.trim_heap`).
"""

from __future__ import annotations

import ctypes.util
import platform
from pathlib import Path
from typing import Any

import pytest

from pcf_exchange.streams import _faust
from pcf_exchange.streams._batching import BATCH_MAX
from pcf_exchange.streams._memory import trim_heap
from pcf_exchange.streams._packs import PACK_MAX_BYTES

MIB = 1024 * 1024


async def _no_hook(agent: Any, exc: BaseException) -> None:  # pragma: no cover (never called)
    raise AssertionError(f"{agent} failed: {exc!r}")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_worker_stream_buffers_at_most_one_batch_ahead() -> None:
    app = _faust.make_app("t-stream-buffer", _no_hook)
    queue = app.topic("t.pcf.rollup", key_type=bytes, value_type=bytes).queue
    for n in range(_faust.STREAM_BUFFER_MAX):
        assert not queue.full(), f"full after {n} records"
        queue.put_nowait(n)
    assert queue.full(), (
        f"a stream's queue takes more than {_faust.STREAM_BUFFER_MAX} records: faust fetches"
        " that far ahead, and on the roll-up topic each is a pack of up to 256 KB"
    )
    # what one agent may hold of the roll-up topic: its queue and the batch it is gathering
    held = (_faust.STREAM_BUFFER_MAX + BATCH_MAX) * PACK_MAX_BYTES
    assert held <= 256 * MIB, f"up to {held / MIB:.0f} MiB of packs held per stream"


def test_a_stream_buffer_the_caller_names_is_kept() -> None:
    app = _faust.make_app("t-stream-buffer-named", _no_hook, stream_buffer_maxsize=7)
    assert app.conf.stream_buffer_maxsize == 7


@pytest.mark.skipif(
    platform.system() != "Linux"
    or platform.libc_ver()[0] != "glibc"
    or not ctypes.util.find_library("c"),
    reason="malloc_trim is glibc's",
)
def test_trimming_the_heap_gives_memory_freed_below_a_live_allocation_back() -> None:
    # 128 MiB in 16 KiB blocks (from the C heap: CPython's own allocator stops at 512 bytes),
    # each followed by a small block that stays alive: freeing the big ones leaves holes that
    # glibc cannot give back from the top of its heap
    chunks, survivors = [], []
    for n in range(8192):
        chunks.append(b"x" * (16 * 1024 - 64) + n.to_bytes(4, "big"))
        survivors.append(b"y" * 600 + n.to_bytes(4, "big"))
    del chunks
    before = _rss_mib()
    assert trim_heap()
    released = before - _rss_mib()
    assert released >= 64, f"trimming the heap gave back {released:.0f} MiB of 128 MiB freed"
    assert len(survivors) == 8192
