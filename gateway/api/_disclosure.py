"""The API's hook into the audit log: before any footprint leaves through the API, a
:class:`Disclosure` (who, which ids and the digests of what is sent, by which action) is handed
to a :class:`DisclosureRecorder`. If recording fails, nothing is sent (no audit record, no
transfer): the API answers 503. ``pcfx api serve`` records on Kafka
(:class:`gateway.api._kafka.KafkaDisclosureRecorder`: one audit entry per footprint served).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.gateway.api._auth import Client
from pcf_exchange.gateway.api._query import Footprint

__all__ = ["DEFAULT_AUDIT_LOG", "Disclosure", "DisclosureRecorder"]

DEFAULT_AUDIT_LOG = "pcfx-api"
"""Log id of the API's disclosure chain on ``pcf.audit`` (``pcfx api serve --audit-log``)."""


@dataclass(frozen=True, slots=True)
class Disclosure:
    """Footprints about to be sent to one client, and through which PACT action."""

    client_id: str
    recipient_id: str
    action: str
    """``ListFootprints``, ``GetFootprint`` or ``RequestFulfilledEvent``."""
    pf_ids: tuple[str, ...]
    request_id: str | None = None
    """The ``RequestCreatedEvent`` id being answered, for ``RequestFulfilledEvent``."""
    digests: tuple[str, ...] = ()
    """SHA-256 of the canonical JSON of each footprint as sent (same order as ``pf_ids``)."""

    @classmethod
    def of(
        cls,
        client: Client,
        action: str,
        footprints: Iterable[Footprint],
        *,
        request_id: str | None = None,
    ) -> Disclosure:
        sent = list(footprints)
        ids = tuple(str(fp.get("id")) for fp in sent)
        digests = tuple(hashlib.sha256(canonical_json(dict(fp))).hexdigest() for fp in sent)
        return cls(client.client_id, client.recipient_id, action, ids, request_id, digests)


class DisclosureRecorder(Protocol):
    """Records a disclosure durably before it happens; raise (a ``PcfError``) to stop it."""

    async def record(self, disclosure: Disclosure) -> None: ...
