"""Audit entries for what the gateway refused to trust: a ``pcf.products`` record that is not a
verified hand-off of the streams, and an approval decision that is not a registered officer's.

Both are evidence (ARCHITECTURE decision 8): the refusal is chained in the audit log like any
decision, naming the reason code (``unsigned``, ``unknown_key``, ``wrong_role``,
``bad_signature``, ``revoked_key``, ...), where the record was, and who the record *claims*
signed it. Pure: entries and chain heads in and out, no I/O.

``reasons`` holds ``"<code>|<where>|<claimed signer/key id>"`` (the ``code|path|rule`` shape of
policy reasons) and then ``"detail: <message>"``.
"""

from __future__ import annotations

from datetime import datetime

from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway._approvals import Approval
from pcf_exchange.gateway.audit._entry import (
    AuditEntry,
    ChainHead,
    EntryKind,
    chain_new_entry,
    format_time,
)

__all__ = ["refused_decision_entry", "untrusted_record_entry"]


def _claimed(signer: str | None, key_id: str | None) -> str:
    return f"{signer or ''}/{key_id or ''}" if signer or key_id else ""


def untrusted_record_entry(
    head: ChainHead,
    error: TrustError,
    *,
    where: str,
    record_sha256: str,
    pf_id: str | None,
    signer: str | None,
    key_id: str | None,
    now: datetime,
) -> tuple[AuditEntry, ChainHead]:
    """A ``transfer_blocked`` entry for a record released to nobody because it is untrusted."""
    return chain_new_entry(
        head,
        {
            "kind": EntryKind.TRANSFER_BLOCKED.value,
            "recorded_at": format_time(now),
            "record_pf_id": pf_id,
            "record_sha256": record_sha256,
            "outcome": "blocked",
            "reasons": (
                f"{error.reason}|{where}|{_claimed(signer, key_id)}",
                f"detail: {error.message}",
            ),
        },
    )


def refused_decision_entry(
    head: ChainHead,
    approval: Approval,
    error: TrustError,
    *,
    where: str,
    signer: str | None,
    key_id: str | None,
    now: datetime,
) -> tuple[AuditEntry, ChainHead]:
    """An ``approval_refused`` entry: a decision on *approval* the gateway did not act on (the
    approver is left empty: nobody trusted decided)."""
    return chain_new_entry(
        head,
        {
            "kind": EntryKind.APPROVAL_REFUSED.value,
            "recorded_at": format_time(now),
            "decision_id": approval.decision_id,
            "record_pf_id": approval.record_ref.pf_id,
            "record_sha256": approval.record_ref.sha256,
            "recipient_id": approval.recipient_id,
            "purpose": approval.purpose,
            "outcome": "refused",
            "policy_version": approval.policy_version,
            "reasons": (
                f"{error.reason}|{where}|{_claimed(signer, key_id)}",
                f"detail: {error.message}",
            ),
            "approval_id": approval.approval_id,
        },
    )
