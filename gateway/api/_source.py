"""The API's one data seam: :class:`FootprintSource` answers, per recipient, which footprints the
gateway released to it. :class:`InMemoryFootprintSource` is the per-recipient view in memory:
the pure tests fill it directly, and :class:`gateway.api._kafka.KafkaReleaseSource` (what
``pcfx api serve`` uses) fills it from the gateway's releases on Kafka. There is no folder
source: nothing reaches the API except what the gateway released.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from contracts.errors import ContractError
from gateway.api._query import Footprint, FootprintQuery

__all__ = ["FootprintSource", "InMemoryFootprintSource"]


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

    async def get_for(self, recipient_id: str, pf_id: str) -> Footprint | None:
        """The footprint *pf_id* as released to *recipient_id*, or ``None`` if there is none.

        A footprint released only to other recipients is ``None`` too: the API answers 404
        for it exactly as for an unknown id, so a client cannot learn that it exists (a source
        that raises :class:`~contracts.errors.PolicyDenied` is answered the same way).
        """
        ...


def _norm_id(pf_id: str) -> str:
    return pf_id.strip().lower()


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
        self._by_recipient: dict[str, dict[str, Footprint]] = {}
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
            self._by_recipient.setdefault(recipient_id, {})[_norm_id(pf_id)] = footprint

    def withdraw(self, recipient_id: str, pf_id: str) -> bool:
        """Stop serving *pf_id* to *recipient_id*; ``True`` if it was released."""
        with self._lock:
            return self._by_recipient.get(recipient_id, {}).pop(_norm_id(pf_id), None) is not None

    def recipients(self) -> list[str]:
        with self._lock:
            return sorted(self._by_recipient)

    async def list_for(self, recipient_id: str, query: FootprintQuery) -> Sequence[Footprint]:
        with self._lock:
            footprints = list(self._by_recipient.get(recipient_id, {}).values())
        return [fp for fp in footprints if query.matches(fp)]

    async def get_for(self, recipient_id: str, pf_id: str) -> Footprint | None:
        with self._lock:
            return self._by_recipient.get(recipient_id, {}).get(_norm_id(pf_id))
