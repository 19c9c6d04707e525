"""Certification bodies and certificates (contracts.certification): bad cases first.

:class:`World` is an in-memory exchange (operator key, bodies, statements with broker append
times) that the label and API tests reuse.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts import InMemorySchemaRegistry
from pcf_exchange.contracts.certification import (
    BodyKey,
    BodyListing,
    BodyRegistration,
    Certificate,
    CertOutcome,
    CertRegistry,
    CertStatus,
    CurrentFootprint,
    ListingAction,
    Revocation,
    SignedStatement,
    Snapshot,
    StatementSerde,
    footprint_digest,
    sign_statement,
)
from pcf_exchange.contracts.errors import CertificationError, SerdeError, ValidationFailed
from pcf_exchange.contracts.keyfiles import key_id_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PRODUCT = "urn:pact:fj-cells.cn:product-id:LFP280-CELL"
HASH_A = footprint_digest({"id": "a", "pcf": {"pcfExcludingBiogenicUptake": "63.2"}})
HASH_B = footprint_digest({"id": "b", "pcf": {"pcfExcludingBiogenicUptake": "41.0"}})


@dataclass
class World:
    """An operator, one body (``cqc``) with one key, and a registry fed at broker times."""

    operator: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    body_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    registry: CertRegistry = field(init=False)
    sequence: int = 0

    def __post_init__(self) -> None:
        public = self.operator.public_key()
        self.registry = CertRegistry({key_id_of(public): public})

    def registration(self, **changes: object) -> BodyRegistration:
        self.sequence += 1
        base = BodyRegistration(
            "cqc",
            "China Quality Certification Centre",
            "CNCA-R-2002-001",
            ("LITHIUM_BATTERY", "PHOTOVOLTAIC"),
            T0,
            T0 + timedelta(days=3 * 365),
            (BodyKey.of(self.body_key.public_key()),),
            "operator",
            self.sequence,
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def by_operator(self, statement: object, at: datetime) -> CertOutcome:
        signed = sign_statement(self.operator, statement, signer_id="operator")  # type: ignore[arg-type]
        return self.registry.apply(signed, at).outcome

    def register(self, at: datetime = T0, **changes: object) -> None:
        assert self.by_operator(self.registration(**changes), at) is CertOutcome.ACCEPTED

    def listing(self, action: ListingAction, at: datetime, body_id: str = "cqc") -> CertOutcome:
        self.sequence += 1
        return self.by_operator(
            BodyListing(
                body_id, action, "accreditation suspended by CNCA", "operator", self.sequence
            ),
            at,
        )

    def certificate(self, cert_id: str = "CQC-2026-0001", **changes: object) -> Certificate:
        base = Certificate(
            cert_id,
            "cqc",
            key_id_of(self.body_key.public_key()),
            "fj-cells",
            PRODUCT,
            "c2532e91-7302-521b-8d33-5f24e27cbce7",
            HASH_A,
            "LITHIUM_BATTERY",
            "CN-CCL-PCR-LIB-TRACTION",
            "1.0.0",
            Decimal("63.2"),
            "kgCO2e/kWh",
            T0,
            T0 + timedelta(days=365),
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def issue(
        self,
        at: datetime,
        cert: Certificate | None = None,
        *,
        key: Ed25519PrivateKey | None = None,
        signer: str = "cqc",
    ) -> tuple[CertOutcome, CertificationError | None]:
        signed = sign_statement(key or self.body_key, cert or self.certificate(), signer_id=signer)
        update = self.registry.apply(signed, at)
        return update.outcome, update.error


DAY = timedelta(days=1)


# --- bad cases ------------------------------------------------------------------------------


def test_a_certificate_from_an_unregistered_body_is_refused() -> None:
    world = World()
    outcome, error = world.issue(T0 + DAY)
    assert outcome is CertOutcome.REJECTED and error is not None
    assert error.reason == "unknown_body"
    assert "'cqc'" in error.message and "pcf.bodies" in error.message
    assert world.registry.certificates == {}


def test_a_certificate_signed_with_a_key_the_body_did_not_register_is_refused() -> None:
    world = World()
    world.register()
    outcome, error = world.issue(T0 + DAY, key=Ed25519PrivateKey.generate())
    assert outcome is CertOutcome.REJECTED and error is not None
    assert error.reason == "unknown_key"


def test_a_certificate_whose_content_was_altered_after_signing_is_refused() -> None:
    world = World()
    world.register()
    signed = sign_statement(world.body_key, world.certificate(), signer_id="cqc")
    forged = SignedStatement(
        signed.payload_type, signed.body.replace(b'"63.2"', b'"6.32"'), signed.signature
    )
    update = world.registry.apply(forged, T0 + DAY)
    assert update.outcome is CertOutcome.REJECTED and update.error is not None
    assert update.error.reason == "bad_signature"


def test_a_body_cannot_issue_under_another_bodys_name() -> None:
    world = World()
    world.register()
    outcome, error = world.issue(T0 + DAY, world.certificate(body_id="other"))
    assert outcome is CertOutcome.REJECTED and error is not None
    assert error.reason == "unknown_body"


def test_a_certificate_appended_after_the_body_expired_is_refused() -> None:
    world = World()
    world.register(valid_until=T0 + 10 * DAY)
    outcome, error = world.issue(T0 + 11 * DAY, world.certificate(valid_until=T0 + 400 * DAY))
    assert outcome is CertOutcome.REJECTED and error is not None
    assert error.reason == "expired_body"
    assert "appended at 2026-01-12" in error.message


def test_a_certificate_appended_before_the_body_is_valid_is_refused() -> None:
    world = World()
    world.register(valid_from=T0 + 5 * DAY)
    outcome, error = world.issue(T0 + DAY)
    assert outcome is CertOutcome.REJECTED and error is not None
    assert error.reason == "body_not_yet_valid"


def test_an_out_of_scope_certificate_is_refused_naming_the_scopes() -> None:
    world = World()
    world.register()
    outcome, error = world.issue(T0 + DAY, world.certificate(scope="CEMENT"))
    assert outcome is CertOutcome.REJECTED and error is not None
    assert error.reason == "out_of_scope"
    assert "'scope'" in error.message and "LITHIUM_BATTERY, PHOTOVOLTAIC" in error.message
    assert "'CEMENT'" in error.message


def test_an_expired_certificate_cannot_be_published() -> None:
    world = World()
    world.register()
    cert = world.certificate(valid_from=T0, valid_until=T0 + DAY)
    outcome, error = world.issue(T0 + 2 * DAY, cert)
    assert outcome is CertOutcome.REJECTED and error is not None
    assert error.reason == "expired_certificate"


def test_a_blacklisted_body_is_refused_from_the_blacklisting_on_and_earlier_ones_flagged() -> None:
    world = World()
    world.register()
    assert world.issue(T0 + DAY)[0] is CertOutcome.ACCEPTED
    assert world.listing(ListingAction.BLACKLIST, T0 + 2 * DAY) is CertOutcome.ACCEPTED
    outcome, error = world.issue(T0 + 3 * DAY, world.certificate("CQC-2026-0002"))
    assert outcome is CertOutcome.REJECTED and error is not None
    assert error.reason == "blacklisted_body"
    assert "since 2026-01-03" in error.message
    # the earlier certificate is kept, flagged
    report = world.registry.status("CQC-2026-0001", T0 + 4 * DAY)
    assert report.status is CertStatus.FLAGGED
    assert "blacklisted at 2026-01-03" in report.reasons[0]
    # and was fine before the blacklisting
    assert world.registry.status("CQC-2026-0001", T0 + DAY).status is CertStatus.VALID
    # unlisted: new certificates go again, the old one is no longer flagged
    assert world.listing(ListingAction.UNLIST, T0 + 5 * DAY) is CertOutcome.ACCEPTED
    assert world.issue(T0 + 6 * DAY, world.certificate("CQC-2026-0003"))[0] is CertOutcome.ACCEPTED
    assert world.registry.status("CQC-2026-0001", T0 + 6 * DAY).status is CertStatus.VALID


def test_only_the_operator_registers_and_blacklists_bodies() -> None:
    world = World()
    impostor = Ed25519PrivateKey.generate()
    signed = sign_statement(impostor, world.registration(), signer_id="operator")
    update = world.registry.apply(signed, T0)
    assert update.outcome is CertOutcome.REJECTED and update.error is not None
    assert update.error.reason == "unknown_key"
    world.register()
    listing = BodyListing("cqc", ListingAction.BLACKLIST, "x", "mallory", 99)
    update = world.registry.apply(sign_statement(world.body_key, listing, signer_id="cqc"), T0)
    assert update.outcome is CertOutcome.REJECTED and update.error is not None
    assert update.error.reason == "unknown_key"
    assert not world.registry.bodies["cqc"].blacklisted


def test_a_replayed_registration_is_refused_and_a_redelivery_is_a_duplicate() -> None:
    world = World()
    old = sign_statement(world.operator, world.registration(), signer_id="operator")
    assert world.registry.apply(old, T0).outcome is CertOutcome.ACCEPTED
    assert world.registry.apply(old, T0 + DAY).outcome is CertOutcome.DUPLICATE
    world.register(at=T0 + DAY, scopes=("CEMENT",))
    update = world.registry.apply(old, T0 + 2 * DAY)
    assert update.outcome is CertOutcome.REJECTED and update.error is not None
    assert update.error.reason == "replayed"
    assert world.registry.bodies["cqc"].registration.scopes == ("CEMENT",)


def test_a_certificate_id_is_issued_once() -> None:
    world = World()
    world.register()
    assert world.issue(T0 + DAY)[0] is CertOutcome.ACCEPTED
    assert world.issue(T0 + DAY)[0] is CertOutcome.DUPLICATE
    outcome, error = world.issue(T0 + DAY, world.certificate(figure=Decimal("1")))
    assert outcome is CertOutcome.REJECTED and error is not None
    assert error.reason == "duplicate_id"


def test_a_revoked_certificate_reports_revoked_and_only_its_body_or_the_operator_may_revoke() -> (
    None
):
    world = World()
    world.register()
    world.register(
        body_id="other", keys=(BodyKey.of((other := Ed25519PrivateKey.generate()).public_key()),)
    )
    world.issue(T0 + DAY)
    stranger = sign_statement(other, Revocation("CQC-2026-0001", "other", "x"), signer_id="other")
    update = world.registry.apply(stranger, T0 + 2 * DAY)
    assert update.outcome is CertOutcome.REJECTED and update.error is not None
    assert update.error.reason == "unknown_key"
    revocation = Revocation("CQC-2026-0001", "cqc", "the figure was wrong")
    signed = sign_statement(world.body_key, revocation, signer_id="cqc")
    assert world.registry.apply(signed, T0 + 3 * DAY).outcome is CertOutcome.ACCEPTED
    assert world.registry.status("CQC-2026-0001", T0 + 2 * DAY).status is CertStatus.VALID
    report = world.registry.status("CQC-2026-0001", T0 + 4 * DAY)
    assert report.status is CertStatus.REVOKED
    assert "the figure was wrong" in report.reasons[0]
    unknown = sign_statement(world.body_key, Revocation("nope", "cqc", "x"), signer_id="cqc")
    update = world.registry.apply(unknown, T0 + 5 * DAY)
    assert update.error is not None and update.error.reason == "unknown_certificate"


def test_the_operator_may_revoke_a_certificate() -> None:
    world = World()
    world.register()
    world.issue(T0 + DAY)
    assert (
        world.by_operator(Revocation("CQC-2026-0001", "operator", "fraud"), T0 + 2 * DAY)
        is CertOutcome.ACCEPTED
    )
    assert world.registry.status("CQC-2026-0001", T0 + 3 * DAY).status is CertStatus.REVOKED


@pytest.mark.parametrize(
    ("field_name", "value", "path"),
    [
        ("pcrPackId", "", "pcrPackId"),
        ("pcrPackVersion", None, "pcrPackVersion"),
        ("contentHash", "abc", "contentHash"),
        ("figure", 63.2, "figure"),
        ("scope", "ROCKETS", "scope"),
        ("validUntil", "2025-01-01T00:00:00Z", "validUntil"),
        ("validFrom", "2026-01-01T00:00:00", "validFrom"),
    ],
)
def test_a_malformed_certificate_names_the_field(field_name: str, value: object, path: str) -> None:
    data = World().certificate().to_json()
    data[field_name] = value
    with pytest.raises(ValidationFailed) as caught:
        Certificate.from_json(data)
    assert path in {v.path for v in caught.value.violations}


def test_a_body_registration_with_a_key_id_not_its_keys_is_malformed() -> None:
    data = World().registration().to_json()
    data["keys"][0]["keyId"] = "0" * 32
    data["scopes"] = ["LITHIUM_BATTERY", "LITHIUM_BATTERY", "ROCKETS"]
    with pytest.raises(ValidationFailed) as caught:
        BodyRegistration.from_json(data)
    paths = {v.path for v in caught.value.violations}
    assert {"keys[0].keyId", "scopes[1]", "scopes[2]"} <= paths


# --- staleness ------------------------------------------------------------------------------


def test_a_certificate_turns_stale_when_the_products_footprint_changes_and_is_noticed_once() -> (
    None
):
    world = World()
    world.register()
    world.issue(T0 + DAY)
    world.registry.observe_footprint(CurrentFootprint(PRODUCT, "fp-a", HASH_A, "pcf.declared"))
    assert world.registry.status("CQC-2026-0001", T0 + 2 * DAY).status is CertStatus.VALID
    assert world.registry.stale() == []
    world.registry.observe_footprint(CurrentFootprint(PRODUCT, "fp-b", HASH_B, "pcf.products"))
    report = world.registry.status("CQC-2026-0001", T0 + 2 * DAY)
    assert report.status is CertStatus.STALE
    assert "fp-b" in report.reasons[0] and "pcf.products" in report.reasons[0]
    (notice,) = world.registry.stale()
    assert (notice.holder, notice.body_id, notice.current_hash) == ("fj-cells", "cqc", HASH_B)
    assert world.by_operator(notice, T0 + 3 * DAY) is CertOutcome.ACCEPTED
    assert world.registry.stale() == []  # emitted once per superseding footprint
    assert world.by_operator(notice, T0 + 3 * DAY) is CertOutcome.DUPLICATE


# --- snapshots ------------------------------------------------------------------------------


def _snapshot(world: World) -> dict[str, object]:
    world.register()
    world.issue(T0 + DAY)
    world.registry.observe_footprint(CurrentFootprint(PRODUCT, "fp-a", HASH_A, "pcf.declared"))
    return Snapshot.of(world.registry, exported_by="operator", at=T0 + 2 * DAY).sign(world.operator)


def test_a_snapshot_round_trips_into_the_same_registry() -> None:
    world = World()
    data = _snapshot(world)
    public = world.operator.public_key()
    snapshot, registry = Snapshot.verify(data, {key_id_of(public): public})
    assert snapshot.exported_at == T0 + 2 * DAY
    assert set(registry.certificates) == {"CQC-2026-0001"}
    assert registry.footprints == world.registry.footprints
    assert registry.status("CQC-2026-0001", T0 + 3 * DAY).status is CertStatus.VALID


@pytest.mark.parametrize(
    "tamper",
    [
        "current_hash",  # pretend a superseded footprint is current
        "append_time",  # backdate a certificate before a blacklisting
        "drop_statement",  # hide a revocation
    ],
)
def test_a_tampered_snapshot_is_refused(tamper: str) -> None:
    world = World()
    data = _snapshot(world)
    bad = copy.deepcopy(data)
    body = bad["snapshot"]
    assert isinstance(body, dict)
    if tamper == "current_hash":
        body["footprints"][0]["contentHash"] = HASH_B
    elif tamper == "append_time":
        body["statements"][1]["appendedAt"] = "2025-12-01T00:00:00Z"
    else:
        body["statements"].pop()
    public = world.operator.public_key()
    with pytest.raises(CertificationError) as caught:
        Snapshot.verify(bad, {key_id_of(public): public})
    assert caught.value.reason == "bad_signature"


def test_a_snapshot_signed_by_someone_else_is_refused() -> None:
    world = World()
    data = _snapshot(world)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(CertificationError) as caught:
        Snapshot.verify(data, {key_id_of(other): other})
    assert caught.value.reason == "unknown_key"
    with pytest.raises(CertificationError) as caught:
        Snapshot.verify({"format": "something else"}, {})
    assert caught.value.reason == "bad_snapshot"


# --- the wire form --------------------------------------------------------------------------


def test_statements_round_trip_through_framed_avro_and_other_records_are_refused() -> None:
    world = World()
    registry = InMemorySchemaRegistry()
    serde = StatementSerde(registry)
    signed = sign_statement(world.body_key, world.certificate(), signer_id="cqc")
    data = serde.encode("p.pcf.certificates", signed)
    assert data[0] == 0 and serde.decode(data) == signed
    assert StatementSerde(registry).decode(data) == signed  # a fresh reader looks the id up
    with pytest.raises(SerdeError):
        serde.decode(data + b"\x00")
    other = registry.register("x-value", '{"type": "record", "name": "Other", "fields": []}')
    with pytest.raises(SerdeError):
        StatementSerde(registry).decode(bytes([0]) + other.to_bytes(4, "big"))
