"""A compliance officer's decision on a held transfer, written to ``pcf.approvals``.

:func:`write_decision` is what ``pcfx approvals approve|deny`` runs: it reads the approvals
topic into an :class:`~gateway.runtime.ApprovalBook`, finds the approval (its id, or a unique
prefix of it), refuses one that is no longer pending, decides it with the pure core
(:func:`gateway._approvals.approve` / ``deny``), signs the decision with the officer's key
(:func:`gateway._decision_signing.sign_decision`) and produces one ``ApprovalEvent``. The
gateway's runner checks the officer key's registration before it acts on the decision; nothing
here releases or audits a transfer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.errors import BrokerError
from gateway._approvals import approve, deny
from gateway._decision_signing import sign_decision
from gateway._errors import ApprovalStateError
from gateway.runtime._approvals_log import ApprovalBook, ApprovalRow, RowStatus
from gateway.runtime._avro import GatewaySerde
from gateway.runtime._codec import decided_event
from gateway.runtime._kafka import partition_count, producer_config, read_to_end
from gateway.runtime._topics import Topics

__all__ = ["DecisionWritten", "find_approval", "read_approvals", "write_decision"]


@dataclass(frozen=True)
class DecisionWritten:
    """What was written: the full approval id, the verdict, who signed it and when."""

    approval_id: str
    approved: bool
    approver: str
    key_id: str
    at: str


def read_approvals(servers: str, topics: Topics, serde: GatewaySerde) -> ApprovalBook:
    """The approvals topic read to its end, folded into an :class:`ApprovalBook`."""
    book = ApprovalBook()
    parts = [(topics.approvals, p) for p in range(partition_count(servers, topics.approvals))]
    for message in read_to_end(servers, parts):
        book.apply(serde.decode(message.value() or b"", "ApprovalEvent"), offset=message.offset())
    return book


def find_approval(book: ApprovalBook, approval_id: str, topic: str) -> ApprovalRow:
    """The approval *approval_id* names, or the one approval whose id starts with it; an
    :class:`~gateway._errors.ApprovalStateError` naming the count when none or several do."""
    row = book.rows.get(approval_id)
    if row is not None:
        return row
    found = [r for aid, r in book.rows.items() if approval_id and aid.startswith(approval_id)]
    if len(found) == 1:
        return found[0]
    raise ApprovalStateError(
        f"approval id {approval_id!r} must name one approval on {topic} (got"
        f" {'no match' if not found else f'{len(found)} matches'})",
        hint="Copy the id (or a longer prefix of it) from 'pcfx approvals list'.",
    )


def write_decision(
    servers: str,
    topics: Topics,
    serde: GatewaySerde,
    approval_id: str,
    *,
    approved: bool,
    private_key: Ed25519PrivateKey,
    officer: str,
    key_id: str,
    reason: str,
    now: datetime,
    mechanism_ref: str | None = None,
    conditions: Sequence[str] = (),
) -> DecisionWritten:
    """Decide the pending approval *approval_id* (or unique prefix) and write it, signed.

    Raises :class:`~gateway._errors.ApprovalStateError` for an unknown, ambiguous or no
    longer pending approval, :class:`~contracts.errors.BrokerError` when the broker does not
    acknowledge the event."""
    from confluent_kafka import KafkaException, Producer

    row = find_approval(read_approvals(servers, topics, serde), approval_id, topics.approvals)
    approval_id = row.approval.approval_id
    status = row.status(now)
    verb = "approved" if approved else "denied"
    if status is not RowStatus.PENDING:
        raise ApprovalStateError(
            f"approval {approval_id} is {status.value}; only a pending one can be {verb}"
        )
    if approved:
        decided = approve(
            row.approval,
            approver=officer,
            reason=reason,
            now=now,
            mechanism_ref=mechanism_ref,
            conditions=tuple(conditions),
        )
    else:
        decided = deny(row.approval, approver=officer, reason=reason, now=now)
    at = now.isoformat()
    signed = sign_decision(
        decided, row.approval, private_key=private_key, signer_id=officer, key_id=key_id, at=at
    )
    value = serde.encode(
        topics.approvals, "ApprovalEvent", decided_event(decided, at=at, signed=signed)
    )
    producer = Producer(producer_config(servers))
    try:
        producer.produce(topics.approvals, key=approval_id.encode(), value=value)
        if producer.flush(30) != 0:
            raise BrokerError(f"the decision on {approval_id} was not acknowledged by the broker")
    except KafkaException as exc:
        raise BrokerError(f"cannot write the decision on {approval_id}: {exc}") from exc
    return DecisionWritten(approval_id, approved, officer, key_id, at)
