"""The API's one data seam: :class:`FootprintSource` answers, per recipient, which footprints the
gateway released to it. :class:`InMemoryFootprintSource` is the per-recipient view in memory:
the pure tests fill it directly, and :class:`gateway.api._kafka.KafkaReleaseSource` (what
``pcfx api serve`` uses) fills it from the gateway's releases on Kafka. There is no folder
source: nothing reaches the API except what the gateway released.

A page of ListFootprints is read from a per-recipient index kept in the listing order
(``created``, then ``id``): a release moves one entry (bisect), and a page is the next *size*
matching entries after the cursor's key, so an unfiltered page costs O(size + log n) however
many footprints a recipient holds (scanning and sorting every footprint per page cost 13 ms at
2 000 footprints, and grew with them). :func:`page_of` is the same answer for a source that
keeps no index.
"""

from __future__ import annotations

import heapq
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol, runtime_checkable

from pcf_exchange.contracts.errors import ContractError
from pcf_exchange.gateway.api._query import Footprint, FootprintQuery, SortKey, sort_key

__all__ = ["FootprintSource", "InMemoryFootprintSource", "Page", "page_of"]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ListFootprints: the footprints with their listing keys, in listing order,
    and whether more matching footprints follow."""

    entries: tuple[tuple[SortKey, Footprint], ...]
    more: bool

    @property
    def footprints(self) -> list[Footprint]:
        return [footprint for _, footprint in self.entries]


@runtime_checkable
class FootprintSource(Protocol):
    """Where the API reads the footprints released to each recipient.

    Both calls receive the recipient id from the verified access token, never from the request.
    Payloads are PACT v3 ``ProductFootprint`` JSON objects exactly as this recipient may see
    them (policy and transforms already applied); the API does not change them.
    """

    async def list_for(self, recipient_id: str, query: FootprintQuery) -> Sequence[Footprint]:
        """The footprints released to *recipient_id* that match *query*.

        Returning a superset is allowed (the API applies ``query.matches`` again); order does
        not matter (the API sorts by ``created``, ``id``).
        """
        ...

    async def page_for(
        self, recipient_id: str, query: FootprintQuery, after: SortKey | None, size: int
    ) -> Page:
        """The first *size* footprints released to *recipient_id* that match *query*, after
        the listing key *after* (``None``: from the start), in listing order (:func:`page_of`
        answers it from :meth:`list_for` for a source that keeps no index)."""
        ...

    async def get_for(self, recipient_id: str, pf_id: str) -> Footprint | None:
        """The footprint *pf_id* as released to *recipient_id*, or ``None`` if there is none.

        A footprint released only to other recipients is ``None`` too: the API answers 404
        for it exactly as for an unknown id, so a client cannot learn that it exists (a source
        that raises :class:`~contracts.errors.PolicyDenied` is answered the same way).
        """
        ...


def _norm_id(pf_id: str) -> str:
    return pf_id.strip().lower()


def page_of(
    found: Iterable[Footprint], query: FootprintQuery, after: SortKey | None, size: int
) -> Page:
    """The page :meth:`FootprintSource.page_for` answers, from an unordered iterable of
    footprints (one per id kept, the last): O(n log size), no full sort."""
    unique: dict[str, Footprint] = {}
    for footprint in found:
        if query.matches(footprint):
            unique[_norm_id(str(footprint.get("id", "")))] = footprint
    keyed: Iterable[tuple[SortKey, Footprint]] = ((sort_key(fp), fp) for fp in unique.values())
    if after is not None:
        keyed = (pair for pair in keyed if pair[0] > after)
    smallest = heapq.nsmallest(size + 1, keyed, key=itemgetter(0))
    return Page(tuple(smallest[:size]), len(smallest) > size)


@dataclass(slots=True)
class _Shelf:
    """One recipient's released footprints: by id, and their listing keys in order."""

    by_id: dict[str, Footprint] = field(default_factory=dict)
    key_of: dict[str, SortKey] = field(default_factory=dict)
    order: list[tuple[SortKey, str]] = field(default_factory=list)

    def put(self, pf_id: str, footprint: Footprint) -> None:
        self.remove(pf_id)
        key = sort_key(footprint)
        self.by_id[pf_id] = footprint
        self.key_of[pf_id] = key
        insort(self.order, (key, pf_id))

    def remove(self, pf_id: str) -> bool:
        key = self.key_of.pop(pf_id, None)
        if key is None:
            return False
        del self.order[bisect_left(self.order, (key, pf_id))]
        del self.by_id[pf_id]
        return True

    def page(self, query: FootprintQuery, after: SortKey | None, size: int) -> Page:
        start = 0 if after is None else bisect_right(self.order, after, key=itemgetter(0))
        found: list[tuple[SortKey, Footprint]] = []
        for index in range(start, len(self.order)):
            key, pf_id = self.order[index]
            footprint = self.by_id[pf_id]
            if query.matches(footprint):
                found.append((key, footprint))
                if len(found) > size:
                    break
        return Page(tuple(found[:size]), len(found) > size)


class InMemoryFootprintSource:
    """Footprints released per recipient, held in memory; safe to update from another thread.

    >>> import asyncio
    >>> source = InMemoryFootprintSource({"acme": [{"id": "A1", "status": "Active"}]})
    >>> [fp["id"] for fp in asyncio.run(source.list_for("acme", FootprintQuery()))]
    ['A1']
    >>> asyncio.run(source.get_for("other", "a1")) is None
    True
    """

    def __init__(self, released: Mapping[str, Iterable[Footprint]] | None = None) -> None:
        self._lock = threading.Lock()
        self._by_recipient: dict[str, _Shelf] = {}
        for recipient_id, footprints in (released or {}).items():
            for footprint in footprints:
                self.release(recipient_id, footprint)

    def release(self, recipient_id: str, footprint: Footprint) -> None:
        """Make *footprint* (as this recipient may see it) available to *recipient_id*.

        Releasing the same id again replaces it (v3 allows only ``status`` → ``Deprecated``).
        """
        pf_id = footprint.get("id")
        if not isinstance(pf_id, str) or not pf_id:
            raise ContractError(f"'id' must be a non-empty string (got {pf_id!r})")
        with self._lock:
            self._by_recipient.setdefault(recipient_id, _Shelf()).put(_norm_id(pf_id), footprint)

    def withdraw(self, recipient_id: str, pf_id: str) -> bool:
        """Stop serving *pf_id* to *recipient_id*; ``True`` if it was released."""
        with self._lock:
            shelf = self._by_recipient.get(recipient_id)
            return shelf is not None and shelf.remove(_norm_id(pf_id))

    def recipients(self) -> list[str]:
        with self._lock:
            return sorted(self._by_recipient)

    async def list_for(self, recipient_id: str, query: FootprintQuery) -> Sequence[Footprint]:
        with self._lock:
            shelf = self._by_recipient.get(recipient_id)
            footprints = list(shelf.by_id.values()) if shelf else []
        return [fp for fp in footprints if query.matches(fp)]

    async def page_for(
        self, recipient_id: str, query: FootprintQuery, after: SortKey | None, size: int
    ) -> Page:
        with self._lock:
            shelf = self._by_recipient.get(recipient_id)
            return shelf.page(query, after, size) if shelf else Page((), False)

    async def get_for(self, recipient_id: str, pf_id: str) -> Footprint | None:
        with self._lock:
            shelf = self._by_recipient.get(recipient_id)
            return shelf.by_id.get(_norm_id(pf_id)) if shelf else None
