"""Signed hand-offs (contracts.handoff): one batch signature over the exact bytes, and each
attack on a pcf.products record named by the reason the verifier gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pcf_exchange.contracts import Keyring, SignerRole
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.contracts.handoff import (
    HEADER_PROOF,
    HEADER_ROOT_SIGNATURE,
    HEADER_SIGNER,
    check_handoff,
    sign_handoffs,
    verify_handoff,
)
from tests.gateway._trust import COMPANY, SERVICE, Trust

APPENDED = datetime(2026, 6, 1, tzinfo=UTC)
RECORDS = [(f"urn:p:{i}".encode(), f"value {i}".encode() * (i + 1)) for i in range(5)]


@pytest.fixture
def trust(tmp_path: Path) -> Trust:
    return Trust(tmp_path / "keys")


@pytest.fixture
def keyring(trust: Trust) -> Keyring:
    ring = Keyring(trust.operator_keys)
    ring.apply(trust.registration(SERVICE, SignerRole.SERVICE))
    ring.apply(trust.registration(COMPANY, SignerRole.COMPANY))
    return ring


def _check(keyring: Keyring, key: bytes | None, value: bytes, headers: object) -> str | None:
    return check_handoff(keyring, key, value, headers, appended_at=APPENDED).reason  # type: ignore[arg-type]


def test_every_record_of_a_signed_batch_verifies_with_one_signature(
    trust: Trust, keyring: Keyring
) -> None:
    headers = sign_handoffs(trust.party(SERVICE).signer, RECORDS)
    assert len({dict(h)[HEADER_ROOT_SIGNATURE] for h in headers}) == 1  # one per batch
    for (key, value), head in zip(RECORDS, headers, strict=True):
        check = check_handoff(keyring, key, value, head, appended_at=APPENDED)
        assert check.ok, check.error
        assert check.registration is not None and check.registration.owner == SERVICE
    # a one-record batch and a mapping of headers (as some clients give them)
    ((single,),) = [sign_handoffs(trust.party(SERVICE).signer, RECORDS[:1])]
    assert _check(keyring, *RECORDS[0], dict(single)) is None


def test_unsigned_record(keyring: Keyring) -> None:
    assert _check(keyring, *RECORDS[0], None) == "unsigned"
    assert _check(keyring, *RECORDS[0], [("other", b"x")]) == "unsigned"
    with pytest.raises(TrustError, match="unsigned: headers pcfx-signer"):
        verify_handoff(keyring, *RECORDS[0], [], appended_at=APPENDED)


def test_forged_record_altered_after_signing(trust: Trust, keyring: Keyring) -> None:
    headers = sign_handoffs(trust.party(SERVICE).signer, RECORDS)
    key, value = RECORDS[2]
    assert _check(keyring, key, value + b" ", headers[2]) == "bad_signature"
    assert _check(keyring, b"urn:p:other", value, headers[2]) == "bad_signature"  # re-keyed


def test_forged_record_with_a_proof_for_other_bytes(trust: Trust, keyring: Keyring) -> None:
    headers = sign_handoffs(trust.party(SERVICE).signer, RECORDS)
    assert _check(keyring, *RECORDS[1], headers[3]) == "bad_signature"
    truncated = [(n, v[:-32] if n == HEADER_PROOF else v) for n, v in headers[1]]
    assert _check(keyring, *RECORDS[1], truncated) == "bad_signature"


def test_forged_record_signed_by_a_company_key(trust: Trust, keyring: Keyring) -> None:
    headers = sign_handoffs(trust.party(COMPANY).signer, RECORDS)
    check = check_handoff(keyring, *RECORDS[0], headers[0], appended_at=APPENDED)
    assert check.reason == "wrong_role"
    assert check.error is not None and "'company'" in check.error.message


def test_forged_record_signed_by_an_unregistered_key(trust: Trust, keyring: Keyring) -> None:
    headers = sign_handoffs(trust.party("mallory").signer, RECORDS)
    assert _check(keyring, *RECORDS[0], headers[0]) == "unknown_key"
    # claiming to be the service, with the attacker's own key
    mallory = trust.party("mallory").signer
    posing = sign_handoffs(type(mallory)(mallory.private_key, SERVICE, mallory.key_id), RECORDS)
    assert _check(keyring, *RECORDS[0], posing[0]) == "unknown_key"
    # claiming the service's key id, signed with the attacker's key
    service = trust.party(SERVICE).signer
    stolen_id = sign_handoffs(type(service)(mallory.private_key, SERVICE, service.key_id), RECORDS)
    assert _check(keyring, *RECORDS[0], stolen_id[0]) == "bad_signature"
    named = [(n, b"mallory" if n == HEADER_SIGNER else v) for n, v in stolen_id[0]]
    assert _check(keyring, *RECORDS[0], named) == "unknown_key"


def test_record_appended_after_the_service_key_was_revoked(trust: Trust) -> None:
    ring = Keyring(trust.operator_keys)
    revoked = APPENDED - timedelta(minutes=1)
    ring.apply(trust.registration(SERVICE, SignerRole.SERVICE, revoked_at=revoked))
    headers = sign_handoffs(trust.party(SERVICE).signer, RECORDS)
    assert _check(ring, *RECORDS[0], headers[0]) == "revoked_key"
    # appended before the revocation: still valid (judged at the broker's append time)
    early = check_handoff(ring, *RECORDS[0], headers[0], appended_at=revoked - timedelta(1))
    assert early.ok
