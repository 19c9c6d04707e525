"""Fixtures for the contracts tests: realistic records, keys, an in-memory registry + serde, the
normative PACT files, and a real Confluent-compatible registry server on an OS-assigned port."""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange import contracts
from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    EmissionFactor,
    InMemorySchemaRegistry,
    ProductFootprint,
    SupplierKey,
    parse,
    parse_footprint,
    register_all,
)
from pcf_exchange.contracts.examples import example_bom, example_factor, example_footprint

ROOT = Path(__file__).resolve().parents[2]
PACT_DIR = ROOT.parent / "shared" / "pact"


@pytest.fixture(scope="session")
def pact_dir() -> Path:
    if not (PACT_DIR / "v3" / "openapi.yaml").exists():
        pytest.skip(
            f"PACT spec files not found at {PACT_DIR} (../shared relative to the repo root)"
        )
    return PACT_DIR


FOOTPRINT_JSON: Final = example_footprint()
BOM_JSON: Final = example_bom()
FACTOR_JSON: Final = example_factor()


@pytest.fixture
def footprint_json() -> dict[str, Any]:
    return copy.deepcopy(FOOTPRINT_JSON)


@pytest.fixture
def footprint() -> ProductFootprint:
    return parse_footprint(copy.deepcopy(FOOTPRINT_JSON))


@pytest.fixture
def bom_json() -> dict[str, Any]:
    return copy.deepcopy(BOM_JSON)


@pytest.fixture
def bom() -> BillOfMaterials:
    return parse(BillOfMaterials, copy.deepcopy(BOM_JSON))


@pytest.fixture
def factor() -> EmissionFactor:
    return parse(EmissionFactor, copy.deepcopy(FACTOR_JSON))


@pytest.fixture(scope="session")
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture
def supplier_key(private_key: Ed25519PrivateKey) -> SupplierKey:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return SupplierKey(
        supplier_id="example-cells",
        key_id="k-2025-01",
        public_key=raw,
        valid_from=datetime(2025, 1, 1, tzinfo=UTC),
        registered_by="operator",
    )


@pytest.fixture
def registry() -> InMemorySchemaRegistry:
    reg = InMemorySchemaRegistry()
    register_all(reg)
    return reg


@pytest.fixture
def serde(registry: InMemorySchemaRegistry) -> AvroSerde:
    return AvroSerde(registry)


@pytest.fixture
def make_uuid() -> Callable[[int], UUID]:
    return lambda n: UUID(int=n)


# --------------------------------------------------------------------------------------------
# A Confluent-compatible registry server (the REST subset our client uses) on 127.0.0.1


def registry_app(backend: contracts.InMemorySchemaRegistry) -> Any:
    from fastapi import Body, FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    def error(status: int, code: int, message: str) -> JSONResponse:
        return JSONResponse({"error_code": code, "message": message}, status_code=status)

    @app.post("/subjects/{subject}/versions")
    def register(subject: str, body: dict[str, Any] = Body(...)) -> Any:  # noqa: B008
        try:
            return {"id": backend.register(subject, body["schema"])}
        except contracts.IncompatibleSchemaError as exc:
            return error(
                409,
                409,
                "Schema being registered is incompatible with an earlier schema; " + exc.message,
            )
        except contracts.InvalidSchemaError as exc:
            return error(422, 42201, exc.message)

    @app.post("/subjects/{subject}")
    def lookup(subject: str, body: dict[str, Any] = Body(...)) -> Any:  # noqa: B008
        try:
            schema_id = backend.lookup(subject, body["schema"])
        except contracts.UnknownSchemaError as exc:
            return error(404, 40403, exc.message)
        version = next(v for v in backend.versions(subject) if backend.latest(subject).version >= v)
        return {"subject": subject, "id": schema_id, "version": version, "schema": body["schema"]}

    @app.get("/schemas/ids/{schema_id}")
    def get_schema(schema_id: int) -> Any:
        try:
            return {"schema": backend.get_schema(schema_id)}
        except contracts.UnknownSchemaError:
            return error(404, 40403, "Schema not found")

    @app.get("/subjects")
    def subjects() -> Any:
        return backend.subjects()

    @app.get("/subjects/{subject}/versions")
    def versions(subject: str) -> Any:
        found = backend.versions(subject)
        return found if found else error(404, 40401, "Subject not found")

    @app.get("/subjects/{subject}/versions/latest")
    def latest(subject: str) -> Any:
        try:
            entry = backend.latest(subject)
        except contracts.UnknownSchemaError:
            return error(404, 40401, "Subject not found")
        return {
            "subject": entry.subject,
            "version": entry.version,
            "id": entry.schema_id,
            "schema": entry.schema,
        }

    @app.get("/config")
    def global_config() -> Any:
        return {"compatibilityLevel": backend.compatibility().value}

    @app.get("/config/{subject}")
    def subject_config(subject: str) -> Any:
        return {"compatibilityLevel": backend.compatibility(subject).value}

    @app.put("/config")
    def put_global(body: dict[str, Any] = Body(...)) -> Any:  # noqa: B008
        backend.set_compatibility(contracts.CompatibilityLevel(body["compatibility"]))
        return {"compatibility": body["compatibility"]}

    @app.put("/config/{subject}")
    def put_subject(subject: str, body: dict[str, Any] = Body(...)) -> Any:  # noqa: B008
        backend.set_compatibility(contracts.CompatibilityLevel(body["compatibility"]), subject)
        return {"compatibility": body["compatibility"]}

    @app.post("/compatibility/subjects/{subject}/versions")
    def compatible(subject: str, body: dict[str, Any] = Body(...)) -> Any:  # noqa: B008
        if not backend.versions(subject):
            return error(404, 40401, "Subject not found")
        messages = backend.test_compatibility(subject, body["schema"])
        return {"is_compatible": not messages, "messages": messages}

    @app.get("/boom")
    def boom() -> Any:
        return error(500, 50001, "store unavailable")

    return app


class RegistryServer:
    def __init__(self, url: str, backend: contracts.InMemorySchemaRegistry) -> None:
        self.url, self.backend = url, backend


@pytest.fixture(scope="module")
def registry_server() -> Iterator[RegistryServer]:
    import uvicorn

    backend = contracts.InMemorySchemaRegistry()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(registry_app(backend), lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("registry test server did not start")
        time.sleep(0.02)
    try:
        yield RegistryServer(f"http://127.0.0.1:{port}", backend)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# --------------------------------------------------------------------------------------------
# One realistic instance of every wire record type


@pytest.fixture
def wire_samples(
    footprint: ProductFootprint,
    bom: BillOfMaterials,
    factor: EmissionFactor,
    supplier_key: SupplierKey,
    private_key: Ed25519PrivateKey,
) -> dict[str, Any]:
    from pcf_exchange.contracts import (
        ApprovalDecision,
        ApprovalRequest,
        AuditCheckpoint,
        AuditEntry,
        Completeness,
        DeclaredUnit,
        Destination,
        FieldAction,
        LineageInput,
        MissingComponent,
        OwnEmissions,
        RecordRef,
        Rejection,
        RolledUpFootprint,
        TransferDecision,
        ValidationFailed,
        Violation,
        content_hash,
        sign,
    )

    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    signed_fp = sign(
        private_key, footprint, supplier_id="example-cells", key_id="k-2025-01", sequence=7
    )
    digest = content_hash(signed_fp)
    ref = RecordRef(
        topic="pcf.products",
        key=bom.product_id,
        footprint_id=footprint.id,
        sequence=4,
        content_hash=digest,
    )
    dest = Destination(type="EU", country="DE", recipient_id="bpnl-oem-1", recipient_type="OEM")
    actions = (
        FieldAction(
            path="pcf.pcfExcludingBiogenicUptake",
            action="ALLOW_POL",
            rule_id="6.1#1",
            legal_basis="Art. 3",
        ),
        FieldAction(path="comment", action="RED", rule_id="6.1#4"),
    )
    rolled = RolledUpFootprint(
        product_id=bom.product_id,
        owner="example-pack",
        bom_revision=3,
        sequence=4,
        declared_unit=DeclaredUnit(amount=Decimal("1"), unit="kilowatt hour"),
        pcf_excluding_biogenic_uptake=Decimal("71.0220"),
        own_emissions=OwnEmissions(
            direct_kg_co2e=Decimal("0.3"),
            electricity_kg_co2e=Decimal("6.70750"),
            other_kg_co2e=Decimal("0"),
        ),
        inputs=(
            LineageInput(
                component_index=0,
                kind="footprint",
                product_id="urn:pact:example-cells.cn:product-id:LFP280",
                footprint_id=footprint.id,
                supplier_id="example-cells",
                sequence=7,
                content_hash=digest,
                quantity=Decimal("1.05"),
                unit="kilowatt hour",
                contribution_kg_co2e=Decimal("64.470"),
            ),
        ),
        completeness=Completeness(
            components_total=3,
            components_resolved=1,
            components_on_fallback=0,
            coverage_percent=Decimal("33.3"),
            complete=False,
        ),
        missing_components=(
            MissingComponent(
                component_index=1, factor_id="bg:cn-aluminium-ingot", reason="no_factor"
            ),
        ),
        footprint=footprint,
        method="pcfx-rollup/attributional",
        engine_version="0.1.0",
        computed_at=now,
    )
    error = ValidationFailed(
        [Violation("components[2].quantity", "min_value", "must be a decimal > 0", "'-1'")]
    )
    return {
        "SignedFootprint": signed_fp,
        "SignedBillOfMaterials": sign(
            private_key, bom, supplier_id="example-pack", key_id="k1", sequence=3
        ),
        "SignedEmissionFactor": sign(
            private_key, factor, supplier_id="operator", key_id="op-1", sequence=1
        ),
        "SignedSupplierKey": sign(
            private_key, supplier_key, supplier_id="operator", key_id="op-1", sequence=2
        ),
        "RolledUpFootprint": rolled,
        "Rejection": Rejection.of(
            error,
            source_topic="pcf.bom",
            partition=2,
            offset=1234,
            original=b"\x00" * 70_000,
            rejected_at=now,
            key=b"urn:x",
            processor="streams/ingest",
        ),
        "TransferDecision": TransferDecision(
            decision_id=UUID(int=1),
            record_ref=ref,
            destination=dest,
            outcome="PENDING_APPROVAL",
            mechanism="EXEMPT_ART3",
            field_actions=actions,
            policy_version="2025.06-1",
            approval_id=UUID(int=2),
            decided_at=now,
        ),
        "ApprovalRequest": ApprovalRequest(
            approval_id=UUID(int=2),
            decision_id=UUID(int=1),
            record_ref=ref,
            destination=dest,
            rule_ids=("6.1#10",),
            reason="Facility coordinates requested for CBAM",
            requested_by="gateway",
            requested_at=now,
        ),
        "ApprovalDecision": ApprovalDecision(
            approval_id=UUID(int=2), outcome="APPROVED", approver="officer-li", decided_at=now
        ),
        "AuditEntry": AuditEntry(
            seq=0,
            prev_hash="0" * 64,
            entry_hash="a" * 64,
            record_ref=ref,
            decision_id=UUID(int=1),
            recipient_id="bpnl-oem-1",
            jurisdiction="DE",
            legal_mechanism="EXEMPT_ART3",
            policy_version="2025.06-1",
            field_actions=actions,
            time=now,
        ),
        "AuditCheckpoint": AuditCheckpoint(
            tree_size=1, root_hash="b" * 64, signature=bytes(64), key_id="audit-1", issued_at=now
        ),
        "ProductFootprint": footprint,
        "BillOfMaterials": bom,
        "EmissionFactor": factor,
        "SupplierKey": supplier_key,
    }
