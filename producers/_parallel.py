"""A JSON Lines footprint file read and checked in other processes (``pcfx publish --jobs``).

Reading a line through the fast lane and the PCR gate is ~70 µs of the ~100 µs of CPU that
``pcfx publish footprints`` spends per record in one process (``bench/bench_producer.py``,
"where the time goes"). With ``jobs`` processes, ``jobs - 1`` checking processes run
:func:`~producers._input.jsonl_item` and the PCR gate on chunks of :data:`CHUNK_LINES` lines
while the publishing process signs, encodes, produces and serves delivery reports.

* The checker is a pure function of the line bytes (with its 1-based line number and record
  index) and of ``strict`` (the PCR setting, given once when the pool starts): each chunk
  comes back as the :class:`~producers._input.Item`\\ s the in-process reader gives, with
  the gate's verdict in :attr:`Item.pcr`; a fast-lane record that passed the gate travels as a
  plain tuple of its canonical bytes and the fields the publisher reads (:data:`Compact`, made
  without an item), which :func:`_expand` turns into its item in the publishing process.
* While the first checking process starts, the publishing process checks the first chunks
  itself (the same pure function), so the start-up costs no waiting; after that, whenever the
  oldest chunk in flight is not back yet, it checks a slice of the next lines (a tenth of a
  chunk) and queues it in its place in the order instead of waiting, so the processes share
  the checking as their other work allows (the publishing process spends ~55 µs of CPU per
  record on its own work, a checking process ~75: session 18, in-process, under load).
* Chunks are yielded in input order, and at most ``2 × (jobs - 1)`` are in flight, so memory
  stays bounded on a huge file. Sequences, the ledger and everything after the gate stay in
  the publishing process, in input order: the records, rejections, ledger and summary are the
  ones ``jobs=1`` gives (``tests/producers/test_parallel.py`` compares them on a topic).
* The checking processes are started with ``spawn`` (no librdkafka threads inherited; ~0.8 s
  of CPU to import the checks on this 2-core machine), run with the cyclic garbage collector
  paused (collected once per chunk, as the publisher pauses it) and ignore SIGINT: Ctrl-C
  interrupts the publishing process, which stops them. A checking process that dies, or a
  chunk that raises, ends the run with :class:`~contracts.errors.InfrastructureError` (exit
  code 3) naming the lines; what was acknowledged before is in the ledger, and a second run
  gives every record the same sequence again (sequences come from ids and ``created``).

``jobs=0`` (the default) is 2 for a file of at least :data:`AUTO_MIN_LINES` lines, where a
process pays for its start-up, else 1: the in-process reader.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from pathlib import Path
from typing import Final

from pcf_exchange.contracts.errors import InfrastructureError, Violation
from pcf_exchange.contracts.pcr import PcrOutcome
from pcf_exchange.contracts.pcr import check_footprint as pcr_check
from pcf_exchange.producers._fastpath import PactFootprint
from pcf_exchange.producers._input import (
    MAX_JSON_BYTES,
    Item,
    Kind,
    _fast_lane,
    _unreadable,
    jsonl_item,
    load_items,
)
from pcf_exchange.producers._pcr import pcr_gate

__all__ = [
    "AUTO_MIN_LINES",
    "CHUNK_LINES",
    "check_chunk",
    "jobs_for",
    "load_items_jobs",
    "read_footprints_jsonl_parallel",
]

AUTO_MIN_LINES: Final = 5_000
"""``jobs=0`` starts a checking process for a file of at least this many lines."""
CHUNK_LINES: Final = 2_000
"""Lines a checking process takes at a time."""

Line = tuple[int, int, bytes]
"""(1-based line number, record index, the line's bytes)."""


def jobs_for(path: Path, jobs: int) -> int:
    """The processes to read *path* with: *jobs*, or for ``0`` 2 when the file has at least
    :data:`AUTO_MIN_LINES` lines (counted up to there), else 1."""
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0 (got {jobs})")
    if jobs > 0:
        return jobs
    lines = 0
    try:
        with open(path, "rb") as handle:
            while lines < AUTO_MIN_LINES:
                block = handle.read(1 << 20)
                if not block:
                    break
                lines += block.count(b"\n")
    except OSError:
        return 1  # the in-process reader reports it
    return 2 if lines >= AUTO_MIN_LINES else 1


def _start(strict: bool) -> None:
    """A checking process's start: Ctrl-C is the publishing process's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _SETTINGS["strict"] = strict
    # As the publisher pauses it (Publisher.publish_many): checking allocates many short-lived,
    # acyclic objects, and the collector's passes over them cost ~20 µs per line. What the
    # imports made is frozen out of the way; _run collects once per chunk.
    gc.freeze()
    gc.disable()


def _started() -> None:
    """Nothing: done once a checking process is up and its checks imported."""


def _run(
    check: Callable[[str, list[Line]], Sequence[Item | Compact]], name: str, lines: list[Line]
) -> Sequence[Item | Compact]:
    """One chunk in a checking process: *check*, then the chunk's cyclic garbage collected."""
    try:
        return check(name, lines)
    finally:
        gc.collect()


_SETTINGS: Final[dict[str, bool]] = {"strict": False}
"""The PCR setting (``--strict``) of the run this checking process serves, set at its start."""

_PASSED: Final = (PcrOutcome.PASSED, PcrOutcome.NOT_APPLICABLE)


def check_chunk(name: str, lines: list[Line], strict: bool | None = None) -> list[Item | Compact]:
    """What a checking process returns for *lines* of the file *name*: each line's item with the
    PCR gate's verdict (:attr:`Item.pcr`), a fast-lane footprint that passed the gate as its
    :data:`Compact` tuple (what crosses between processes; :func:`_expand` makes its item)."""
    strict = _SETTINGS["strict"] if strict is None else strict
    out: list[Item | Compact] = []
    for number, index, raw in lines:
        fast = _fast_lane(raw) if len(raw) <= MAX_JSON_BYTES else None
        if fast is not None:
            # (the gate's own test, without an item: most records pass it)
            if pcr_check(fast.payload).outcome in _PASSED:
                out.append(
                    (number, index, fast.canonical, fast.id, fast.created, fast.status,
                     fast.company_ids, fast.product_ids)
                )  # fmt: skip
                continue
            item = Item(fast, f"{name}:{number}", name, index, number)  # as jsonl_item makes it
        else:
            item = jsonl_item(name, number, index, raw)
        if item.record is not None:
            gated = pcr_gate(item, strict=strict)
            verdict: tuple[Violation, ...] = ()
            if isinstance(gated, list):
                verdict = tuple(gated)
            else:
                item = gated
            # (the item was made just now, here, and is not shared yet: set in place, as its
            # constructor does, instead of building it a second time)
            object.__setattr__(item, "pcr", verdict)
        out.append(item)
    return out


Compact = tuple[int, int, bytes, str, datetime, str, tuple[str, ...], tuple[str, ...]]
"""A fast-lane footprint that passed the PCR gate, between processes: (line, index, canonical,
id, created, status, company ids, product ids); pickled in C, ~5 µs per line less than the
:class:`Item`, and made without one."""


def _expand(name: str, sent: Sequence[Item | Compact]) -> list[Item]:
    items = []
    for one in sent:
        if type(one) is tuple:
            line, index, canonical, id_, created, status, companies, products = one
            fast = PactFootprint(id_, created, status, companies, products, canonical)
            items.append(Item(fast, f"{name}:{line}", name, index, line, pcr=()))
        else:
            assert isinstance(one, Item)
            items.append(one)
    return items


def _lines(handle: Iterator[bytes]) -> Iterator[Line]:
    """The non-blank lines of *handle*, numbered from 1, with their record index."""
    index = 0
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        yield (number, index, raw)
        index += 1


def _take(lines: Iterator[Line], size: int) -> list[Line]:
    """The next *size* lines (fewer at the end of the file; none after it)."""
    return list(itertools.islice(lines, size))


def _chunks(handle: Iterator[bytes], size: int) -> Iterator[list[Line]]:
    lines = _lines(handle)
    while chunk := _take(lines, size):
        yield chunk


def _failed(name: str, lines: list[Line], exc: BaseException) -> InfrastructureError:
    where = f"{name}:{lines[0][0]}-{lines[-1][0]}" if lines else name
    if isinstance(exc, BrokenProcessPool):
        cause = "the checking process ended abruptly"
    else:
        cause = f"checking raised {type(exc).__name__}: {exc}"
    return InfrastructureError(
        f"{cause} while checking {where}; publishing stopped there (the records acknowledged "
        "before are in the ledger)",
        hint="Run again with --jobs 1 to check in this process (records already acknowledged "
        "keep their sequences and are not sent twice).",
    )


class _Here(Future[Sequence[Item | Compact]]):
    """A slice checked in the publishing process, queued among the checking processes' chunks
    (already done)."""

    def __init__(self, items: Sequence[Item | Compact]) -> None:
        super().__init__()
        self.set_result(items)


_HERE_KEPT: Final = 20
"""At most this many slices checked here wait behind a chunk of a checking process (a slow or
stuck process makes this one wait for it rather than read the file ahead into memory)."""


def read_footprints_jsonl_parallel(
    path: Path,
    *,
    jobs: int,
    strict: bool,
    chunk_lines: int = CHUNK_LINES,
    check: Callable[[str, list[Line]], Sequence[Item | Compact]] = check_chunk,
    start_here: bool = True,
    share: bool = True,
) -> Iterator[Item]:
    """The items :func:`~producers._input.read_footprints_jsonl` gives for *path*, read and
    checked (PCR gate included, with *strict*) by ``jobs - 1`` other processes, in input order.

    *check* is what a checking process runs per chunk (a module-level function: the tests
    give one that fails); *start_here*: this process checks the chunks read while the first
    checking process starts; *share*: and then, whenever the oldest chunk in flight is not
    back yet, a slice of the next lines (a tenth of a chunk) instead of waiting, so that the
    processes share the checking as their other work allows (the tests turn both off to have
    every chunk checked there).
    The checking processes are spawned, so a program that calls this
    guards its main module (``if __name__ == "__main__":``) as :mod:`multiprocessing` asks.
    Raises :class:`~contracts.errors.InfrastructureError` if a checking process fails."""
    if jobs < 2:
        raise ValueError(f"jobs must be >= 2 to check in other processes (got {jobs})")
    name = str(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in finally, generator-scoped
    except OSError as exc:
        yield from _unreadable(name, "unreadable", f"cannot be read: {exc.strerror or exc}")
        return
    workers = jobs - 1
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start,
        initargs=(strict,),
    )
    pending: deque[tuple[list[Line], Future[Sequence[Item | Compact]]]] = deque()

    def ready() -> list[Item]:
        lines, future = pending.popleft()
        try:
            sent = future.result()
        except Exception as exc:
            raise _failed(name, lines, exc) from exc
        return _expand(name, sent)

    def remote() -> int:
        return sum(1 for _, future in pending if not isinstance(future, _Here))

    slice_lines = max(1, chunk_lines // 10)
    unreadable: OSError | None = None
    try:
        try:
            started = pool.submit(_started)  # spawning: ~0.8 s of imports in the new process
            lines = _lines(handle)
            exhausted = False
            while True:
                while not exhausted and remote() < 2 * workers:  # keep the processes fed
                    chunk = _take(lines, chunk_lines)
                    if not chunk:
                        exhausted = True
                    elif start_here and not pending and not started.done():  # meanwhile, here
                        yield from _expand(name, check_chunk(name, chunk, strict))
                    else:
                        pending.append((chunk, pool.submit(_run, check, name, chunk)))
                if not pending:
                    break
                behind = not pending[0][1].done() and len(pending) - remote() < _HERE_KEPT
                if share and behind and not exhausted:
                    # the checking processes are behind: a slice checked here (in its place
                    # in the order) instead of waiting for them
                    piece = _take(lines, slice_lines)
                    if piece:
                        pending.append((piece, _Here(check_chunk(name, piece, strict))))
                    else:
                        exhausted = True
                    continue
                yield from ready()
        except OSError as exc:  # a read error: the lines before it are still published
            unreadable = exc
        except BrokenProcessPool as exc:  # submit to a pool whose process died
            raise _failed(name, pending[0][0] if pending else [], exc) from exc
        while pending:
            yield from ready()
        if unreadable is not None:
            reason = unreadable.strerror or unreadable
            yield from _unreadable(name, "unreadable", f"cannot be read: {reason}")
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        handle.close()


def load_items_jobs(
    kind: Kind, path: Path, *, jobs: int = 0, strict: bool = False
) -> Iterator[Item]:
    """:func:`~producers._input.load_items`, with a JSON Lines footprint file read and checked
    by other processes when :func:`jobs_for` gives 2 or more (*strict*: the PCR setting the
    publisher is made with, ``--strict``)."""
    if kind == "footprints" and path.suffix.lower() in (".jsonl", ".ndjson"):
        processes = jobs_for(path, jobs)
        if processes >= 2:
            yield from read_footprints_jsonl_parallel(path, jobs=processes, strict=strict)
            return
    yield from load_items(kind, path)
