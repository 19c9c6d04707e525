"""Signed approval decisions: a compliance officer's key, never a name typed on a command line.

A decision on a held transfer (``pcfx approvals approve|deny ID --key officer.key.pem``) is signed
with the officer's Ed25519 key, which the platform operator registered on ``pcf.keys`` with role
``officer``. The approver the gateway audits is the owner that registration names; free text
never decides anything.

What is signed (:func:`decision_statement`): ``pae(PAYLOAD_APPROVAL_DECISION, canonical_json({
"approvalId", "conditions", "decidedAt", "keyId", "mechanismRef", "reason", "requestDigest",
"signerId", "state"}))``. ``requestDigest`` (:func:`request_digest`) binds the decision to the
one request it answers (the held record's hash, recipient, purpose, policy version, held fields,
hold fingerprint, request time): a signed decision copied onto another request does not verify.

:func:`check_decision` judges one decision event for a pending approval, in order:

1. it carries ``signerId``, ``keyId``, ``signature`` and ``requestDigest``, else ``unsigned``;
2. its ``requestDigest`` is this request's, else ``replayed`` (a decision for another request);
3. the key is registered for that signer, else ``unknown_key``;
4. the registration has role ``officer``, else ``wrong_role`` (e.g. a company's key);
5. the key was usable when the broker appended the decision, else ``revoked_key`` /
   ``expired_key`` / ``key_not_yet_valid``;
6. the Ed25519 signature verifies over the statement rebuilt from the event, else
   ``bad_signature``;
7. the core's guards accept it (:func:`gateway._approvals.approve` / ``deny``: pending, before
   expiry, four eyes, a reason), with the registered owner as the approver, else
   ``invalid_decision``.

Pure: no Kafka. The gateway runs it when it acts on a decision, so a key registration that
arrived after the decision (another topic, no order between them) is already folded in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pcf_exchange.contracts import SignerRole
from pcf_exchange.contracts.canonical import canonical_json, pae
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.contracts.keyring import KeyRegistration, Keyring
from pcf_exchange.gateway._approvals import Approval, ApprovalState, approve, deny
from pcf_exchange.gateway._errors import ApprovalStateError

__all__ = [
    "PAYLOAD_APPROVAL_DECISION",
    "DecisionCheck",
    "check_decision",
    "decision_statement",
    "request_digest",
    "sign_decision",
]

PAYLOAD_APPROVAL_DECISION: Final = "application/vnd.pcfx.approval-decision+json"
_SIGNED_FIELDS: Final = ("signerId", "keyId", "signature", "requestDigest")


def request_digest(approval: Approval) -> str:
    """sha256 (hex) of the canonical form of the request *approval* opened (what it asks)."""
    body = {
        "approvalId": approval.approval_id,
        "decisionId": approval.decision_id,
        "expiresAt": approval.expires_at.isoformat(),
        "held": [[path, rule] for path, rule in approval.held],
        "holdFingerprint": approval.hold_fingerprint,
        "policyVersion": approval.policy_version,
        "purpose": approval.purpose,
        "recipientId": approval.recipient_id,
        "record": {"pfId": approval.record_ref.pf_id, "sha256": approval.record_ref.sha256},
        "requestedAt": approval.requested_at.isoformat(),
        "requestedBy": approval.requested_by,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def decision_statement(
    *,
    approval_id: str,
    state: str,
    reason: str,
    decided_at: str,
    request_digest: str,
    mechanism_ref: str | None,
    conditions: Sequence[str],
    signer_id: str,
    key_id: str,
) -> bytes:
    """The exact bytes an officer's signature covers (see the module docstring)."""
    body = {
        "approvalId": approval_id,
        "conditions": list(conditions),
        "decidedAt": decided_at,
        "keyId": key_id,
        "mechanismRef": mechanism_ref,
        "reason": reason,
        "requestDigest": request_digest,
        "signerId": signer_id,
        "state": state,
    }
    return pae(PAYLOAD_APPROVAL_DECISION, canonical_json(body))


def sign_decision(
    decided: Approval,
    requested: Approval,
    *,
    private_key: Ed25519PrivateKey,
    signer_id: str,
    key_id: str,
    at: str,
) -> dict[str, Any]:
    """The ``decision`` datum of a ``decided`` event for *decided* (approved or denied by the
    core, from *requested*), signed by the officer; *at* is the event's ``at``."""
    if decided.state not in (ApprovalState.APPROVED, ApprovalState.DENIED):
        raise ValueError(f"approval {decided.approval_id} is {decided.state.value}")
    assert decided.reason is not None
    digest = request_digest(requested)
    statement = decision_statement(
        approval_id=decided.approval_id,
        state=decided.state.value,
        reason=decided.reason,
        decided_at=at,
        request_digest=digest,
        mechanism_ref=decided.mechanism_ref,
        conditions=decided.conditions,
        signer_id=signer_id,
        key_id=key_id,
    )
    return {
        "state": decided.state.value,
        "approver": signer_id,
        "reason": decided.reason,
        "mechanismRef": decided.mechanism_ref,
        "conditions": list(decided.conditions),
        "signerId": signer_id,
        "keyId": key_id,
        "signature": private_key.sign(statement),
        "requestDigest": digest,
    }


@dataclass(frozen=True, slots=True)
class DecisionCheck:
    """A decision event judged: the approval it moves to (approved or denied), or why not."""

    approval: Approval | None
    error: TrustError | None = None
    signer: str | None = None
    """The signer the event names (trusted only when ``ok``)."""
    key_id: str | None = None
    registration: KeyRegistration | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __bool__(self) -> bool:
        return self.ok


def _text(verdict: Mapping[str, Any], name: str) -> str | None:
    value = verdict.get(name)
    return value if isinstance(value, str) and value else None


def check_decision(
    keyring: Keyring,
    requested: Approval,
    verdict: Mapping[str, Any],
    *,
    at: str,
    appended_at: datetime,
    what: str = "decision",
) -> DecisionCheck:
    """Judge one ``decided`` event's *verdict* for the pending *requested* approval (steps 1-7
    of the module docstring); *at* is the event's ``at``, *appended_at* the broker's append time.
    Never raises for a bad decision."""
    aid = requested.approval_id
    # (1) signed at all
    signer, key_id = _text(verdict, "signerId"), _text(verdict, "keyId")
    signature, claimed = verdict.get("signature"), _text(verdict, "requestDigest")
    if signer is None or key_id is None or not signature or claimed is None:
        missing = [n for n in _SIGNED_FIELDS if not verdict.get(n)]
        return DecisionCheck(
            None,
            TrustError(
                f"{what} on approval {aid} is unsigned: {', '.join(missing)} expected (got none;"
                f" approver given as free text: {str(verdict.get('approver'))[:80]!r})",
                reason="unsigned",
                hint="Decide with an officer key the operator registered: pcfx approvals"
                " approve|deny ID --key OFFICER.key.pem.",
            ),
            signer,
            key_id,
        )
    # (2) for this request
    expected = request_digest(requested)
    if claimed != expected:
        return DecisionCheck(
            None,
            TrustError(
                f"{what} on approval {aid}: 'requestDigest' must be {expected} (this request's)"
                f" (got {claimed[:80]}): a decision made for another request",
                reason="replayed",
                hint="Decide on this approval itself (pcfx approvals list shows its id).",
            ),
            signer,
            key_id,
        )
    # (3) a registered key, (4) an officer's, (5) usable when the broker appended it
    registration = keyring.authorize(signer, key_id, role=SignerRole.OFFICER, at=appended_at)
    if isinstance(registration, TrustError):
        return DecisionCheck(
            None,
            TrustError(
                f"{what} on approval {aid}: {registration.message}",
                reason=registration.reason,
                hint=registration.hint,
            ),
            signer,
            key_id,
        )
    # (6) the signature
    state, reason = _text(verdict, "state") or "", str(verdict.get("reason") or "")
    mechanism = verdict.get("mechanismRef")
    conditions = tuple(str(c) for c in verdict.get("conditions") or ())
    statement = decision_statement(
        approval_id=aid,
        state=state,
        reason=reason,
        decided_at=at,
        request_digest=claimed,
        mechanism_ref=mechanism if isinstance(mechanism, str) else None,
        conditions=conditions,
        signer_id=signer,
        key_id=key_id,
    )
    try:
        Ed25519PublicKey.from_public_bytes(registration.public_key).verify(
            bytes(signature), statement
        )
    except InvalidSignature:
        return DecisionCheck(
            None,
            TrustError(
                f"{what} on approval {aid}: the signature of key {key_id!r} of {signer!r} does"
                " not match the decision (its state, reason, time, conditions or request were"
                " altered, or another key signed it)",
                reason="bad_signature",
                hint="Do not trust this decision; decide again with the officer key.",
            ),
            signer,
            key_id,
        )
    # (7) the core's guards, with the registered owner as the approver
    try:
        moment = datetime.fromisoformat(at)
        if state == "approved":
            decided = approve(
                requested,
                approver=registration.owner,
                reason=reason,
                now=moment,
                mechanism_ref=mechanism if isinstance(mechanism, str) else None,
                conditions=conditions,
            )
        elif state == "denied":
            decided = deny(requested, approver=registration.owner, reason=reason, now=moment)
        else:
            raise ApprovalStateError(f"'state' must be 'approved' or 'denied' (got {state!r})")
    except (ApprovalStateError, ValueError) as exc:
        return DecisionCheck(
            None,
            TrustError(
                f"{what} on approval {aid} by {registration.owner!r} is not valid: {exc}",
                reason="invalid_decision",
            ),
            signer,
            key_id,
        )
    return DecisionCheck(decided, None, signer, key_id, registration)
