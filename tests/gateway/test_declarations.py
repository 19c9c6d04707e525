"""The declarations the EU asks for (#21 item 5): bad cases first, then the good paths.

Pure builders (no broker): a footprint and an input file in, a document out; released through
:class:`gateway.Gateway` with an in-memory sink, so the audit entries can be counted.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pcf_exchange.contracts import EmissionFactor, load_factors
from pcf_exchange.contracts.certification import (
    Certificate,
    CertState,
    CertStatus,
    StatusReport,
    footprint_digest,
    sign_statement,
)
from pcf_exchange.contracts.errors import DeclarationInvalid, PcrViolation, ValidationFailed
from pcf_exchange.contracts.examples import example_footprint
from pcf_exchange.contracts.keyfiles import key_id_of
from pcf_exchange.gateway import (
    Gateway,
    GatewaySecrets,
    InMemoryTransferSink,
    KeyRing,
    Policy,
    open_message,
)
from pcf_exchange.gateway._adapter import gateway_record
from pcf_exchange.gateway._approvals import Approval, approve, deny
from pcf_exchange.gateway.audit import EntryKind
from pcf_exchange.gateway.declarations import (
    ApprovedRelease,
    Art7Input,
    HeldDeclaration,
    build_art7,
    build_cbam,
    build_study,
    certificate_refs,
    declaration_record,
    dump_json,
    prepare_approved_release,
    read_art7_input,
    read_cbam_input,
    read_source,
    read_study_input,
    release,
    render_html,
)
from pcf_exchange.gateway.policy import CounterState, Outcome, evaluate
from pcf_exchange.producers.factors import SOURCED_FACTORS
from tests.gateway._rollups import rolled_footprint

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LINEAGE = "https://pcf-exchange.example/schemas/lineage/v1.json"
SCHEMA = (  # ../shared beside the repository: the Battery Pass data model 1.2.0 schema
    Path(__file__).resolve().parents[3]
    / "shared"
    / "reference"
    / "batterypass"
    / "CarbonFootprintForBatteries-1.2.0.schema.json"
)


def battery() -> dict[str, Any]:
    """The example LFP cell's footprint, naming its catalogue entry (traction batteries)."""
    fp = example_footprint()
    fp["pcf"]["productOrSectorSpecificRules"][0]["ruleNames"].append("CN-CCL-PCR-LIB-TRACTION")
    return fp


def art7_input(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "manufacturer": {
            "name": "Example Cells Co., Ltd.",
            "tradeName": "ExampleCell",
            "address": "1 Battery Road, Ningde, Fujian, China",
        },
        "batteryModel": "LFP280",
        "batteryCategory": "EV",
        "manufacturingPlant": {
            "name": "Ningde plant 2",
            "address": "8 Plant Street",
            "city": "Ningde",
            "subdivision": "CN-FJ",
            "country": "CN",
        },
        "euDeclarationOfConformityId": "EU-DoC-2026-0042",
        "studyUrl": "https://example.com/lfp280-cfp-study.pdf",
        "serviceLifeEnergyKWh": "2800",
        "beyondGate": {"distribution": "0.35", "endOfLife": "-1.10", "source": "study §5"},
    }
    data.update(changes)
    return data


def aluminium() -> dict[str, Any]:
    """An aluminium ingot's footprint per tonne (1000 kg), with the gateway's lineage."""
    fp = example_footprint()
    fp["productIds"] = ["urn:pact:example-al.cn:product-id:AL99.70"]
    fp["productNameCompany"] = "AL99.70 ingot"
    fp["pcf"].update(
        declaredUnitOfMeasurement="kilogram",
        declaredUnitAmount="1000",
        productMassPerDeclaredUnit="1000",
        pcfExcludingBiogenicUptake="16500",
        pcfIncludingBiogenicUptake="16500",
        fossilGhgEmissions="16499.7",
    )
    ext = fp["extensions"][0]["data"]
    ext["pilotCategory"] = "ELECTROLYTIC_ALUMINIUM"
    ext["stageBreakdown"] = {"raw_material_acquisition": "4500", "production": "12000"}
    del ext["uncertainty"]
    fp["extensions"].append(
        {
            "specVersion": "2.0.0",
            "dataSchema": LINEAGE,
            "data": {
                "lineage": {
                    "ownEmissions": {
                        "directKgCO2e": "1800",
                        "electricityKgCO2e": "10200",
                        "otherKgCO2e": "0",
                    },
                    "inputs": [
                        {
                            "componentIndex": 0,
                            "kind": "factor",
                            "factorId": "cn:mee:grid:national",
                            "factorVersion": "2022",
                            "quantity": "13500",
                            "unit": "kilowatt hour",
                            "contribution": "7244.1",
                        },
                        {
                            "componentIndex": 1,
                            "kind": "factor",
                            "factorId": "bg:not-in-the-table",
                            "factorVersion": "1",
                            "quantity": "1",
                            "unit": "kilogram",
                            "contribution": "0",
                        },
                    ],
                }
            },
        }
    )
    return fp


def cbam_input(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "installation": {
            "name": "Example Smelter",
            "operator": "Example Aluminium Co., Ltd.",
            "address": "1 Smelter Road",
            "city": "Baotou",
            "country": "CN",
            "unLocode": "CN BTO",
            "latitude": "40.6571",
            "longitude": "109.8403",
        },
        "cnCode": "76011000",
        "productionRoute": "primary aluminium, prebake electrolysis",
        "reportingPeriod": {"start": "2026-01-01", "end": "2026-03-31"},
    }
    data.update(changes)
    return data


def paths(violations: Any) -> list[str]:
    return [v.path for v in violations]


@pytest.fixture(scope="module")
def factors() -> dict[tuple[str, str], EmissionFactor]:
    return {
        (f.value.factor_id, f.value.version): f.value
        for f in load_factors(SOURCED_FACTORS)
        if f.value is not None
    }


@pytest.fixture
def gateway(policy: Policy, secrets: GatewaySecrets, counters: CounterState) -> Gateway:
    return Gateway(policy, secrets, InMemoryTransferSink(), counters=counters)


# ----------------------------------------------------------------------------------------------
# bad input: Art. 7


def test_art7_refuses_a_footprint_without_stage_breakdown() -> None:
    fp = battery()
    del fp["extensions"][0]["data"]["stageBreakdown"]
    with pytest.raises(DeclarationInvalid) as caught:
        build_art7(read_source(fp), read_art7_input(art7_input()), issued_at=NOW)
    assert paths(caught.value.violations) == ["extensions[0].data.stageBreakdown"]
    assert "per life-cycle stage" in str(caught.value)


def test_art7_names_each_missing_annex_ii_stage() -> None:
    """End of life is neither in the (cradle-to-gate) footprint nor in the input: refused, not
    taken as zero."""
    with pytest.raises(DeclarationInvalid) as caught:
        build_art7(
            read_source(battery()),
            read_art7_input(art7_input(beyondGate={"distribution": "0.3", "source": "s"})),
            issued_at=NOW,
        )
    assert paths(caught.value.violations) == [
        "extensions[0].data.stageBreakdown.end_of_life or beyondGate.endOfLife"
    ]


def test_art7_refuses_a_stage_given_twice() -> None:
    fp = battery()
    data = fp["extensions"][0]["data"]
    data["stageBreakdown"] = {
        "raw_material_acquisition": "48.00",
        "production": "13.20",
        "distribution": "0.20",
    }
    with pytest.raises(DeclarationInvalid) as caught:
        build_art7(read_source(fp), read_art7_input(art7_input()), issued_at=NOW)
    assert [v.code for v in caught.value.violations] == ["given_twice"]
    assert paths(caught.value.violations) == ["beyondGate.distribution"]


def test_art7_refuses_a_breakdown_that_is_not_the_footprints() -> None:
    fp = battery()
    fp["extensions"][0]["data"]["stageBreakdown"]["production"] = "13.00"
    with pytest.raises(DeclarationInvalid) as caught:
        build_art7(read_source(fp), read_art7_input(art7_input()), issued_at=NOW)
    assert [v.code for v in caught.value.violations] == ["sum_mismatch"]


def test_art7_sums_stages_exactly() -> None:
    """A difference in the 34th digit is a different footprint (28-digit rounding would hide it)."""
    fp = battery()
    fp["extensions"][0]["data"]["stageBreakdown"]["raw_material_acquisition"] = (
        "48.20000000000000000000000000000001"
    )
    with pytest.raises(DeclarationInvalid) as caught:
        build_art7(read_source(fp), read_art7_input(art7_input()), issued_at=NOW)
    assert [v.code for v in caught.value.violations] == ["sum_mismatch"]
    assert caught.value.violations[0].got == "'61.40000000000000000000000000000001'"


def test_art7_refuses_a_non_battery_product() -> None:
    with pytest.raises(DeclarationInvalid) as caught:
        build_art7(read_source(aluminium()), read_art7_input(art7_input()), issued_at=NOW)
    (v,) = caught.value.violations
    assert (v.path, v.code, v.got) == (
        "extensions[0].data.pilotCategory",
        "not_a_battery",
        "'ELECTROLYTIC_ALUMINIUM'",
    )


@pytest.mark.parametrize("unit", ["kilogram", "square meter"])
def test_art7_refuses_a_unit_that_cannot_become_kwh(unit: str) -> None:
    fp = battery()
    fp["pcf"]["declaredUnitOfMeasurement"] = unit
    with pytest.raises(DeclarationInvalid) as caught:
        build_art7(read_source(fp), read_art7_input(art7_input()), issued_at=NOW)
    (v,) = caught.value.violations
    assert (v.path, v.code, v.got) == ("pcf.declaredUnitOfMeasurement", "unit_not_kwh", repr(unit))


def test_art7_per_piece_needs_the_service_life_energy() -> None:
    fp = battery()
    fp["pcf"]["declaredUnitOfMeasurement"] = "piece"
    data = art7_input()
    del data["serviceLifeEnergyKWh"]
    with pytest.raises(DeclarationInvalid) as caught:
        build_art7(read_source(fp), read_art7_input(data), issued_at=NOW)
    assert paths(caught.value.violations) == ["serviceLifeEnergyKWh"]


def test_art7_input_names_every_missing_field() -> None:
    data = art7_input(
        batteryCategory="PORTABLE", studyUrl="ftp-less text", serviceLifeEnergyKWh=1.5
    )
    del data["manufacturer"]["tradeName"]
    del data["manufacturingPlant"]
    with pytest.raises(DeclarationInvalid) as caught:
        read_art7_input(data)
    assert sorted(paths(caught.value.violations)) == [
        "batteryCategory",
        "manufacturer.tradeName",
        "manufacturingPlant",
        "serviceLifeEnergyKWh",
        "studyUrl",
    ]


def test_art7_refuses_a_footprint_that_breaks_its_pcr_pack() -> None:
    fp = battery()
    fp["pcf"]["dqi"]["technologicalDQR"] = "4.5"  # the traction pack's maximum is 3.0
    with pytest.raises(PcrViolation) as caught:
        build_art7(read_source(fp), read_art7_input(art7_input()), issued_at=NOW)
    assert "data-quality" in str(caught.value)


def test_a_roll_up_without_footprint_is_refused_with_its_reason() -> None:
    rolled = {
        "productId": "urn:pact:example-pack.cn:product-id:PACK-48V",
        "bomRevision": 1,
        "sequence": 1,
        "declaredUnit": {"amount": "1", "unit": "kilowatt hour"},
        "pcfExcludingBiogenicUptake": "70",
        "ownEmissions": {"directKgCO2e": "0", "electricityKgCO2e": "0", "otherKgCO2e": "0"},
        "inputs": [],
        "completeness": {
            "componentsTotal": 0,
            "componentsResolved": 0,
            "coveragePercent": "100",
            "complete": True,
        },
        "footprint": None,
        "method": "pcfx-rollup/attributional",
        "engineVersion": "1",
        "computedAt": "2026-12-01T00:00:00Z",
        "footprintWithheld": "no productInfo on the BOM",
    }
    with pytest.raises(DeclarationInvalid) as caught:
        read_source(rolled)
    assert "no productInfo on the BOM" in str(caught.value)


def test_an_invalid_footprint_is_refused_by_the_contract() -> None:
    fp = battery()
    fp["pcf"]["pcfExcludingBiogenicUptake"] = 61.4  # a binary float
    with pytest.raises(ValidationFailed):
        read_source(fp)


# ----------------------------------------------------------------------------------------------
# bad input: certificates


def _certificate(source_hash: str, *, cert_id: str = "CQC-2026-0001") -> StatusReport:
    key = Ed25519PrivateKey.generate()
    cert = Certificate(
        cert_id,
        "cqc",
        key_id_of(key.public_key()),
        "example-cells",
        "urn:pact:example-cells.cn:product-id:LFP280",
        "3f7a9c1e-5b2d-4e8f-9a6b-0c1d2e3f4a5b",
        source_hash,
        "LITHIUM_BATTERY",
        "CN-CCL-PCR-LIB-TRACTION",
        "1.0.0",
        Decimal("61.40"),
        "kgCO2e/kWh",
        NOW - timedelta(days=30),
        NOW + timedelta(days=700),
    )
    signed = sign_statement(key, cert, signer_id="cqc")
    state = CertState(cert, signed, NOW - timedelta(days=30))
    return StatusReport(cert_id, CertStatus.VALID, (), state)


def test_a_revoked_or_stale_certificate_cannot_be_cited() -> None:
    source = read_source(battery())
    revoked = StatusReport(
        "CQC-2026-0009", CertStatus.REVOKED, ((CertStatus.REVOKED, "revoked by cqc"),), None
    )
    other = _certificate("0" * 64, cert_id="CQC-2026-0002")
    with pytest.raises(DeclarationInvalid) as caught:
        certificate_refs(source, [revoked, other])
    assert [v.code for v in caught.value.violations] == [
        "certificate_revoked",
        "certificate_other_footprint",
    ]
    assert "revoked by cqc" in str(caught.value)


def test_a_certificate_for_another_pack_is_refused() -> None:
    source = read_source(battery())
    (ref,) = certificate_refs(source, [_certificate(footprint_digest(source.pact))])
    other = dataclasses.replace(ref, pcr_pack_id="CN-CCL-PCR-LIB-STORAGE")
    with pytest.raises(DeclarationInvalid) as caught:
        build_art7(source, read_art7_input(art7_input()), certificates=(other,), issued_at=NOW)
    (v,) = caught.value.violations
    assert (v.path, v.code) == ("certificates[0]", "certificate_other_pack")
    assert "CN-CCL-PCR-LIB-TRACTION@1.0.0" in v.message


# ----------------------------------------------------------------------------------------------
# bad input: CBAM


def test_cbam_input_names_a_missing_installation_field() -> None:
    data = cbam_input()
    del data["installation"]["unLocode"]
    data["installation"]["latitude"] = "95"
    with pytest.raises(DeclarationInvalid) as caught:
        read_cbam_input(data)
    assert paths(caught.value.violations) == ["installation.unLocode", "installation.latitude"]


@pytest.mark.parametrize(("cn", "code"), [("8507600", "cn_code"), ("85076000", "not_cbam_good")])
def test_cbam_refuses_a_cn_code_outside_annex_i(cn: str, code: str) -> None:
    with pytest.raises(DeclarationInvalid) as caught:
        read_cbam_input(cbam_input(cnCode=cn))
    assert [(v.path, v.code) for v in caught.value.violations] == [("cnCode", code)]


def test_cbam_needs_lineage_to_split_direct_from_indirect() -> None:
    fp = aluminium()
    fp["extensions"].pop()  # no lineage
    with pytest.raises(DeclarationInvalid) as caught:
        build_cbam(read_source(fp), read_cbam_input(cbam_input()), issued_at=NOW)
    assert caught.value.violations[0].path.endswith("ownEmissions.electricityKgCO2e")


def test_cbam_refuses_a_footprint_not_per_mass() -> None:
    with pytest.raises(DeclarationInvalid) as caught:
        build_cbam(read_source(battery()), read_cbam_input(cbam_input()), issued_at=NOW)
    assert [v.code for v in caught.value.violations] == ["unit_not_mass"]


# ----------------------------------------------------------------------------------------------
# bad input: the gateway refuses


def test_a_recipient_without_the_purpose_gets_nothing_and_the_refusal_is_audited(
    gateway: Gateway,
) -> None:
    doc = build_art7(read_source(battery()), read_art7_input(art7_input()), issued_at=NOW)
    result = release(
        doc, gateway=gateway, recipient="uk-customer-gb", purpose="battery-regulation-art7", now=NOW
    )
    assert result.outcome is Outcome.BLOCKED and not result.released
    sink = gateway.sink
    assert isinstance(sink, InMemoryTransferSink)
    assert sink.sent == []
    (entry,) = sink.audit.entries()
    assert entry.kind == EntryKind.TRANSFER_BLOCKED.value
    assert entry.recipient_id == "uk-customer-gb" and entry.purpose == "battery-regulation-art7"
    assert any(r.startswith("purpose_not_allowed") for r in entry.reasons)


def test_a_declaration_with_an_unclassified_field_is_blocked(gateway: Gateway) -> None:
    doc = build_art7(read_source(battery()), read_art7_input(art7_input()), issued_at=NOW)
    record = declaration_record(doc)
    record["declaration"]["batteryModel"]["cellChemistryRecipe"] = "secret"
    prepared = gateway.process(
        record, recipient="eu-battery-oem-de", purpose="battery-regulation-art7", now=NOW
    )
    assert prepared.decision.outcome is Outcome.BLOCKED and prepared.outbound is None
    unknown = [r.path for r in prepared.decision.reasons if r.code == "unknown_field"]
    assert unknown == ["declaration.batteryModel.cellChemistryRecipe"]


def test_the_cbam_location_is_held_for_approval_not_sent(gateway: Gateway) -> None:
    doc = build_cbam(read_source(aluminium()), read_cbam_input(cbam_input()), issued_at=NOW)
    result = release(
        doc, gateway=gateway, recipient="eu-cbam-importer-nl", purpose="cbam-reporting", now=NOW
    )
    assert result.outcome is Outcome.HELD and result.approval_id is not None
    assert not result.released
    sink = gateway.sink
    assert isinstance(sink, InMemoryTransferSink)
    (entry,) = sink.audit.entries()
    assert entry.kind == EntryKind.TRANSFER_HELD.value
    held = {r.split("|")[1] for r in entry.reasons}
    assert held == {
        "declaration.installation.unLocode",
        "declaration.installation.coordinates.latitude",
        "declaration.installation.coordinates.longitude",
    }


def _held(gateway: Gateway) -> tuple[HeldDeclaration, Approval]:
    doc = build_cbam(read_source(aluminium()), read_cbam_input(cbam_input()), issued_at=NOW)
    result = release(
        doc, gateway=gateway, recipient="eu-cbam-importer-nl", purpose="cbam-reporting", now=NOW
    )
    (pending,) = gateway.pending.values()
    return HeldDeclaration.of(doc, result), pending


def _approved(gateway: Gateway, held: HeldDeclaration, decided: Approval) -> ApprovedRelease:
    return prepare_approved_release(
        held,
        decided,
        policy=gateway.policy,
        secrets=gateway.secrets,
        head=gateway.head,
        counters=gateway.counters,
        now=NOW + timedelta(hours=1),
    )


@pytest.mark.parametrize("missing", ["approvalId", "recipient", "record"])
def test_a_held_file_missing_a_field_is_refused_naming_it(missing: str) -> None:
    good = {
        "approvalId": "a1",
        "declarationType": "cbam-embedded-emissions",
        "declarationId": "c1",
        "recipient": "eu-cbam-importer-nl",
        "purpose": "cbam-reporting",
        "record": {"id": "c1"},
    }
    with pytest.raises(DeclarationInvalid) as caught:
        HeldDeclaration.from_json({k: v for k, v in good.items() if k != missing}, subject="f")
    assert paths(caught.value.violations) == [missing]
    with pytest.raises(DeclarationInvalid):
        HeldDeclaration.from_json([good], subject="f")


def test_an_edited_held_declaration_is_blocked_even_when_approved(gateway: Gateway) -> None:
    held, pending = _held(gateway)
    decided = approve(pending, approver="li-wei", reason="checked", now=NOW + timedelta(hours=1))
    record = json.loads(json.dumps(held.record))
    record["declaration"]["installation"]["unLocode"] = "NLRTM"
    edited = dataclasses.replace(held, record=record)
    result = _approved(gateway, edited, decided)
    assert result.outcome == "blocked" and result.outbound is None
    assert [e.kind for e in result.entries] == ["approval_approved", "transfer_blocked"]


def test_an_approved_held_declaration_is_sealed_once_naming_the_approval(
    gateway: Gateway,
) -> None:
    held, pending = _held(gateway)
    decided = approve(pending, approver="li-wei", reason="checked", now=NOW + timedelta(hours=1))
    result = _approved(gateway, held, decided)
    assert result.outcome == "released" and result.outbound is not None
    kinds = [(e.kind, e.approval_id) for e in result.entries]
    assert kinds == [("approval_approved", pending.approval_id), ("transfer", pending.approval_id)]
    denied = deny(pending, approver="li-wei", reason="no", now=NOW + timedelta(hours=1))
    closed = _approved(gateway, held, denied)
    assert closed.outcome == "denied" and closed.outbound is None
    assert [e.kind for e in closed.entries] == ["approval_denied"]
    with pytest.raises(ValueError, match="is pending"):
        _approved(gateway, held, pending)


# ----------------------------------------------------------------------------------------------
# good paths


def test_the_shipped_policy_classifies_every_path_of_every_declaration(
    policy: Policy, counters: CounterState, factors: dict[tuple[str, str], EmissionFactor]
) -> None:
    """The richest document of each kind (every optional field filled) has no unknown field
    for any recipient: deny by default never blocks a declaration for a missing policy row."""
    source = read_source(battery())
    certs = certificate_refs(source, [_certificate(footprint_digest(source.pact))])
    inp = art7_input(performanceClass="B")
    art7 = build_art7(source, read_art7_input(inp), certificates=certs, issued_at=NOW)
    data = cbam_input(goodDescription="unwrought aluminium")
    data["installation"]["installationId"] = "CN-INST-0001"
    cbam = build_cbam(read_source(aluminium()), read_cbam_input(data), issued_at=NOW)
    study = build_study(
        source,
        factors=factors,
        inp=read_study_input(
            {"goal": "g", "intendedApplication": "a", "commissioner": "c", "practitioner": "p"}
        ),
        certificates=certs,
        issued_at=NOW,
    )
    al_study = build_study(read_source(aluminium()), factors=factors, issued_at=NOW)
    for doc in (art7, cbam, study, al_study):
        for rid, recipient in policy.recipients.items():
            for purpose in recipient.purposes:
                decision = evaluate(policy, declaration_record(doc), rid, purpose, counters, NOW)
                unknown = [r.path for r in decision.reasons if r.code == "unknown_field"]
                assert unknown == [], (doc.doc_type, rid, purpose)


def test_art7_figures_per_kwh_and_the_passport_validates_against_the_schema() -> None:
    source = read_source(battery())
    certs = certificate_refs(source, [_certificate(footprint_digest(source.pact))])
    doc = build_art7(source, read_art7_input(art7_input()), certificates=certs, issued_at=NOW)
    stages = {s.passport_stage: (s.kg_co2e_per_kwh, s.origin) for s in doc.stages}
    assert stages == {
        "RawMaterialExtraction": (Decimal("48.20"), "footprint"),
        "MainProduction": (Decimal("13.20"), "footprint"),
        "Distribution": (Decimal("0.35"), "declaration input"),
        "Recycling": (Decimal("-1.10"), "declaration input"),
    }
    assert doc.total_per_kwh == Decimal("60.65")
    assert doc.absolute_kg_co2e == Decimal("169820.00")
    assert (doc.pcr_pack_id, doc.pcr_pack_version) == ("CN-CCL-PCR-LIB-TRACTION", "1.0.0")
    body = doc.to_json()
    assert body["performanceClass"] is None and "delegated act" in body["performanceClassNote"]
    assert body["certificates"][0]["certificateId"] == "CQC-2026-0001"
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    written = dump_json(doc.passport())
    jsonschema.validate(json.loads(written), schema)
    assert '"batteryCarbonFootprint":60.65' in written  # exact digits, a JSON number


def test_art7_converts_a_footprint_per_several_kwh_and_per_battery() -> None:
    fp = battery()
    fp["pcf"]["declaredUnitAmount"] = "0.5"  # 61.40 kg per 0.5 kWh
    doc = build_art7(read_source(fp), read_art7_input(art7_input()), issued_at=NOW)
    assert doc.stages[0].kg_co2e_per_kwh == Decimal("96.40")
    piece = example_footprint()  # a consumer battery per piece (CN-CCL-PCR-LIB-CONSUMER)
    piece["pcf"].update(declaredUnitOfMeasurement="piece", declaredUnitAmount="10")
    inp = art7_input(serviceLifeEnergyKWh="0.5")  # 10 batteries x 0.5 kWh each
    doc = build_art7(read_source(piece), read_art7_input(inp), issued_at=NOW)
    assert doc.pcr_pack_id == "CN-CCL-PCR-LIB-CONSUMER"
    assert doc.stages[1].kg_co2e_per_kwh == Decimal("2.64")  # 13.20 / 5 kWh


@pytest.mark.parametrize("klass", [None, "B"])
def test_every_art7_passport_validates(klass: str | None) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    inp = art7_input(performanceClass=klass)
    del inp["serviceLifeEnergyKWh"]  # no absolute footprint then
    doc = build_art7(read_source(battery()), read_art7_input(inp), issued_at=NOW)
    passport = json.loads(dump_json(doc.passport()))
    jsonschema.validate(passport, schema)
    assert "absoluteCarbonFootprint" not in passport
    assert passport["carbonFootprintPerformanceClass"] == (klass or "N/A")


def test_a_released_art7_declaration_has_exactly_one_audit_entry_and_opens(
    gateway: Gateway,
    recipient_keys: dict[str, X25519PrivateKey],
    keyring: KeyRing,
) -> None:
    doc = build_art7(read_source(battery()), read_art7_input(art7_input()), issued_at=NOW)
    result = release(
        doc,
        gateway=gateway,
        recipient="eu-battery-oem-de",
        purpose="battery-regulation-art7",
        now=NOW,
    )
    assert result.outcome is Outcome.ALLOWED and result.message is not None
    sink = gateway.sink
    assert isinstance(sink, InMemoryTransferSink)
    assert sink.sent == [result.message]
    (entry,) = sink.audit.entries()
    assert entry.kind == EntryKind.TRANSFER.value and entry == result.entry
    assert entry.message_id == result.message.message_id
    opened = open_message(
        result.message,
        recipient_id="eu-battery-oem-de",
        private_key=recipient_keys["eu-battery-oem-de"],
        trusted=keyring,
    )
    got = opened.footprint
    assert got["declaration"] == declaration_record(doc)["declaration"]
    assert got["declaration"]["carbonFootprint"]["lifeCycle"] == "60.65"
    assert got["batteryPassport"]["carbonFootprintPerformanceClass"] == "N/A"


def test_cbam_specific_emissions_per_tonne() -> None:
    doc = build_cbam(read_source(aluminium()), read_cbam_input(cbam_input()), issued_at=NOW)
    assert (doc.direct, doc.indirect, doc.total) == (
        Decimal("6.3"),
        Decimal("10.2"),
        Decimal("16.5"),
    )
    body = doc.to_json()
    assert body["installation"]["unLocode"] == "CN BTO"
    assert body["good"]["unit"] == "tCO2e/t"
    assert body["pcrPack"]["id"].startswith("CN-CCL-PCR-")
    assert "precursors" in body["assumptions"][0]


def test_the_study_report_cites_each_factor_with_its_source_and_version(
    factors: dict[tuple[str, str], EmissionFactor],
) -> None:
    doc = build_study(read_source(aluminium()), factors=factors, issued_at=NOW)
    body = doc.to_json()
    grid, unknown = body["dataSources"]["backgroundFactors"]
    assert (grid["factorId"], grid["version"], grid["referenceYear"]) == (
        "cn:mee:grid:national",
        "2022",
        2022,
    )
    assert (
        grid["source"]
        and grid["url"].startswith("http")
        and grid["coverage"]
        in {
            "total",
            "split",
        }
    )
    assert unknown["source"] is None and "not in the given factor table" in unknown["note"]
    assert body["results"]["perStage"] == [
        {"stage": "raw_material_acquisition", "kgCO2e": "4500"},
        {"stage": "production", "kgCO2e": "12000"},
    ]
    assert body["systemBoundary"]["boundary"] == "cradle-to-gate"
    with_uncertainty = build_study(read_source(battery()), factors=factors, issued_at=NOW)
    assert with_uncertainty.to_json()["uncertainty"]["upper95"] == "70.9"


def test_the_printable_document_escapes_and_is_self_contained() -> None:
    inp = art7_input()
    inp["manufacturer"]["name"] = "<script>alert(1)</script> Cells"
    doc = build_art7(read_source(battery()), read_art7_input(inp), issued_at=NOW)
    page = render_html(doc.title, doc.sections())
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "@media print" in page and "src=" not in page and "href=" not in page
    assert "60.65 kg CO2e/kWh" in page


def test_inputs_with_wrong_types_are_named() -> None:
    with pytest.raises(DeclarationInvalid) as caught:
        read_art7_input(["not", "an", "object"])
    assert caught.value.violations[0].code == "type"
    assert isinstance(read_art7_input(art7_input()), Art7Input)


def test_a_roll_up_and_its_gateway_record_read_the_same() -> None:
    """The ``pcf.products`` roll-up as JSON and the gateway's record of it (PACT + lineage
    extension) give the same footprint, hash, lineage and own emissions."""
    rolled = rolled_footprint()
    as_json = json.loads(rolled.model_dump_json(by_alias=True, exclude_none=True))
    a, b = read_source(as_json), read_source(gateway_record(rolled))
    assert (a.pact, a.content_hash, a.inputs) == (b.pact, b.content_hash, b.inputs)
    assert a.own_electricity == b.own_electricity == Decimal("6.70750")
    assert [(r.factor_id, r.factor_version) for r in a.inputs if r.kind == "factor"] == [
        ("bg:cn-aluminium-ingot", "2022")
    ]


def test_the_public_names_are_sorted_and_complete() -> None:
    import pcf_exchange.gateway.declarations as module

    names = list(module.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    public = {n for n, v in vars(module).items() if not n.startswith("_")}
    public -= {n for n, v in vars(module).items() if isinstance(v, type(module))}
    assert public == set(names)
