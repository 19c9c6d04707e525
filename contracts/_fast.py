"""The ingestion's fast path: a v2 signed footprint read once, its rules checked as compiled code.

The streams check every supplier footprint before the roll-up sees it. Through the models that
costs a fastavro decode of ~100 fields, a pydantic validation and (v1) rebuilding the canonical
JSON the signature covers. A v2 record (:mod:`contracts._envelope`) carries the signed bytes
instead, so :func:`read_footprint` takes the Avro datum of its small envelope, reads the body
once with orjson and checks the PACT v3 rules on that JSON without model objects, returning a
:class:`CheckedFootprint`: what the trust checks and the roll-up need. ``pcfx publish`` checks
footprint files with the same validator (:mod:`producers._fastpath`).

**The rules are tables, compiled once.** :data:`FOOTPRINT_RULES` says, object by object, which
fields exist, which are required or may not be null, and what each must be (a decimal with a
sign rule, an instant, a URN list, ...), plus each object's cross-field rules as a small
function. :func:`contracts._checkgen.compile_object` turns the table, at import, into generated
straight-line Python (one function per object, each field's check inlined as an expression):
:data:`footprint_ok`. Sub-objects a supplier repeats record after record (its sector rules,
emission-factor sources, verification) are answered once per distinct value; everything that
varies per record (figures, stages, interval, ids) is checked every time.

**The rules are the models' rules, and only theirs.** The validator answers one question: *does
the model certainly accept this record?* When it cannot say yes (a rule is broken, or the
record uses something the tables do not cover: a foreign Data Model Extension, JSON that is not
in canonical form), :func:`read_footprint` returns ``None`` and the caller validates through the
model, which gives the rejection with its usual reason and field path. So a bad record reaches
the DLQ with exactly the reasons it always had, and a good one costs no model. The property
that makes this sound, *fast accepts => the model accepts*, is tested on every bad-record case
of the contract tests, on generated single and double mutations, and kind by kind against the
pydantic types (``tests/contracts/test_fast_path.py``): a rule changed in
:mod:`contracts._footprint` must be changed in the tables too, and those tests say so when it is
not. Only the messages live in one place (the models); the checks exist twice.

**Where the time goes** (one record, ``bench/bench_ingest.py``; CPU time, measured on this
2-core machine under a load average of ~7, so the absolute figures are high): the envelope's Avro
~16 µs, the body read ~15 µs plus ~4 µs to confirm it is canonical, the rules ~46 µs for a record
not seen before (the interpreted checks they replace took ~68 µs on the same records).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Final
from uuid import UUID

import orjson

from pcf_exchange.contracts._checkgen import (
    Bool,
    Call,
    Dec,
    Instant,
    List,
    Obj,
    OneOf,
    Pattern,
    Recurring,
    Str,
    compile_object,
    instant,
)
from pcf_exchange.contracts._envelope import MAX_SEQUENCE, PAYLOAD_FOOTPRINT, split_pae
from pcf_exchange.contracts._footprint import (
    DECLARED_UNITS,
    PCFX_EXTENSION_SCHEMA,
    REGIONS,
    CarbonFootprint,
    DataGrade,
    PersonalInfo,
    PilotCategory,
    ProductFootprint,
    _add_years,
)
from pcf_exchange.contracts._pact import parse_footprint
from pcf_exchange.contracts._schemas import expanded
from pcf_exchange.contracts._types import (
    _DECIMAL_RE,
    _FACTOR_ID_RE,
    _FIELD_PATH_RE,
    _SEMVER_RE,
    _SHA256_RE,
    _URI_RE,
    _URN_RE,
    _UUID_RE,
    MAX_DECIMAL_CHARS,
    MAX_ID,
    MAX_LIST,
    MAX_NAME,
    MAX_TEXT,
)
from pcf_exchange.contracts.units import UNITS

__all__ = [
    "BODY_KEYS",
    "ROLLED_UP_RULES",
    "CheckedFootprint",
    "FastProof",
    "canonical_uuid",
    "footprint_datum",
    "footprint_ok",
    "read_footprint",
    "rolled_up_ok",
]

BODY_KEYS: Final = frozenset({"keyId", "payload", "sequence", "supplierId"})

_STRICT_JSON: Final = orjson.OPT_SORT_KEYS
_SPEC_VERSION_3_RE: Final = re.compile(r"3\.[0-9]+\.[0-9]+(-[0-9]{8})?")
_COUNTRY_RE: Final = re.compile(r"[A-Z]{2}")
_SUBDIVISION_RE: Final = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}")
_IPCC_RE: Final = re.compile(r"AR[0-9]+")
_STAGE_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PILOT: Final = frozenset(m.value for m in PilotCategory)
_GRADES: Final = frozenset(m.value for m in DataGrade)
_PERSONAL: Final = frozenset(m.value for m in PersonalInfo)
_UNITS: Final = frozenset(DECLARED_UNITS)
_REGIONS: Final = frozenset(REGIONS)


@dataclass(frozen=True, slots=True)
class FastProof:
    """A ``batchProof`` as read from the Avro datum (the fields the proof check reads)."""

    root_signature: bytes
    leaf_index: int
    tree_size: int
    audit_path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class CheckedFootprint:
    """A v2 ``pcf.declared`` record whose envelope and PACT rules passed (not yet its trust:
    the signature, key and owner are the ingestion's steps 2-6).

    ``payload`` is the footprint's PACT v3 JSON exactly as signed (read-only by convention);
    :attr:`footprint` builds the model from it for edge uses (the hot path never needs it).
    """

    json_title: ClassVar[str] = "SignedFootprint"
    supplier_id: str
    key_id: str
    sequence: int
    payload_type: str
    signature: bytes
    batch_proof: FastProof | None
    signed_body: bytes
    payload: Mapping[str, Any]
    product_ids: tuple[str, ...]
    company_ids: tuple[str, ...]

    @property
    def footprint(self) -> ProductFootprint:
        """The model of :attr:`payload` (validated again: for edges, not the hot path)."""
        return parse_footprint(dict(self.payload))

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of the signed bytes (what lineage and the sequence ledger cite)."""
        return hashlib.sha256(self.signed_body).hexdigest()


# --------------------------------------------------------------------------------------------
# The rules, as tables (contracts._checkgen compiles them once, at import, into one function per
# object). Each says what the model accepts and nothing more.


_name: Final = Str(1, MAX_NAME)
_text: Final = Str(0, MAX_TEXT)
_names: Final = List(_name, 1, 1_000)
_urns: Final = List(Pattern(_URN_RE, MAX_ID), 1, MAX_LIST)


def _instant(value: Any) -> datetime | None:
    """The instant of RFC 3339 text as the model reads it, else None."""
    return instant(value) if type(value) is str else None


def _rule_cross(rule: dict[str, Any]) -> bool:
    """An "Other" operator names itself."""
    return not (rule["operator"] == "Other" and rule.get("otherOperatorName") is None)


_rule: Final = compile_object(
    Obj(
        {
            "operator": OneOf(frozenset({"PEF", "EPD International", "Other"})),
            "ruleNames": _names,
            "otherOperatorName": _name,
        },
        required=frozenset({"operator", "ruleNames"}),
        post=_rule_cross,
        name="rule",
    )
)


def _rules(value: Any) -> bool:
    """``productOrSectorSpecificRules``: 1..100 unique rules."""
    if type(value) is not list or not 1 <= len(value) <= 100:
        return False
    if not all(_rule(rule) for rule in value):
        return False
    seen = {(r["operator"], tuple(r["ruleNames"]), r.get("otherOperatorName")) for r in value}
    return len(seen) == len(value)


def _pcf_cross(pcf: dict[str, Any]) -> bool:
    """The CarbonFootprint rules across fields (its own fields already passed)."""
    start = _instant(pcf["referencePeriodStart"])
    end = _instant(pcf["referencePeriodEnd"])
    if start is None or end is None or not start < end:
        return False
    geographies = (
        (pcf.get("geographyRegionOrSubregion") is not None)
        + (pcf.get("geographyCountry") is not None)
        + (pcf.get("geographyCountrySubdivision") is not None)
    )
    if geographies > 1:
        return False
    if (
        pcf.get("packagingEmissionsIncluded") is False
        and pcf.get("packagingGhgEmissions") is not None
    ):
        return False
    return not (
        pcf.get("ccsTechnologicalCO2CaptureIncluded") is False
        and any(pcf.get(k) is not None for k in _CCS_DEPENDENT)
    )


_PRIMARY_DATA_SHARE: Final = Dec("percent")
"""PACT ``primaryDataShare``: a percentage (0..100). One rule object for the supplier's
footprint (:data:`_PCF`) and the rolled-up wrapper (:data:`ROLLED_UP_RULES`)."""
_DQI: Final = Obj(
    {
        "technologicalDQR": Dec("one_to_five"),
        "geographicalDQR": Dec("one_to_five"),
        "temporalDQR": Dec("one_to_five"),
    },
    required=frozenset({"technologicalDQR", "geographicalDQR", "temporalDQR"}),
    name="dqi",
)
"""PACT ``dqi``: the three data quality ratings, each 1..5, all required. Shared as
:data:`_PRIMARY_DATA_SHARE` is."""
_CCS_DEPENDENT: Final = (
    "ccsTechnologicalCO2Capture",
    "technologicalCO2CaptureOrigin",
    "technologicalCO2Removals",
)
_PCF: Final = Obj(
    {
        "declaredUnitOfMeasurement": OneOf(_UNITS),
        "declaredUnitAmount": Dec("positive"),
        "productMassPerDeclaredUnit": Dec("non_neg"),
        "referencePeriodStart": Instant(),
        "referencePeriodEnd": Instant(),
        "geographyRegionOrSubregion": OneOf(_REGIONS),
        "geographyCountry": Pattern(_COUNTRY_RE, 2),
        "geographyCountrySubdivision": Pattern(_SUBDIVISION_RE, 6),
        "boundaryProcessesDescription": _text,
        "pcfExcludingBiogenicUptake": Dec(),
        "pcfIncludingBiogenicUptake": Dec(),
        "fossilCarbonContent": Dec("non_neg"),
        "biogenicCarbonContent": Dec("non_neg"),
        "recycledCarbonContent": Dec("non_neg"),
        "fossilGhgEmissions": Dec("non_neg"),
        "landUseChangeGhgEmissions": Dec("non_neg"),
        "landCarbonLeakage": Dec("non_neg"),
        "landManagementFossilGhgEmissions": Dec("non_neg"),
        "landManagementBiogenicCO2Emissions": Dec("non_neg"),
        "landManagementBiogenicCO2Removals": Dec("neg_or_zero"),
        "biogenicCO2Uptake": Dec("neg_or_zero"),
        "biogenicNonCO2Emissions": Dec("non_neg"),
        "landAreaOccupation": Dec("non_neg"),
        "aircraftGhgEmissions": Dec("non_neg"),
        "packagingEmissionsIncluded": Bool(),
        "packagingGhgEmissions": Dec("non_neg"),
        "packagingBiogenicCarbonContent": Dec("non_neg"),
        "outboundLogisticsGhgEmissions": Dec("non_neg"),
        "ccsTechnologicalCO2CaptureIncluded": Bool(),
        "ccsTechnologicalCO2Capture": Dec("neg_or_zero"),
        "technologicalCO2CaptureOrigin": _text,
        "technologicalCO2Removals": Dec("neg_or_zero"),
        "ccuCarbonContent": Dec("non_neg"),
        "ccuCalculationApproach": OneOf(frozenset({"Cut-off", "Credit"})),
        "ccuCreditCertification": Pattern(_URI_RE, 2048),
        "ipccCharacterizationFactors": List(Pattern(_IPCC_RE, 16), 1, 32),
        "crossSectoralStandards": _names,
        # sub-objects a supplier repeats record after record: checked once per distinct value
        "productOrSectorSpecificRules": Recurring(Call(_rules)),
        "exemptedEmissionsPercent": Dec("percent"),
        "exemptedEmissionsDescription": _text,
        "allocationRulesDescription": _text,
        "secondaryEmissionFactorSources": Recurring(
            List(
                Obj(
                    {"name": _name, "version": _name},
                    required=frozenset({"name", "version"}),
                    name="source",
                ),
                1,
                1_000,
                unique=False,
            )
        ),
        "primaryDataShare": _PRIMARY_DATA_SHARE,
        "dqi": _DQI,
        "verification": Recurring(
            Obj(
                {
                    "coverage": OneOf(
                        frozenset({"PCF calculation model", "PCF program", "product level"})
                    ),
                    "providerName": _name,
                    "completedAt": Instant(),
                    "standardName": _text,
                    "comments": _text,
                },
                name="verification",
            )
        ),
    },
    required=frozenset(
        (info.alias or name)
        for name, info in CarbonFootprint.model_fields.items()
        if info.is_required()
    ),
    post=_pcf_cross,
    name="pcf",
)


# -- our extension (its Data Model Extension's data) ------------------------------------------


def _uncertainty_cross(value: dict[str, Any]) -> bool:
    lo, hi = value.get("lower95"), value.get("upper95")
    if value.get("relativeStandardUncertaintyPercent") is None and lo is None and hi is None:
        return False
    if (lo is None) != (hi is None):
        return False
    return lo is None or hi is None or Decimal(lo) <= Decimal(hi)


_stage_name: Final = _STAGE_RE.fullmatch
_field_path: Final = _FIELD_PATH_RE.fullmatch
_decimal: Final = _DECIMAL_RE.fullmatch


def _stages(value: Any) -> bool:
    """``stageBreakdown``: 1..64 stages, each a snake_case name and a decimal."""
    if type(value) is not dict or not 1 <= len(value) <= 64:
        return False
    for key, amount in value.items():
        if type(key) is not str or len(key) > 64 or _stage_name(key) is None:
            return False
        if type(amount) is not str or len(amount) > MAX_DECIMAL_CHARS or _decimal(amount) is None:
            return False
    return True


_label: Final = compile_object(
    Obj(
        {
            "grade": OneOf(_GRADES),
            "personalInfo": OneOf(_PERSONAL),
            "tradeSecret": Bool(),
            "basis": _text,
        },
        required=frozenset({"grade"}),
        not_null=frozenset({"personalInfo", "tradeSecret"}),
        name="label",
    )
)


def _labels(value: Any) -> bool:
    """``fieldLabels``: 1..1000 field paths, each with its label."""
    if type(value) is not dict or not 1 <= len(value) <= 1_000:
        return False
    return all(
        type(path) is str and len(path) <= 300 and _field_path(path) is not None and _label(label)
        for path, label in value.items()
    )


_EXTENSION: Final = Obj(
    {
        "specVersion": Pattern(_SEMVER_RE, 64),
        # only our own extension (a foreign one goes the model's way)
        "dataSchema": OneOf(frozenset({PCFX_EXTENSION_SCHEMA})),
        "documentation": Pattern(_URI_RE, 2048),
        "data": Obj(
            {
                "pilotCategory": OneOf(_PILOT),
                "standards": _names,
                "stageBreakdown": Call(_stages),
                "uncertainty": Obj(
                    {
                        "relativeStandardUncertaintyPercent": Dec("non_neg"),
                        "lower95": Dec(),
                        "upper95": Dec(),
                        "method": _text,
                    },
                    post=_uncertainty_cross,
                    name="uncertainty",
                ),
                "fieldLabels": Call(_labels),
            },
            name="pcfx_data",
        ),
    },
    required=frozenset({"specVersion", "dataSchema", "data"}),
    name="extension",
)


# -- the footprint ---------------------------------------------------------------------------


def _footprint_cross(payload: dict[str, Any]) -> bool:
    """The ProductFootprint rules across fields (its fields, pcf included, already passed)."""
    preceding = payload.get("precedingPfIds")
    if preceding is not None and payload["id"].lower() in {p.lower() for p in preceding}:
        return False
    reference_end = instant(payload["pcf"]["referencePeriodEnd"])
    start_text, end_text = payload.get("validityPeriodStart"), payload.get("validityPeriodEnd")
    start = instant(start_text) if start_text is not None else None
    end = instant(end_text) if end_text is not None else None
    if start is not None and end is not None and not start < end:
        return False
    if reference_end is None or (start is not None and start < reference_end):
        return False
    return not (end is not None and end > _add_years(reference_end, 3))


FOOTPRINT_RULES: Final = Obj(
    {
        "id": Pattern(_UUID_RE, 36),
        # a spec version "3.x.y[-yyyymmdd]": the fast path reads PACT v3 only
        "specVersion": Pattern(_SPEC_VERSION_3_RE, 32),
        "precedingPfIds": List(Pattern(_UUID_RE, 36), 1, MAX_LIST, fold_case=True),
        "created": Instant(),
        "status": OneOf(frozenset({"Active", "Deprecated"})),
        "validityPeriodStart": Instant(),
        "validityPeriodEnd": Instant(),
        "companyName": _name,
        "companyIds": _urns,
        "productDescription": _text,
        "productIds": _urns,
        "productClassifications": _urns,
        "productNameCompany": _name,
        "comment": _text,
        "pcf": _PCF,
        "extensions": List(_EXTENSION, 0, 1, unique=False),
    },
    required=frozenset(
        {
            "id",
            "specVersion",
            "created",
            "status",
            "companyName",
            "companyIds",
            "productDescription",
            "productIds",
            "productNameCompany",
            "pcf",
        }
    ),
    post=_footprint_cross,
    name="footprint",
)
"""The PACT v3 ProductFootprint rules (with our extension) the fast path checks: the models'
rules, as a table :func:`contracts._checkgen.compile_object` turns into code."""

footprint_ok: Final = compile_object(FOOTPRINT_RULES)
"""Whether ``check_footprint(payload)`` certainly accepts this PACT v3 JSON (see the module
docstring: ``False`` means "ask the model", not "bad"). Generated once, at import, from
:data:`FOOTPRINT_RULES` (its source: ``contracts._checkgen.source_of(footprint_ok)``)."""


# -- the envelope ----------------------------------------------------------------------------


def _is_str(value: Any, low: int, high: int) -> bool:
    return type(value) is str and low <= len(value) <= high


def _proof(value: Any) -> FastProof | None:
    if type(value) is not dict:
        return None
    root, index, size, path = (
        value.get("rootSignature"),
        value.get("leafIndex"),
        value.get("treeSize"),
        value.get("auditPath"),
    )
    if type(root) is not bytes or type(index) is not int or type(size) is not int:
        return None
    if not (0 <= index <= MAX_SEQUENCE and 1 <= size <= MAX_SEQUENCE and index < size):
        return None
    if type(path) is not list or len(path) > 64 or not all(type(p) is bytes for p in path):
        return None
    return FastProof(root, index, size, tuple(path))


def read_footprint(datum: Mapping[str, Any]) -> CheckedFootprint | None:
    """The :class:`CheckedFootprint` of a ``SignedFootprint`` Avro datum in the v2 form whose
    envelope and footprint the models certainly accept; ``None`` otherwise (a v1 record, a
    broken rule, or something only the model checks): then validate through the model.

    Steps: (1) the envelope fields' rules; (2) the body: PAE framing, JSON read once with orjson,
    in canonical form (re-serialising it gives the same bytes, so there is no duplicate key and
    nothing the strict reader would refuse), exactly the four keys, binding the envelope's
    fields; (3) the footprint's rules (:func:`footprint_ok`).
    """
    body = datum.get("signedBody")
    if type(body) is not bytes or datum.get("footprint") is not None:
        return None
    # (1)
    supplier_id, key_id, sequence = (
        datum.get("supplierId"),
        datum.get("keyId"),
        datum.get("sequence"),
    )
    payload_type, signature = datum.get("payloadType"), datum.get("signature")
    if not (_is_str(supplier_id, 1, MAX_ID) and _is_str(key_id, 1, MAX_ID)):
        return None
    if type(sequence) is not int or not 0 <= sequence <= MAX_SEQUENCE:
        return None
    if payload_type != PAYLOAD_FOOTPRINT or type(signature) is not bytes:
        return None
    raw_proof = datum.get("batchProof")
    proof = None if raw_proof is None else _proof(raw_proof)
    if raw_proof is not None and proof is None:
        return None
    if len(signature) not in (0, 64) or (not signature and proof is None):
        return None
    # (2)
    split = split_pae(body)
    if not isinstance(split, tuple) or split[0] != PAYLOAD_FOOTPRINT:
        return None
    try:
        parsed = orjson.loads(split[1])
    except orjson.JSONDecodeError:
        return None
    if type(parsed) is not dict or parsed.keys() != BODY_KEYS:
        return None
    if (
        parsed["supplierId"] != supplier_id
        or parsed["keyId"] != key_id
        or type(parsed["sequence"]) is not int
        or parsed["sequence"] != sequence
    ):
        return None
    try:
        if orjson.dumps(parsed, option=_STRICT_JSON) != split[1]:
            return None
    except orjson.JSONEncodeError:
        return None
    # (3)
    payload = parsed["payload"]
    if not footprint_ok(payload):
        return None
    return CheckedFootprint(
        supplier_id=supplier_id,
        key_id=key_id,
        sequence=sequence,
        payload_type=payload_type,
        signature=signature,
        batch_proof=proof,
        signed_body=body,
        payload=payload,
        product_ids=tuple(payload["productIds"]),
        company_ids=tuple(payload["companyIds"]),
    )


# -- the publish path: a rolled-up product's record, built as its Avro datum -------------------
#
# The streams build each published ``RolledUpFootprint`` straight from the roll-up's result as
# the Avro datum the model would give (:func:`streams.adapt.rolled_up_datum`), with no model in
# between. The same question as above decides whether that datum may be written: *does the
# model certainly accept it?* Its PACT footprint is checked as PACT v3 JSON by
# :data:`footprint_ok` (then turned into its Avro form by :func:`footprint_datum`), the wrapper
# by :data:`rolled_up_ok`, compiled from :data:`ROLLED_UP_RULES`. ``False`` again means "ask the
# model": the builder then goes through ``streams.adapt.rolled_up_record``, which refuses a bad
# result with its usual error and field path, so the DLQ reasons do not change.


def _count(value: Any) -> bool:
    """``Count``: a JSON integer 0..2**31-1 (not a boolean)."""
    return type(value) is int and 0 <= value <= 2**31 - 1


def _sequence_no(value: Any) -> bool:
    """``SequenceNo``: a JSON integer 0..2**63-1 (not a boolean)."""
    return type(value) is int and 0 <= value <= 2**63 - 1


_CANONICAL_UUID_RE: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def canonical_uuid(value: str) -> str:
    """A UUID's text as the models write it (``str(UUID(value))``: lower case), without a
    :class:`UUID` when it already is (fastavro writes a ``uuid`` string as it is). Raises
    :class:`ValueError` for text that is no UUID."""
    if _CANONICAL_UUID_RE.fullmatch(value) is not None:
        return value
    return str(UUID(value))


def _uuid(value: Any) -> bool:
    """A ``Uuid`` in an Avro datum: a :class:`uuid.UUID`, or its text in canonical form."""
    return type(value) is UUID or (
        type(value) is str and _CANONICAL_UUID_RE.fullmatch(value) is not None
    )


def _utc_instant(value: Any) -> bool:
    """A ``UtcDateTime`` in an Avro datum: a :class:`datetime` with an offset."""
    return type(value) is datetime and value.utcoffset() is not None


def _footprint_datum_shape(value: Any) -> bool:
    """The PACT footprint inside a rolled-up datum: checked apart, as PACT JSON, by
    :data:`footprint_ok` before :func:`footprint_datum` made this Avro form of it."""
    return type(value) is dict


def _lineage_cross(line: dict[str, Any]) -> bool:
    """``LineageInput._refs``: a footprint line names its footprint and product, a factor line
    its factor."""
    if line["kind"] == "footprint":
        return line.get("footprintId") is not None and line.get("productId") is not None
    return line.get("factorId") is not None


def _interval_cross(value: dict[str, Any]) -> bool:
    """``Uncertainty._consistent``: a figure or both bounds, the lower one not above."""
    lo, hi = value.get("lower95"), value.get("upper95")
    if value.get("relativeStandardUncertaintyPercent") is None and lo is None and hi is None:
        return False
    if (lo is None) != (hi is None):
        return False
    return lo is None or hi is None or Decimal(lo) <= Decimal(hi)


_id_text: Final = Str(1, MAX_ID)
_urn: Final = Pattern(_URN_RE, MAX_ID)
_factor_id: Final = Pattern(_FACTOR_ID_RE, MAX_ID)
_unit: Final = OneOf(frozenset(UNITS))

ROLLED_UP_RULES: Final = Obj(
    {
        "productId": _urn,
        "owner": _id_text,
        "bomRevision": Call(_sequence_no),
        "sequence": Call(_sequence_no),
        "declaredUnit": Obj(
            {"amount": Dec("positive"), "unit": _unit},
            required=frozenset({"amount", "unit"}),
            name="declaredUnit",
        ),
        "pcfExcludingBiogenicUptake": Dec(),
        "ownEmissions": Obj(
            {"directKgCO2e": Dec(), "electricityKgCO2e": Dec(), "otherKgCO2e": Dec()},
            required=frozenset({"directKgCO2e", "electricityKgCO2e", "otherKgCO2e"}),
            name="ownEmissions",
        ),
        "inputs": List(
            Obj(
                {
                    "componentIndex": Call(_count),
                    "kind": OneOf(frozenset({"footprint", "factor"})),
                    "productId": _urn,
                    "footprintId": Call(_uuid),
                    "factorId": _factor_id,
                    "factorVersion": _name,
                    "supplierId": _id_text,
                    "sequence": Call(_sequence_no),
                    "contentHash": Pattern(_SHA256_RE, 64),
                    "quantity": Dec("positive"),
                    "unit": _unit,
                    "contributionKgCO2e": Dec(),
                },
                required=frozenset(
                    {"componentIndex", "kind", "contentHash", "quantity", "unit"}
                    | {"contributionKgCO2e"}
                ),
                post=_lineage_cross,
                name="lineage",
            ),
            0,
            MAX_LIST,
            unique=False,
        ),
        "completeness": Obj(
            {
                "componentsTotal": Call(_count),
                "componentsResolved": Call(_count),
                "componentsOnFallback": Call(_count),
                "coveragePercent": Dec("percent"),
                "complete": Bool(),
            },
            required=frozenset(
                {"componentsTotal", "componentsResolved", "coveragePercent", "complete"}
            ),
            not_null=frozenset({"componentsOnFallback"}),
            name="completeness",
        ),
        "missingComponents": List(
            Obj(
                {
                    "componentIndex": Call(_count),
                    "productId": _urn,
                    "factorId": _factor_id,
                    "reason": OneOf(
                        frozenset(
                            {"no_footprint", "no_factor", "unit_mismatch", "expired", "cycle"}
                            | {"other"}
                        )
                    ),
                    "detail": _text,
                },
                required=frozenset({"componentIndex", "reason"}),
                name="missing",
            ),
            0,
            MAX_LIST,
            unique=False,
        ),
        "primaryDataShare": _PRIMARY_DATA_SHARE,
        "dqi": _DQI,
        "uncertainty": Obj(
            {
                "relativeStandardUncertaintyPercent": Dec("non_neg"),
                "lower95": Dec(),
                "upper95": Dec(),
                "method": _text,
            },
            post=_interval_cross,
            name="uncertainty",
        ),
        "footprint": Call(_footprint_datum_shape),
        # the BOM's site, the same record after record: checked once per distinct value
        "facility": Recurring(
            Obj(
                {
                    "name": _name,
                    "address": _text,
                    "city": _name,
                    "countrySubdivision": Pattern(_SUBDIVISION_RE, 6),
                    "annualProductionVolume": Dec("non_neg"),
                    "annualEnergyUseKWh": Dec("non_neg"),
                },
                name="facility",
            )
        ),
        "method": _name,
        "engineVersion": _name,
        "computedAt": Call(_utc_instant),
        "assumptions": List(_text, 0, MAX_LIST, unique=False),
        "footprintWithheld": _text,
    },
    required=frozenset(
        {"productId", "bomRevision", "sequence", "declaredUnit", "pcfExcludingBiogenicUptake"}
        | {"ownEmissions", "inputs", "completeness", "method", "engineVersion", "computedAt"}
    ),
    not_null=frozenset({"missingComponents", "assumptions"}),
    name="rolledUp",
)
"""The ``RolledUpFootprint`` rules (``contracts._records``) on its Avro datum, as a table: every
field known and of its type, the lineage and uncertainty rules across fields. Its ``footprint``
is checked apart, as PACT JSON (:data:`footprint_ok`)."""

rolled_up_ok: Final = compile_object(ROLLED_UP_RULES)
"""Whether the model certainly accepts this ``RolledUpFootprint`` Avro datum (``False``: ask the
model). Generated once, at import, from :data:`ROLLED_UP_RULES`."""


def _avro_converter(schema: Any, named: dict[str, Any]) -> Any:
    """The function that turns PACT JSON checked by :data:`footprint_ok` into the Avro datum of
    *schema* (a part of ``ProductFootprint``'s): every field of a record present (``None`` when
    absent), uuids in canonical text, instants as :class:`datetime`, arrays as lists."""
    if isinstance(schema, str):
        return named.get(schema) or named.get(f"io.pcfexchange.{schema}") or _same
    if isinstance(schema, list):
        (branch,) = [b for b in schema if b != "null"]
        inner = _avro_converter(branch, named)
        return lambda v: None if v is None else inner(v)
    kind = schema["type"]
    if isinstance(kind, dict | list):
        return _avro_converter(kind, named)
    logical = schema.get("logicalType")
    if logical == "uuid":
        return canonical_uuid
    if logical == "timestamp-micros":
        return instant
    if kind == "array":
        item = _avro_converter(schema["items"], named)
        return list if item is _same else (lambda v: [item(x) for x in v])
    if kind == "record":
        fields = [(f["name"], _avro_converter(f["type"], named)) for f in schema["fields"]]
        absent = dict.fromkeys(name for name, _ in fields)
        special = [(name, conv) for name, conv in fields if conv is not _same]

        def record(v: dict[str, Any]) -> dict[str, Any]:
            out = absent.copy()  # (every field; footprint_ok let no unknown field through)
            out.update(v)
            for name, conv in special:
                got = out[name]
                if got is not None:
                    out[name] = conv(got)
            return out

        full = schema["name"] if "." in schema["name"] else f"io.pcfexchange.{schema['name']}"
        named[full] = record
        return record
    return _same


def _same(value: Any) -> Any:
    return value


_FOOTPRINT_DATUM: Final = _avro_converter(expanded("ProductFootprint"), {})


def footprint_datum(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The Avro datum ``ProductFootprint`` gives for PACT v3 JSON that :data:`footprint_ok`
    accepted (``to_avro_dict(parse_footprint(payload))``, without the model); ``None`` for one
    with Data Model Extensions (whose typed Avro form only the model builds): use the model."""
    if payload.get("extensions") is not None:
        return None
    datum: dict[str, Any] = _FOOTPRINT_DATUM(payload)
    return datum
