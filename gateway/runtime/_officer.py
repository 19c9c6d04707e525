"""An officer's decision on a held transfer: built, signed and written the one way.

``pcfx approvals approve|deny`` and the compliance console (``gateway.console``) both decide
through :func:`officer_decision`, so what an officer signs is the same whichever door they used:

1. the row must still be pending (not resolved, not overdue), else :class:`ApprovalStateError`;
2. the core moves the request to approved or denied (:func:`gateway._approvals.approve` /
   ``deny``: before expiry, four eyes, a reason), with the key's owner as the approver;
3. the officer's key signs the decision over the request's digest
   (:func:`gateway._decision_signing.sign_decision`);
4. the result is the ``decided`` event for ``pcf.approvals``.

The gateway later judges that event (:func:`gateway._decision_signing.check_decision`: the key
registered with role officer on ``pcf.keys``, the signature, the guards) before it releases
anything; nothing here is trusted by the gateway on its own. :func:`read_approval_book` and
:func:`publish_decision` are the Kafka edges both callers share; :func:`write_decision` is the
whole of ``pcfx approvals approve|deny`` (read the book, find the id or a unique prefix of it,
decide, sign, write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.gateway._approvals import approve, deny
from pcf_exchange.gateway._approvals_log import ApprovalBook, ApprovalRow, RowStatus
from pcf_exchange.gateway._codec import decided_event
from pcf_exchange.gateway._decision_signing import sign_decision
from pcf_exchange.gateway._errors import ApprovalStateError

__all__ = [
    "DecisionWritten",
    "OfficerKey",
    "find_row",
    "officer_decision",
    "publish_decision",
    "read_approval_book",
    "write_decision",
]


class OfficerKey(Protocol):
    """What signs a decision (``producers.keys.Signer`` is one): the key and whom it names."""

    @property
    def private_key(self) -> Ed25519PrivateKey: ...

    @property
    def owner(self) -> str: ...

    @property
    def key_id(self) -> str: ...


def officer_decision(
    row: ApprovalRow,
    *,
    approved: bool,
    officer: OfficerKey,
    reason: str,
    now: datetime,
    mechanism_ref: str | None = None,
    conditions: Sequence[str] = (),
) -> dict[str, Any]:
    """The signed ``decided`` event of *officer* on *row* (steps 1-4 of the module docstring)."""
    verb = "approved" if approved else "denied"
    approval_id = row.approval.approval_id
    # (1) still pending
    status = row.status(now)
    if status is not RowStatus.PENDING:
        raise ApprovalStateError(
            f"approval {approval_id} is {status.value}; only a pending one can be {verb}"
        )
    # (2) the core's guards, the key's owner as the approver
    if approved:
        decided = approve(
            row.approval,
            approver=officer.owner,
            reason=reason,
            now=now,
            mechanism_ref=mechanism_ref or None,
            conditions=tuple(conditions),
        )
    else:
        decided = deny(row.approval, approver=officer.owner, reason=reason, now=now)
    # (3) signed over the request it answers
    at = now.isoformat()
    signed = sign_decision(
        decided,
        row.approval,
        private_key=officer.private_key,
        signer_id=officer.owner,
        key_id=officer.key_id,
        at=at,
    )
    # (4) the event
    return decided_event(decided, at=at, signed=signed)


def find_row(book: ApprovalBook, approval_id: str, topic: str) -> ApprovalRow:
    """The approval *approval_id* names, or the one approval whose id starts with it. An id
    that names nothing, or a prefix of several (then with code ``ambiguous_id``, listing them:
    the command line's usage error, exit 2), is an :class:`ApprovalStateError`."""
    row = book.rows.get(approval_id)
    if row is not None:
        return row
    found = [r for aid, r in book.rows.items() if approval_id and aid.startswith(approval_id)]
    if len(found) == 1:
        return found[0]
    ids = sorted(r.approval.approval_id for r in found)
    error = ApprovalStateError(
        f"approval id {approval_id!r} must name one approval on {topic} (got"
        f" {'no match' if not found else f'{len(found)} matches: ' + ', '.join(ids[:5])})",
        hint="Copy the id (or a longer prefix of it) from 'pcfx approvals list'.",
    )
    if found:
        error.code = "ambiguous_id"  # a usage error, as every ambiguous id prefix is
    raise error


class _Decoder(Protocol):
    def decode(self, value: bytes, name: str) -> Mapping[str, Any]: ...


def read_approval_book(servers: str, topic: str, serde: _Decoder) -> ApprovalBook:
    """Every event on the approvals topic, folded into a book (read from the start to the end)."""
    from pcf_exchange.gateway.runtime import partition_count, read_to_end

    book = ApprovalBook()
    parts = [(topic, p) for p in range(partition_count(servers, topic))]
    for message in read_to_end(servers, parts):
        book.apply(serde.decode(message.value() or b"", "ApprovalEvent"), offset=message.offset())
    return book


def publish_decision(servers: str, topic: str, approval_id: str, value: bytes) -> None:
    """Write one encoded ``decided`` event, keyed by the approval id, and wait for the ack."""
    from confluent_kafka import KafkaException, Producer

    from pcf_exchange.contracts.errors import BrokerError
    from pcf_exchange.gateway.runtime._kafka import producer_config

    producer = Producer(producer_config(servers))
    try:
        producer.produce(topic, key=approval_id.encode(), value=value)
        if producer.flush(30) != 0:
            raise BrokerError(f"the decision on {approval_id} was not acknowledged by the broker")
    except KafkaException as exc:
        raise BrokerError(f"cannot write the decision on {approval_id}: {exc}") from exc


@dataclass(frozen=True)
class DecisionWritten:
    """What was written: the full approval id, the verdict, who signed it and when."""

    approval_id: str
    approved: bool
    approver: str
    key_id: str
    at: str


class _Serde(_Decoder, Protocol):
    def encode(self, topic: str, name: str, datum: dict[str, Any]) -> bytes: ...


def write_decision(
    servers: str,
    topic: str,
    serde: _Serde,
    approval_id: str,
    *,
    approved: bool,
    officer: OfficerKey,
    reason: str,
    now: datetime,
    mechanism_ref: str | None = None,
    conditions: Sequence[str] = (),
) -> DecisionWritten:
    """Decide the pending approval *approval_id* (or a unique prefix of it) and write it, signed.

    Raises :class:`~gateway._errors.ApprovalStateError` for an unknown, ambiguous or no longer
    pending approval, :class:`~contracts.errors.BrokerError` when the broker does not
    acknowledge the event."""
    row = find_row(read_approval_book(servers, topic, serde), approval_id, topic)
    datum = officer_decision(
        row,
        approved=approved,
        officer=officer,
        reason=reason,
        now=now,
        mechanism_ref=mechanism_ref,
        conditions=conditions,
    )
    full_id = row.approval.approval_id
    publish_decision(servers, topic, full_id, serde.encode(topic, "ApprovalEvent", datum))
    return DecisionWritten(full_id, approved, officer.owner, officer.key_id, str(datum["at"]))
