"""pcf-exchange data contracts: records, rules, PACT v3 JSON, Avro serde, registries, signing.

Everything producers, streams and the gateway need is importable from here; the ``_x`` modules
are private. Records are frozen pydantic models; external data goes through ``check_*``
(returns a :class:`CheckResult`) or ``parse_*`` (raises :class:`ValidationFailed`).

Names load on first use (PEP 562 :func:`__getattr__`): importing one small module of the package
(``contracts.errors``, ``contracts.kafka_client``) does not import the pydantic records, so a
``pcfx`` command that needs none of them starts without them (``tests/pcfx/test_lazy_cli.py``).
The imports below are the one list of what the package exports: type checkers read them, and
:func:`__getattr__` reads the same statements to know which module holds a name.
"""

import ast as _ast
import functools as _functools
import importlib as _importlib
import typing as _typing
from pathlib import Path as _Path

if _typing.TYPE_CHECKING:
    from pcf_exchange.contracts._envelope import (
        MAX_SEQUENCE,
        PAYLOAD_BATCH_ROOT,
        PAYLOAD_BOM,
        PAYLOAD_FACTOR,
        PAYLOAD_FOOTPRINT,
        PAYLOAD_SUPPLIER_KEY,
        BatchProof,
        Payload,
        SignatureCheck,
        SignedBatch,
        SignedBillOfMaterials,
        SignedEmissionFactor,
        SignedFootprint,
        SignedRecord,
        SignedSupplierKey,
        batch_root_bytes,
        check_signature,
        content_hash,
        payload_json,
        sign,
        sign_batch,
        sign_bytes,
        sign_each,
        signing_bytes,
        verify,
        verify_bytes,
        verify_signed_bytes,
    )
    from pcf_exchange.contracts._fast import CheckedFootprint, read_footprint
    from pcf_exchange.contracts._files import (
        LoadedRecord,
        json_schema,
        load_boms,
        load_factors,
        load_footprints,
        read_boms,
        read_factors_csv,
        read_factors_json,
        read_footprints,
    )
    from pcf_exchange.contracts._footprint import (
        PCFX_EXTENSION_SCHEMA,
        CarbonFootprint,
        DataGrade,
        DataModelExtension,
        DataQualityIndicators,
        EmissionFactorSource,
        FieldLabel,
        PcfxExtension,
        PersonalInfo,
        PilotCategory,
        ProductFootprint,
        ProductOrSectorSpecificRule,
        Uncertainty,
        Verification,
    )
    from pcf_exchange.contracts._pact import (
        check_footprint,
        dump_pact_json,
        parse_footprint,
        to_pact_json,
    )
    from pcf_exchange.contracts._records import (
        ActivityLine,
        ApprovalDecision,
        ApprovalOutcome,
        ApprovalRequest,
        AuditCheckpoint,
        AuditEntry,
        BillOfMaterials,
        BomComponent,
        Completeness,
        DeclaredUnit,
        Destination,
        DestinationType,
        EmissionFactor,
        Facility,
        FactorCoverage,
        FactorReference,
        FieldAction,
        FieldActionKind,
        LegalMechanism,
        LineageInput,
        MissingComponent,
        OwnEmissions,
        ProcessEmissions,
        ProductInfo,
        RecordRef,
        Rejection,
        RejectionViolation,
        RolledUpFootprint,
        SignerRole,
        SupplierKey,
        TransferDecision,
        TransferOutcome,
    )
    from pcf_exchange.contracts._registry import (
        SCHEMAS_TOPIC,
        SERVICE_STARTUP_S,
        CompatibilityLevel,
        HttpSchemaRegistry,
        InMemorySchemaRegistry,
        KafkaSchemaRegistry,
        RegisteredSchema,
        SchemaRegistry,
        check_compatibility,
        register_missing,
        register_schemas,
    )
    from pcf_exchange.contracts._schemas import schema_json, schema_names
    from pcf_exchange.contracts._serde import (
        TOPICS,
        WIRE_MODELS,
        AvroSerde,
        frame,
        from_avro_dict,
        register_all,
        subject_for,
        to_avro_dict,
        topic_schemas,
        unframe,
    )
    from pcf_exchange.contracts._v2 import V2_LOSSES, to_pact_v2_json
    from pcf_exchange.contracts._validate import CheckResult, check, parse
    from pcf_exchange.contracts.errors import (
        ContractError,
        IncompatibleSchemaError,
        InvalidSchemaError,
        PcfError,
        RegistryError,
        SerdeError,
        TrustError,
        UnitError,
        UnknownSchemaError,
        ValidationFailed,
        Violation,
    )
    from pcf_exchange.contracts.keyring import (
        KeyRegistration,
        Keyring,
        KeyringOutcome,
        KeyringUpdate,
        in_namespace,
    )

__all__ = [
    "MAX_SEQUENCE",
    "PAYLOAD_BATCH_ROOT",
    "PAYLOAD_BOM",
    "PAYLOAD_FACTOR",
    "PAYLOAD_FOOTPRINT",
    "PAYLOAD_SUPPLIER_KEY",
    "PCFX_EXTENSION_SCHEMA",
    "SCHEMAS_TOPIC",
    "SERVICE_STARTUP_S",
    "TOPICS",
    "V2_LOSSES",
    "WIRE_MODELS",
    "ActivityLine",
    "ApprovalDecision",
    "ApprovalOutcome",
    "ApprovalRequest",
    "AuditCheckpoint",
    "AuditEntry",
    "AvroSerde",
    "BatchProof",
    "BillOfMaterials",
    "BomComponent",
    "CarbonFootprint",
    "CheckResult",
    "CheckedFootprint",
    "CompatibilityLevel",
    "Completeness",
    "ContractError",
    "DataGrade",
    "DataModelExtension",
    "DataQualityIndicators",
    "DeclaredUnit",
    "Destination",
    "DestinationType",
    "EmissionFactor",
    "EmissionFactorSource",
    "Facility",
    "FactorCoverage",
    "FactorReference",
    "FieldAction",
    "FieldActionKind",
    "FieldLabel",
    "HttpSchemaRegistry",
    "InMemorySchemaRegistry",
    "IncompatibleSchemaError",
    "InvalidSchemaError",
    "KafkaSchemaRegistry",
    "KeyRegistration",
    "Keyring",
    "KeyringOutcome",
    "KeyringUpdate",
    "LegalMechanism",
    "LineageInput",
    "LoadedRecord",
    "MissingComponent",
    "OwnEmissions",
    "Payload",
    "PcfError",
    "PcfxExtension",
    "PersonalInfo",
    "PilotCategory",
    "ProcessEmissions",
    "ProductFootprint",
    "ProductInfo",
    "ProductOrSectorSpecificRule",
    "RecordRef",
    "RegisteredSchema",
    "RegistryError",
    "Rejection",
    "RejectionViolation",
    "RolledUpFootprint",
    "SchemaRegistry",
    "SerdeError",
    "SignatureCheck",
    "SignedBatch",
    "SignedBillOfMaterials",
    "SignedEmissionFactor",
    "SignedFootprint",
    "SignedRecord",
    "SignedSupplierKey",
    "SignerRole",
    "SupplierKey",
    "TransferDecision",
    "TransferOutcome",
    "TrustError",
    "Uncertainty",
    "UnitError",
    "UnknownSchemaError",
    "ValidationFailed",
    "Verification",
    "Violation",
    "batch_root_bytes",
    "check",
    "check_compatibility",
    "check_footprint",
    "check_signature",
    "content_hash",
    "dump_pact_json",
    "frame",
    "from_avro_dict",
    "in_namespace",
    "json_schema",
    "load_boms",
    "load_factors",
    "load_footprints",
    "parse",
    "parse_footprint",
    "payload_json",
    "read_boms",
    "read_factors_csv",
    "read_factors_json",
    "read_footprint",
    "read_footprints",
    "register_all",
    "register_missing",
    "register_schemas",
    "schema_json",
    "schema_names",
    "sign",
    "sign_batch",
    "sign_bytes",
    "sign_each",
    "signing_bytes",
    "subject_for",
    "to_avro_dict",
    "to_pact_json",
    "to_pact_v2_json",
    "topic_schemas",
    "unframe",
    "verify",
    "verify_bytes",
    "verify_signed_bytes",
]


@_functools.cache
def _homes() -> dict[str, str]:
    """Each exported name's module, from the ``if TYPE_CHECKING:`` imports of this file."""
    tree = _ast.parse(_Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, _ast.If))
    return {
        alias.asname or alias.name: node.module
        for node in block.body
        if isinstance(node, _ast.ImportFrom) and node.module is not None
        for alias in node.names
    }


def __getattr__(name: str) -> object:
    """Import the module that holds *name* (a name listed above, or a submodule) on first use."""
    home = _homes().get(name)
    if home is None:
        try:
            return _importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as missing:
            if missing.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
