"""Batching: the events of a stream in batches sized by the load, acknowledged after their work.

The agents and faust's delivery of new events share one thread, and faust hands over about one
record per turn of the event loop (its fetcher awaits each delivery), so an agent that starts on
its next batch at once leaves delivery little of it: batches stay at one record with thousands
waiting (measured on the ingest agents; about 20 on the roll-up), nothing coalesces, and every
record costs a full step. So a batch (:meth:`Batcher.batches`) first takes what keeps coming,
until :data:`QUIET_TURNS` turns of the loop bring nothing new; and after a busy batch
(:data:`BUSY_BATCH` or more, or :data:`BUSY_S` or longer) the next one gathers for as long as the
last one took (at most :data:`LINGER_MAX_S`), in slices of :data:`LINGER_SLICE_S`, while the
backlog is still coming: as long as a slice brings new records or the worker's thread spent it
working (the other agents: the ingest agents checking what the roll-up agent will get next),
and no longer once a slice finds the worker idle with nothing new. Under load batches grow until
the work coalesces (one recomputation per product per batch), while an agent that keeps up takes
a lone message after a few idle turns of the loop. (faust's ``take_events`` stops reading while
its caller works, then waits ``within`` for every batch, busy or not.)

Why the worker's work counts: the worker is one thread. On the 6-tier probe
(``bench/bench_streams.py``: 1 000-update bursts over 60 chains) a roll-up batch touching all
60 chains republishes all 360 products, and the ingest agents check the next updates only in
its waits for the broker's acknowledgements; with a fixed 50 ms linger the next roll-up batch
often started before they had caught up, so a burst took 3-6 roll-up batches: 0.8-1.7
products published per update (mean 1.27 over 9 bursts). Gathering while they work: 0.7-1.15
(mean 1.02 over 9 bursts, side by side on a shared 2-core machine: lower bounds).

A batch's events are acknowledged when the caller asks for the next batch, never if it raised:
their offsets are committed only after their work is done. An event for which *held* is true
then (a parked record, see :mod:`streams.runtime`, "No stalls") is left for its holder to
acknowledge once it is resolved.

This module knows nothing of faust: :class:`Batcher` is fed by :meth:`Batcher.offer` and talks
to its stream through :class:`StreamPort` (``wait``, ``ack``, ``should_stop``, which a faust
stream has); :func:`streams._faust.ready_batches` plugs it into a faust stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "BATCH_MAX",
    "BUSY_BATCH",
    "BUSY_S",
    "BUSY_SHARE",
    "LINGER_MAX_S",
    "LINGER_SLICE_S",
    "QUIET_TURNS",
    "Batcher",
    "StreamPort",
]

E = TypeVar("E")
E_contra = TypeVar("E_contra", contravariant=True)

BATCH_MAX = 500
"""Most messages an agent takes at once (one round of broker acknowledgements)."""
BUSY_BATCH = 16
"""A batch at least this big means the agent is behind: it then lets the next one gather."""
BUSY_S = 0.01
"""So does a batch that took at least this long (seconds): a roll-up batch holds a few packs
of many messages, and with local delivery one update's batch runs through every tier."""
LINGER_MAX_S = 0.25
"""Longest a batch gathers after a busy one: the most a hop adds to latency under load (it
gathers no longer than the last batch took, and stops at the first idle slice)."""
LINGER_SLICE_S = 0.02
"""A slice of the gathering after a busy batch: about a record's round trip through the broker
(the producer's 5 ms linger, the consumer's 10 ms fetch wait). A slice that brings nothing new
while the worker's thread stayed idle (used under :data:`BUSY_SHARE` of it) ends the gathering."""
BUSY_SHARE = 0.25
"""Share of a slice the worker's thread must spend working (other agents) for the slice to count
as busy: the machine's other processes may hold the core for the rest."""
QUIET_TURNS = 3
"""Turns of the event loop without a new record after which a batch stops taking what is
being delivered (faust hands over about one record per turn)."""


class StreamPort(Protocol[E_contra]):
    """What a :class:`Batcher` needs of its stream (a faust stream has all three)."""

    @property
    def should_stop(self) -> bool: ...

    async def wait(self, *coros: Any, timeout: float | None = None) -> Any:
        """Wait for an :class:`asyncio.Event` (or *timeout*); returns early when stopping."""

    async def ack(self, event: E_contra) -> Any:
        """Acknowledge *event* (its offset may be committed)."""


class Batcher(Generic[E]):
    """Batches of at most *most* events offered by a stream's delivery (see the module doc)."""

    def __init__(
        self, stream: StreamPort[E], most: int, held: Callable[[E], bool] | None = None
    ) -> None:
        self.stream = stream
        self.most = most
        self.held = held
        self.ready: list[E] = []
        self.arrived, self.full, self.room = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.room.set()

    async def offer(self, event: E) -> None:
        """Delivery hands over one event; waits while a full batch is not taken yet (so that
        delivery stops reading when the caller is behind)."""
        self.ready.append(event)
        self.arrived.set()
        if len(self.ready) >= self.most:
            self.full.set()
            self.room.clear()
            await self.stream.wait(self.room)

    async def _gather(self, most_s: float) -> None:
        """Let the batch grow for up to *most_s* seconds while the backlog is still coming (see
        the module doc): slice by slice, until a slice finds nothing new and the thread idle,
        the batch is full, or the stream stops."""
        stream, ready = self.stream, self.ready
        end = time.perf_counter() + most_s
        while len(ready) < self.most and not stream.should_stop:
            began = time.perf_counter()
            left = end - began
            if left <= 0:
                return
            count, cpu = len(ready), time.thread_time()
            await stream.wait(self.full, timeout=min(LINGER_SLICE_S, left))
            worked = time.thread_time() - cpu
            if len(ready) == count and worked < BUSY_SHARE * (time.perf_counter() - began):
                return

    async def batches(self) -> AsyncIterator[list[E]]:
        """The batches, until the stream stops; each acknowledged when the next is asked for."""
        stream, ready = self.stream, self.ready
        took, last = 0.0, 0
        while not stream.should_stop:
            if not ready:
                await stream.wait(self.arrived)  # (returns early when the stream stops)
                continue
            quiet = 0
            while quiet < QUIET_TURNS and len(ready) < self.most and not stream.should_stop:
                count = len(ready)
                await asyncio.sleep(0)  # one turn of the loop: delivery hands over a record
                quiet = quiet + 1 if len(ready) == count else 0
            if (last >= BUSY_BATCH or took >= BUSY_S) and len(ready) < self.most:
                await self._gather(min(LINGER_MAX_S, took))
                if stream.should_stop:
                    break
            batch = ready[:]
            ready.clear()
            self.arrived.clear()
            self.full.clear()
            self.room.set()
            began = time.perf_counter()
            yield batch
            took, last = time.perf_counter() - began, len(batch)
            for event in batch:
                if self.held is None or not self.held(event):
                    await stream.ack(event)
