"""Core objects ↔ the Avro datums of the gateway's topics (lossless both ways, pure).

A round trip must give back an object that hashes and verifies the same: the tests pin
``entry_from_datum(entry_to_datum(e)).compute_hash() == e.entry_hash`` for every entry kind.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pcf_exchange.gateway._approvals import Approval, ApprovalState
from pcf_exchange.gateway._sealing import SealedMessage
from pcf_exchange.gateway.audit import AuditEntry, Checkpoint
from pcf_exchange.gateway.policy import RecordRef

__all__ = [
    "HeldSource",
    "approval_from_request",
    "checkpoint_from_datum",
    "checkpoint_to_datum",
    "decided_event",
    "entry_from_datum",
    "entry_to_datum",
    "refused_event",
    "requested_event",
    "resolved_event",
    "seal_to_datum",
    "sealed_from_datum",
    "sealed_to_datum",
]


# -- outbound


def sealed_to_datum(message: SealedMessage) -> dict[str, Any]:
    return {
        "version": message.version,
        "suite": message.suite,
        "messageId": message.message_id,
        "recipientId": message.recipient_id,
        "contentType": message.content_type,
        "keyId": message.key_id,
        "signature": message.signature,
        "ciphertext": message.ciphertext,
        "proof": message.proof,
    }


def sealed_from_datum(datum: Mapping[str, Any]) -> SealedMessage:
    return SealedMessage(
        message_id=datum["messageId"],
        recipient_id=datum["recipientId"],
        content_type=datum["contentType"],
        key_id=datum["keyId"],
        signature=bytes(datum["signature"]),
        ciphertext=bytes(datum["ciphertext"]),
        suite=datum["suite"],
        version=int(datum["version"]),
        proof=None if datum.get("proof") is None else bytes(datum["proof"]),
    )


# -- audit


def entry_to_datum(entry: AuditEntry, log_id: str) -> dict[str, Any]:
    datum = entry.to_json()
    datum["logId"] = log_id
    datum["seal"] = seal_to_datum(entry)
    return datum


def seal_to_datum(entry: AuditEntry) -> dict[str, Any] | None:
    """The Avro ``seal`` member of *entry* (``None`` when the entry carries no batch seal)."""
    if entry.seal is None:
        return None
    return {"keyId": entry.seal.key_id, "signature": entry.seal.signature}


def entry_from_datum(datum: Mapping[str, Any]) -> tuple[str, AuditEntry]:
    """``(log id, entry)``; shape errors are :class:`TrustError` (``malformed``)."""
    return str(datum.get("logId", "")), AuditEntry.from_json(datum)


def checkpoint_to_datum(checkpoint: Checkpoint) -> dict[str, Any]:
    return {**checkpoint.body(), "signature": checkpoint.signature}


def checkpoint_from_datum(datum: Mapping[str, Any]) -> Checkpoint:
    data = dict(datum)
    data["signature"] = base64.b64encode(bytes(datum["signature"])).decode()
    return Checkpoint.from_json(data)


# -- approvals


@dataclass(frozen=True)
class HeldSource:
    """Where the held record is: the audit chain it belongs to and the input message."""

    log_id: str
    topic: str
    partition: int
    offset: int
    product_id: str | None = None


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def requested_event(approval: Approval, source: HeldSource, *, at: str) -> dict[str, Any]:
    return {
        "approvalId": approval.approval_id,
        "event": "requested",
        "at": at,
        "request": {
            "decisionId": approval.decision_id,
            "holdFingerprint": approval.hold_fingerprint,
            "recordPfId": approval.record_ref.pf_id,
            "recordSha256": approval.record_ref.sha256,
            "recipientId": approval.recipient_id,
            "purpose": approval.purpose,
            "policyVersion": approval.policy_version,
            "held": [{"path": p, "rule": r} for p, r in approval.held],
            "reasons": list(approval.reasons),
            "requestedBy": approval.requested_by,
            "requestedAt": _iso(approval.requested_at),
            "expiresAt": _iso(approval.expires_at),
            "logId": source.log_id,
            "productId": source.product_id,
            "sourceTopic": source.topic,
            "sourcePartition": source.partition,
            "sourceOffset": source.offset,
        },
        "decision": None,
        "resolution": None,
    }


def approval_from_request(datum: Mapping[str, Any]) -> tuple[Approval, HeldSource]:
    """The pending core :class:`Approval` and the held record's coordinates."""
    r = datum["request"]
    approval = Approval(
        approval_id=datum["approvalId"],
        decision_id=r["decisionId"],
        hold_fingerprint=r["holdFingerprint"],
        record_ref=RecordRef(pf_id=r["recordPfId"], sha256=r["recordSha256"]),
        recipient_id=r["recipientId"],
        purpose=r["purpose"],
        policy_version=r["policyVersion"],
        held=tuple((h["path"], h["rule"]) for h in r["held"]),
        reasons=tuple(r["reasons"]),
        requested_by=r["requestedBy"],
        requested_at=datetime.fromisoformat(r["requestedAt"]),
        expires_at=datetime.fromisoformat(r["expiresAt"]),
    )
    source = HeldSource(
        log_id=r["logId"],
        topic=r["sourceTopic"],
        partition=int(r["sourcePartition"]),
        offset=int(r["sourceOffset"]),
        product_id=r["productId"],
    )
    return approval, source


_UNSIGNED: dict[str, Any] = {
    "signerId": None,
    "keyId": None,
    "signature": None,
    "requestDigest": None,
}


def decided_event(
    approval: Approval, *, at: str, signed: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The officer's decision (``approval`` already moved to approved or denied by the core).

    *signed*: the ``decision`` datum :func:`gateway._decision_signing.sign_decision` made (the
    officer's signature). Without it the event is unsigned, and the gateway refuses it."""
    if approval.state not in (ApprovalState.APPROVED, ApprovalState.DENIED):
        raise ValueError(f"approval {approval.approval_id} is {approval.state.value}")
    assert approval.approver is not None and approval.reason is not None
    decision = (
        dict(signed)
        if signed is not None
        else {
            "state": approval.state.value,
            "approver": approval.approver,
            "reason": approval.reason,
            "mechanismRef": approval.mechanism_ref,
            "conditions": list(approval.conditions),
            **_UNSIGNED,
        }
    )
    return {
        "approvalId": approval.approval_id,
        "event": "decided",
        "at": at,
        "request": None,
        "decision": decision,
        "resolution": None,
    }


def refused_event(
    approval_id: str, *, log_id: str, entry_seq: int, at: str, decision_offset: int, detail: str
) -> dict[str, Any]:
    """The gateway refused (and audited, entry *entry_seq* of *log_id*) the ``decided`` event at
    *decision_offset*; the approval stays open."""
    return {
        "approvalId": approval_id,
        "event": "refused",
        "at": at,
        "request": None,
        "decision": None,
        "resolution": {
            "outcome": "refused",
            "logId": log_id,
            "entrySeq": entry_seq,
            "messageId": None,
            "detail": detail,
            "decisionOffset": decision_offset,
        },
    }


def resolved_event(
    approval_id: str,
    *,
    outcome: str,
    log_id: str,
    entry_seq: int,
    at: str,
    message_id: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    return {
        "approvalId": approval_id,
        "event": "resolved",
        "at": at,
        "request": None,
        "decision": None,
        "resolution": {
            "outcome": outcome,
            "logId": log_id,
            "entrySeq": entry_seq,
            "messageId": message_id,
            "detail": detail,
            "decisionOffset": None,
        },
    }
