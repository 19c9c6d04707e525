"""The ingestion's fast path: a v2 signed footprint read once, its rules checked as plain code.

The streams check every supplier footprint before the roll-up sees it. Through the models that
costs a fastavro decode of ~100 fields, a pydantic validation and (v1) rebuilding the canonical
JSON the signature covers. A v2 record (:mod:`contracts._envelope`) carries the signed bytes
instead, so :func:`read_footprint` takes the Avro datum of its small envelope, reads the body
once with orjson and checks the PACT v3 rules on that JSON with plain Python (no model objects),
returning a :class:`CheckedFootprint`: what the trust checks and the roll-up need.

**The rules are the models' rules, and only theirs.** The plain checks answer one question:
*does the model certainly accept this record?* When they cannot say yes (a rule is broken, or the
record uses something they do not cover: a foreign Data Model Extension, JSON that is not in
canonical form), :func:`read_footprint` returns ``None`` and the caller validates through the
model, which gives the rejection with its usual reason and field path. So a bad record reaches
the DLQ with exactly the reasons it always had, and a good one costs no model. The property
that makes this sound, *fast accepts => the model accepts*, is tested on every bad-record case
of the contract tests and on generated mutations (``tests/contracts/test_fast_path.py``): a
rule changed in :mod:`contracts._footprint` must be changed here too, and those tests say so
when it is not. Only the messages live in one place (the models); the checks exist twice.

**Where the time goes** (one record, ``bench/bench_ingest.py``): the envelope's Avro ~10 µs,
the body read ~9 µs plus ~3 µs to confirm it is canonical, the rules ~33 µs on a loaded
machine where fastavro needs ~87 µs for the same footprint as a typed Avro record. Sub-objects
that recur record after record (a supplier's rules, standards, verification, our extension) are
checked once per distinct value (:func:`_recurring`).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Final

import orjson

from contracts._envelope import MAX_SEQUENCE, PAYLOAD_FOOTPRINT, split_pae
from contracts._footprint import (
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
from contracts._pact import parse_footprint
from contracts._types import (
    _DECIMAL_RE,
    _FIELD_PATH_RE,
    _RFC3339_RE,
    _SEMVER_RE,
    _URI_RE,
    _URN_RE,
    _UUID_RE,
    MAX_DECIMAL_CHARS,
    MAX_ID,
    MAX_LIST,
    MAX_NAME,
    MAX_TEXT,
)

__all__ = ["BODY_KEYS", "CheckedFootprint", "FastProof", "footprint_ok", "read_footprint"]

BODY_KEYS: Final = frozenset({"keyId", "payload", "sequence", "supplierId"})

_STRICT_JSON: Final = orjson.OPT_SORT_KEYS
_SPEC_VERSION_RE: Final = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9]{8})?")
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
# Field checks: each returns True only when the model accepts the value.


def _is_str(value: Any, low: int, high: int) -> bool:
    return isinstance(value, str) and low <= len(value) <= high


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _name(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= MAX_NAME


def _pattern(regex: re.Pattern[str], high: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, str) and len(value) <= high and regex.fullmatch(value) is not None

    return check


_urn = _pattern(_URN_RE, MAX_ID)
_uri = _pattern(_URI_RE, 2048)
_semver = _pattern(_SEMVER_RE, 64)


def _decimal_text(value: Any) -> bool:
    """A PACT decimal string (``AnyDecimal``): at most 64 characters, ``[+-]digits[.digits]``."""
    return (
        type(value) is str
        and len(value) <= MAX_DECIMAL_CHARS
        and _DECIMAL_RE.fullmatch(value) is not None
    )


def _is_zero(text: str) -> bool:
    """Whether decimal text (already matched) is a zero (``"0"``, ``"-0.00"``, ``"+000"``)."""
    return not text.lstrip("+-").replace(".", "").strip("0")


# The sign of matched decimal text is its first character, so the bounds of NonNeg, Positive
# and NegOrZero need no Decimal; the ranges (percent, DQR) build one, cached (values recur).


def _any_decimal(value: Any) -> bool:
    return _decimal_text(value)


def _non_neg(value: Any) -> bool:
    # d >= 0 and not d.is_signed(): "-0" is refused too, as the model refuses it
    return _decimal_text(value) and value[0] != "-"


def _positive(value: Any) -> bool:
    return _decimal_text(value) and value[0] != "-" and not _is_zero(value)


def _neg_or_zero(value: Any) -> bool:
    return _decimal_text(value) and (value[0] == "-" or _is_zero(value))


@functools.lru_cache(maxsize=4096)
def _bounded(text: str, low: int, high: int, unsigned: bool) -> bool:
    d = Decimal(text)
    return low <= d <= high and not (unsigned and d.is_signed())


def _percent(value: Any) -> bool:
    return _decimal_text(value) and _bounded(value, 0, 100, True)


def _one_to_five(value: Any) -> bool:
    return _decimal_text(value) and _bounded(value, 1, 5, False)


def _instant(value: Any) -> datetime | None:
    """The instant of RFC 3339 text as the model reads it, else None."""
    return _instant_of(value) if type(value) is str else None


@functools.lru_cache(maxsize=8192)
def _instant_of(value: str) -> datetime | None:
    """(cached: periods and creation times recur across records)"""
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{day}T{clock}{fraction}{offset}")
    except ValueError:
        return None


def _strict_bool(value: Any) -> bool:
    return type(value) is bool


def _unique_list(
    value: Any, low: int, high: int, item: Callable[[Any], bool], key: Callable[[str], str] = str
) -> bool:
    if type(value) is not list or not low <= len(value) <= high:
        return False
    if not all(item(v) for v in value):
        return False
    return len({key(v) for v in value}) == len(value)


def _urns(value: Any) -> bool:
    return _unique_list(value, 1, MAX_LIST, _urn)


def _names(value: Any) -> bool:
    return _unique_list(value, 1, 1_000, _name)


def _uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID_RE.fullmatch(value) is not None


def _one_of(choices: frozenset[str]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in choices


def _dqi(value: Any) -> bool:
    return (
        type(value) is dict
        and value.keys() == {"technologicalDQR", "geographicalDQR", "temporalDQR"}
        and all(_one_to_five(v) for v in value.values())
    )


def _sources(value: Any) -> bool:
    if type(value) is not list or not 1 <= len(value) <= 1_000:
        return False
    return all(
        type(s) is dict
        and s.keys() == {"name", "version"}
        and _name(s["name"])
        and _name(s["version"])
        for s in value
    )


def _rules(value: Any) -> bool:
    """``productOrSectorSpecificRules``: 1..100 unique rules; "Other" names its operator."""
    if type(value) is not list or not 1 <= len(value) <= 100:
        return False
    checks = {
        "operator": _one_of(frozenset({"PEF", "EPD International", "Other"})),
        "ruleNames": _names,
        "otherOperatorName": _name,
    }
    seen = set()
    for rule in value:
        if type(rule) is not dict or not _fields_ok(rule, checks, _RULE_REQUIRED):
            return False
        other = rule.get("otherOperatorName")
        if rule["operator"] == "Other" and other is None:
            return False
        seen.add((rule["operator"], tuple(rule["ruleNames"]), other))
    return len(seen) == len(value)


_RULE_REQUIRED: Final = frozenset({"operator", "ruleNames"})


def _verification(value: Any) -> bool:
    checks = {
        "coverage": _one_of(frozenset({"PCF calculation model", "PCF program", "product level"})),
        "providerName": _name,
        "completedAt": lambda v: _instant(v) is not None,
        "standardName": _text,
        "comments": _text,
    }
    return type(value) is dict and _fields_ok(value, checks, frozenset())


_MEMO: Final[dict[tuple[int, bytes], bool]] = {}
_MEMO_SIZE: Final = 4096


def _recurring(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """*check*, answered once per distinct value: a supplier's rules, standards, verification
    and extension are the same in record after record. The key is the value's JSON bytes
    (orjson, ~1 µs), which are equal only for equal JSON values; the answer is a pure function
    of the value, so the cache changes nothing but the time."""
    tag = id(check)

    def cached(value: Any) -> bool:
        try:
            key = (tag, orjson.dumps(value))
        except orjson.JSONEncodeError:
            return check(value)
        known = _MEMO.get(key)
        if known is None:
            known = check(value)
            if len(_MEMO) >= _MEMO_SIZE:
                _MEMO.clear()
            _MEMO[key] = known
        return known

    return cached


_PCF_FIELDS: Final[dict[str, Callable[[Any], bool]]] = {
    "declaredUnitOfMeasurement": _one_of(_UNITS),
    "declaredUnitAmount": _positive,
    "productMassPerDeclaredUnit": _non_neg,
    "referencePeriodStart": lambda v: _instant(v) is not None,
    "referencePeriodEnd": lambda v: _instant(v) is not None,
    "geographyRegionOrSubregion": _one_of(_REGIONS),
    "geographyCountry": _pattern(_COUNTRY_RE, 2),
    "geographyCountrySubdivision": _pattern(_SUBDIVISION_RE, 6),
    "boundaryProcessesDescription": _text,
    "pcfExcludingBiogenicUptake": _any_decimal,
    "pcfIncludingBiogenicUptake": _any_decimal,
    "fossilCarbonContent": _non_neg,
    "biogenicCarbonContent": _non_neg,
    "recycledCarbonContent": _non_neg,
    "fossilGhgEmissions": _non_neg,
    "landUseChangeGhgEmissions": _non_neg,
    "landCarbonLeakage": _non_neg,
    "landManagementFossilGhgEmissions": _non_neg,
    "landManagementBiogenicCO2Emissions": _non_neg,
    "landManagementBiogenicCO2Removals": _neg_or_zero,
    "biogenicCO2Uptake": _neg_or_zero,
    "biogenicNonCO2Emissions": _non_neg,
    "landAreaOccupation": _non_neg,
    "aircraftGhgEmissions": _non_neg,
    "packagingEmissionsIncluded": _strict_bool,
    "packagingGhgEmissions": _non_neg,
    "packagingBiogenicCarbonContent": _non_neg,
    "outboundLogisticsGhgEmissions": _non_neg,
    "ccsTechnologicalCO2CaptureIncluded": _strict_bool,
    "ccsTechnologicalCO2Capture": _neg_or_zero,
    "technologicalCO2CaptureOrigin": _text,
    "technologicalCO2Removals": _neg_or_zero,
    "ccuCarbonContent": _non_neg,
    "ccuCalculationApproach": _one_of(frozenset({"Cut-off", "Credit"})),
    "ccuCreditCertification": _uri,
    "ipccCharacterizationFactors": _recurring(
        lambda v: _unique_list(v, 1, 32, _pattern(_IPCC_RE, 16))
    ),
    "crossSectoralStandards": _recurring(_names),
    "productOrSectorSpecificRules": _recurring(_rules),
    "exemptedEmissionsPercent": _percent,
    "exemptedEmissionsDescription": _text,
    "allocationRulesDescription": _text,
    "secondaryEmissionFactorSources": _recurring(_sources),
    "primaryDataShare": _percent,
    "dqi": _recurring(_dqi),
    "verification": _recurring(_verification),
}
_PCF_REQUIRED: Final = frozenset(
    (info.alias or name)
    for name, info in CarbonFootprint.model_fields.items()
    if info.is_required()
)
_CCS_DEPENDENT: Final = (
    "ccsTechnologicalCO2Capture",
    "technologicalCO2CaptureOrigin",
    "technologicalCO2Removals",
)


def _fields_ok(
    record: Mapping[str, Any],
    checks: Mapping[str, Callable[[Any], bool]],
    required: frozenset[str],
    not_null: frozenset[str] = frozenset(),
) -> bool:
    """Every field known and valid, the *required* ones present; ``null`` only where the model
    allows it (required fields and *not_null* ones, which have a default but no ``None``)."""
    if not required <= record.keys():
        return False
    for key, value in record.items():
        check = checks.get(key)
        if check is None:
            return False  # an unknown field: the model names it
        if value is None:
            if key in required or key in not_null:
                return False
            continue
        if not check(value):
            return False
    return True


def _pcf_ok(pcf: Any) -> datetime | None:
    """The pcf object's reference-period end if every CarbonFootprint rule holds, else None."""
    if type(pcf) is not dict or not _fields_ok(pcf, _PCF_FIELDS, _PCF_REQUIRED):
        return None
    start = _instant(pcf["referencePeriodStart"])
    end = _instant(pcf["referencePeriodEnd"])
    if start is None or end is None or not start < end:
        return None
    geographies = (
        pcf.get("geographyRegionOrSubregion"),
        pcf.get("geographyCountry"),
        pcf.get("geographyCountrySubdivision"),
    )
    if sum(g is not None for g in geographies) > 1:
        return None
    if (
        pcf.get("packagingEmissionsIncluded") is False
        and pcf.get("packagingGhgEmissions") is not None
    ):
        return None
    if pcf.get("ccsTechnologicalCO2CaptureIncluded") is False and any(
        pcf.get(k) is not None for k in _CCS_DEPENDENT
    ):
        return None
    return end


# -- our extension (its Data Model Extension's data) ------------------------------------------


def _uncertainty(value: Any) -> bool:
    checks = {
        "relativeStandardUncertaintyPercent": _non_neg,
        "lower95": _any_decimal,
        "upper95": _any_decimal,
        "method": _text,
    }
    if type(value) is not dict or not _fields_ok(value, checks, frozenset()):
        return False
    lo, hi = value.get("lower95"), value.get("upper95")
    if value.get("relativeStandardUncertaintyPercent") is None and lo is None and hi is None:
        return False
    if (lo is None) != (hi is None):
        return False
    return lo is None or hi is None or Decimal(lo) <= Decimal(hi)


def _stages(value: Any) -> bool:
    return (
        type(value) is dict
        and 1 <= len(value) <= 64
        and all(_pattern(_STAGE_RE, 64)(k) and _any_decimal(v) for k, v in value.items())
    )


def _label(value: Any) -> bool:
    checks = {
        "grade": _one_of(_GRADES),
        "personalInfo": _one_of(_PERSONAL),
        "tradeSecret": _strict_bool,
        "basis": _text,
    }
    return type(value) is dict and _fields_ok(
        value, checks, frozenset({"grade"}), frozenset({"personalInfo", "tradeSecret"})
    )


_field_path = _pattern(_FIELD_PATH_RE, 300)


def _labels(value: Any) -> bool:
    return (
        type(value) is dict
        and 1 <= len(value) <= 1_000
        and all(_field_path(k) and _label(v) for k, v in value.items())
    )


_PCFX_FIELDS: Final[dict[str, Callable[[Any], bool]]] = {
    "pilotCategory": _one_of(_PILOT),
    "standards": _names,
    "stageBreakdown": _stages,
    "uncertainty": _uncertainty,
    "fieldLabels": _labels,
}


def _extensions_ok(value: Any) -> bool:
    """Only our own extension, once (a foreign one goes the model's way)."""
    if type(value) is not list or len(value) > 1:
        return False
    for ext in value:
        if type(ext) is not dict or ext.get("dataSchema") != PCFX_EXTENSION_SCHEMA:
            return False
        if not ext.keys() <= {"specVersion", "dataSchema", "documentation", "data"}:
            return False
        if not {"specVersion", "data"} <= ext.keys() or not _semver(ext["specVersion"]):
            return False
        documentation = ext.get("documentation")
        if documentation is not None and not _uri(documentation):
            return False
        data = ext["data"]
        if type(data) is not dict or not _fields_ok(data, _PCFX_FIELDS, frozenset()):
            return False
    return True


# -- the footprint ---------------------------------------------------------------------------


_FOOTPRINT_FIELDS: Final[dict[str, Callable[[Any], bool]]] = {
    "id": _uuid,
    "specVersion": lambda v: _pattern(_SPEC_VERSION_RE, 32)(v) and v.startswith("3."),
    "precedingPfIds": lambda v: _unique_list(v, 1, MAX_LIST, _uuid, str.lower),
    "created": lambda v: _instant(v) is not None,
    "status": _one_of(frozenset({"Active", "Deprecated"})),
    "validityPeriodStart": lambda v: _instant(v) is not None,
    "validityPeriodEnd": lambda v: _instant(v) is not None,
    "companyName": _name,
    "companyIds": _recurring(_urns),
    "productDescription": _text,
    "productIds": _urns,
    "productClassifications": _recurring(_urns),
    "productNameCompany": _name,
    "comment": _text,
    "pcf": lambda v: type(v) is dict,  # checked below
    "extensions": _recurring(_extensions_ok),
}
_FOOTPRINT_REQUIRED: Final = frozenset(
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
)


def footprint_ok(payload: Any) -> bool:
    """Whether ``check_footprint(payload)`` certainly accepts this PACT v3 JSON (see the module
    docstring: ``False`` means "ask the model", not "bad")."""
    if type(payload) is not dict or not _fields_ok(payload, _FOOTPRINT_FIELDS, _FOOTPRINT_REQUIRED):
        return False
    reference_end = _pcf_ok(payload["pcf"])
    if reference_end is None:
        return False
    preceding = payload.get("precedingPfIds")
    if preceding is not None and payload["id"].lower() in {p.lower() for p in preceding}:
        return False
    start_text, end_text = payload.get("validityPeriodStart"), payload.get("validityPeriodEnd")
    start = _instant(start_text) if start_text is not None else None
    end = _instant(end_text) if end_text is not None else None
    if start is not None and end is not None and not start < end:
        return False
    if start is not None and start < reference_end:
        return False
    return not (end is not None and end > _add_years(reference_end, 3))


# -- the envelope ----------------------------------------------------------------------------


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
