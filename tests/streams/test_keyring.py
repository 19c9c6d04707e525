"""The one fold of the key registry (contracts.Keyring) and the URN-boundary namespace rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts import (
    Keyring,
    KeyringOutcome,
    SignedSupplierKey,
    SignerRole,
    SupplierKey,
    in_namespace,
    sign,
)
from pcf_exchange.contracts.errors import TrustError

OPERATOR = Ed25519PrivateKey.generate()
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def registration(
    seq: int, signer: Ed25519PrivateKey = OPERATOR, **changes: object
) -> SignedSupplierKey:
    public = Ed25519PrivateKey.generate().public_key()
    key = SupplierKey(
        supplier_id="acme",
        key_id="acme-k1",
        public_key=public.public_bytes(Encoding.Raw, PublicFormat.Raw),
        valid_from=T0,
        registered_by="operator",
        namespaces=("urn:pact:acme.cn",),
    ).model_copy(update=changes)
    signed = sign(signer, key, supplier_id="operator", key_id="op", sequence=seq)
    assert isinstance(signed, SignedSupplierKey)
    return signed


def test_a_newer_registration_replaces_namespaces_and_role_and_older_ones_are_replays() -> None:
    ring = Keyring({"op": OPERATOR.public_key()})
    first = registration(1)
    assert ring.apply(first).outcome is KeyringOutcome.ACCEPTED
    assert ring.apply(first).outcome is KeyringOutcome.DUPLICATE
    newer = registration(2, namespaces=("urn:pact:acme.de",), role=SignerRole.OFFICER)
    assert ring.apply(newer).outcome is KeyringOutcome.ACCEPTED
    found = ring.lookup("acme", "acme-k1")
    assert found is not None and found.namespaces == ("urn:pact:acme.de",)
    assert found.role is SignerRole.OFFICER and [
        r.owner for r in ring.with_role(SignerRole.OFFICER)
    ] == ["acme"]
    assert not found.owns("urn:pact:acme.cn:product-id:X") and found.owns("urn:pact:acme.de:p")
    replay = ring.apply(registration(1))
    assert replay.outcome is KeyringOutcome.REJECTED and replay.error is not None
    assert replay.error.reason == "replayed"


def test_only_the_operator_registers_keys() -> None:
    ring = Keyring({"op": OPERATOR.public_key()})
    forged = ring.apply(registration(1, signer=Ed25519PrivateKey.generate()))
    assert forged.outcome is KeyringOutcome.REJECTED and forged.error is not None
    assert forged.error.reason == "bad_signature"
    other = Keyring({"other-op": OPERATOR.public_key()}).apply(registration(1))
    assert other.error is not None and other.error.reason == "unknown_key"
    assert len(ring) == 0


def test_usable_at_the_append_time_names_why_not() -> None:
    ring = Keyring({"op": OPERATOR.public_key()})
    revoked = T0 + timedelta(days=10)
    update = ring.apply(registration(1, valid_until=T0 + timedelta(days=30), revoked_at=revoked))
    reg = update.registration
    assert reg is not None and reg.usable_at(T0 + timedelta(days=1))
    reasons = {
        at: (e.reason if (e := reg.unusable_at(at)) else None)
        for at in (T0 - timedelta(seconds=1), revoked, T0 + timedelta(days=31))
    }
    assert list(reasons.values()) == ["key_not_yet_valid", "revoked_key", "revoked_key"]


_DAYS = st.integers(min_value=-5, max_value=40)


@settings(max_examples=60, deadline=None)
@given(until=st.none() | _DAYS, revoked=st.none() | _DAYS, moment=_DAYS)
def test_unusable_at_is_the_window_rule_at_every_boundary(
    until: int | None, revoked: int | None, moment: int
) -> None:
    """Revoked first, then expired, then not yet valid, each bound exact (the check returns
    early for a usable key without building the refusal's message: the same answers)."""
    ring = Keyring({"op": OPERATOR.public_key()})
    day = timedelta(days=1)
    reg = ring.apply(
        registration(
            1,
            valid_until=None if until is None else T0 + until * day,
            revoked_at=None if revoked is None else T0 + revoked * day,
        )
    ).registration
    assert reg is not None
    at = T0 + moment * day
    expected = (
        "revoked_key"
        if revoked is not None and moment >= revoked
        else "expired_key"
        if until is not None and moment >= until
        else "key_not_yet_valid"
        if moment < 0
        else None
    )
    error = reg.unusable_at(at)
    assert (error.reason if error else None) == expected
    assert reg.usable_at(at) is (expected is None)
    if error is not None:  # the refusal names the key's window and the append time
        assert "valid from 2025-01-01" in error.message and at.isoformat() in error.message


def test_authorize_is_the_one_check_of_signer_role_and_append_time() -> None:
    """What the streams (company keys), the gateway's hand-offs (service) and approvals
    (officer) each ask of the registry."""
    ring = Keyring({"op": OPERATOR.public_key()})
    ring.apply(registration(1, role=SignerRole.SERVICE, revoked_at=T0 + timedelta(days=10)))
    at = T0 + timedelta(days=1)
    found = ring.authorize("acme", "acme-k1", role=SignerRole.SERVICE, at=at)
    assert not isinstance(found, TrustError) and found.owner == "acme"
    refusals = {
        "unknown": ring.authorize("acme", "other", role=SignerRole.SERVICE, at=at),
        "company": ring.authorize("acme", "acme-k1", role=SignerRole.COMPANY, at=at),
        "officer": ring.authorize("acme", "acme-k1", role=SignerRole.OFFICER, at=at),
        "revoked": ring.authorize(
            "acme", "acme-k1", role=SignerRole.SERVICE, at=T0 + timedelta(days=10)
        ),
    }
    reasons = {k: e.reason for k, e in refusals.items() if isinstance(e, TrustError)}
    assert reasons == {
        "unknown": "unknown_key",
        "company": "wrong_role",
        "officer": "wrong_role",
        "revoked": "revoked_key",
    }
    assert "needs role 'officer'" in str(refusals["officer"])
    assert "--role service" in refusals["unknown"].hint  # type: ignore[union-attr]


def test_the_namespace_rule_is_on_urn_boundaries() -> None:
    assert in_namespace("urn:x:acme", "urn:x:acme")
    assert in_namespace("urn:x:acme:p:1", "urn:x:acme")
    assert in_namespace("urn:x:acme/p", "urn:x:acme")
    assert not in_namespace("urn:x:acme-evil:p:1", "urn:x:acme")
    assert not in_namespace("urn:x:acmes", "urn:x:acme")
    assert in_namespace("urn:x:acme:p", "urn:x:acme:")


SEGMENT = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=8)


@given(SEGMENT, SEGMENT, st.sampled_from([":", "/", ""]), SEGMENT)
def test_a_namespace_never_grants_a_longer_name_that_only_starts_the_same(
    company: str, suffix: str, separator: str, rest: str
) -> None:
    namespace = f"urn:pact:{company}"
    product = f"urn:pact:{company}{suffix}{separator}{rest}"
    # covered exactly when what follows the namespace starts with a separator
    assert in_namespace(product, namespace) is False
    assert in_namespace(f"{namespace}{separator or ':'}{rest}", namespace)
