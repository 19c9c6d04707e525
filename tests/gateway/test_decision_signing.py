"""Approval decisions signed by officer keys (gateway._decision_signing): each attack on a
decision named by the reason the gateway refuses it with; the officer's own decision passes with
the key's registered owner as the approver."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pcf_exchange.contracts import Keyring, SignerRole
from pcf_exchange.gateway._approvals import Approval, ApprovalState, approve, deny
from pcf_exchange.gateway._decision_signing import check_decision, sign_decision
from pcf_exchange.gateway.policy import RecordRef
from tests.gateway._factories import NOW
from tests.gateway._trust import COMPANY, OFFICER, Trust

AT = (NOW + timedelta(minutes=5)).isoformat()


def _pending(approval_id: str = "a-1") -> Approval:
    return Approval(
        approval_id=approval_id,
        decision_id="d-1",
        hold_fingerprint="f" * 64,
        record_ref=RecordRef(pf_id="pf-1", sha256="0" * 64),
        recipient_id="eu-notified-body-fr",
        purpose="battery-regulation-art7",
        policy_version="1",
        held=(("lineage.facility.address", "D01"),),
        reasons=(),
        requested_by="pcfx-gateway",
        requested_at=NOW,
        expires_at=NOW + timedelta(days=7),
    )


@pytest.fixture
def trust(tmp_path: Path) -> Trust:
    return Trust(tmp_path / "keys")


@pytest.fixture
def keyring(trust: Trust) -> Keyring:
    ring = Keyring(trust.operator_keys)
    ring.apply(trust.registration(OFFICER, SignerRole.OFFICER))
    ring.apply(trust.registration(COMPANY, SignerRole.COMPANY))
    return ring


def _signed(trust: Trust, owner: str, *, requested: Approval | None = None, as_: str = "") -> Any:
    pending = requested or _pending()
    decided = approve(pending, approver="ignored", reason="contract SC-1", now=NOW)
    party = trust.party(owner)
    return sign_decision(
        decided,
        pending,
        private_key=party.private_key,
        signer_id=as_ or owner,
        key_id=party.key_id,
        at=AT,
    )


def _reason(keyring: Keyring, verdict: Any, pending: Approval | None = None) -> str | None:
    check = check_decision(keyring, pending or _pending(), verdict, at=AT, appended_at=NOW)
    return None if check.error is None else check.error.reason


def test_the_officers_signed_decision_counts_with_the_registered_owner_as_approver(
    trust: Trust, keyring: Keyring
) -> None:
    check = check_decision(keyring, _pending(), _signed(trust, OFFICER), at=AT, appended_at=NOW)
    assert check.ok and check.approval is not None
    assert check.approval.state is ApprovalState.APPROVED
    assert check.approval.approver == OFFICER  # from the key, not from the "approver" text
    denial = deny(_pending(), approver="x", reason="no", now=NOW)
    party = trust.party(OFFICER)
    signed = sign_decision(
        denial, _pending(), private_key=party.private_key, signer_id=OFFICER,
        key_id=party.key_id, at=AT,
    )  # fmt: skip
    judged = check_decision(keyring, _pending(), signed, at=AT, appended_at=NOW).approval
    assert judged == replace(denial, approver=OFFICER, decided_at=datetime.fromisoformat(AT))


def test_unsigned_approval_with_a_free_text_approver(keyring: Keyring) -> None:
    verdict: dict[str, Any] = {"state": "approved", "approver": "anonymous attacker", "reason": "r",
               "mechanismRef": None, "conditions": []}  # fmt: skip
    assert _reason(keyring, verdict) == "unsigned"


def test_forged_approval_signed_by_an_unregistered_key(trust: Trust, keyring: Keyring) -> None:
    assert _reason(keyring, _signed(trust, "mallory")) == "unknown_key"
    assert _reason(keyring, _signed(trust, "mallory", as_=OFFICER)) == "unknown_key"


def test_forged_approval_signed_by_a_company_key(trust: Trust, keyring: Keyring) -> None:
    assert _reason(keyring, _signed(trust, COMPANY)) == "wrong_role"


def test_forged_approval_altered_after_signing(trust: Trust, keyring: Keyring) -> None:
    signed = _signed(trust, OFFICER)
    assert _reason(keyring, {**signed, "reason": "something else"}) == "bad_signature"
    assert _reason(keyring, {**signed, "state": "denied"}) == "bad_signature"
    # the officer's signature presented as a company's: that key has no officer role
    as_company = {**signed, "keyId": trust.party(COMPANY).key_id, "signerId": COMPANY}
    assert _reason(keyring, as_company) == "wrong_role"


def test_a_signed_approval_replayed_onto_another_request(trust: Trust, keyring: Keyring) -> None:
    signed = _signed(trust, OFFICER)
    assert _reason(keyring, signed, _pending("a-2")) == "replayed"
    # the digest claimed rewritten to the other request's: the signature no longer matches
    target = _pending("a-2")
    forged = {**signed, "requestDigest": _signed(trust, OFFICER, requested=target)["requestDigest"]}
    assert _reason(keyring, forged, target) == "bad_signature"


def test_an_approval_signed_after_the_officer_key_was_revoked(trust: Trust) -> None:
    ring = Keyring(trust.operator_keys)
    ring.apply(trust.registration(OFFICER, SignerRole.OFFICER, revoked_at=NOW - timedelta(1)))
    assert _reason(ring, _signed(trust, OFFICER)) == "revoked_key"
