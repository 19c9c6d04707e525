"""The publish path's fast lane for footprint files: PACT JSON read once, checked as compiled code,
signed as it was read.

``pcfx publish footprints FILE`` used to build a pydantic :class:`~contracts.ProductFootprint`
for every record (the strict JSON parser, then ~60 fields validated: over half of its time) and
dump it back to PACT JSON to sign it (another fifth). The streams already check the same rules
without the models (:mod:`contracts._fast`, compiled by :mod:`contracts._checkgen`); this module
lets the producer do the same, under one condition: **the fast lane takes a record only when
the model path would give exactly the same result** — accepted, with no warning, and the same
signed bytes. Then :func:`accept` returns a :class:`PactFootprint` (the JSON as read plus the
few fields the publisher needs: id, created, status, company and product ids), and its signed
body is the canonical JSON of the record as read. Anything else (a broken rule, a warning, a
field the model would write differently) returns ``None`` and the record goes through the
model, which gives the error or warning with its field path, as before.

"The model would write the same JSON" (checked with the rules in one compiled pass,
:data:`footprint_written_ok`) means: no ``null`` (the model leaves
undefined fields out), decimals and instants already in the form the model writes
(``format_decimal``, ``format_datetime``: ``"61.40"``, ``"2025-03-01T08:00:00Z"``), UUIDs in
lower case, our extension in its current ``specVersion`` with no ``documentation`` and no label
field at its default. "No warning" (:func:`_may_warn`) re-asks the conditions of the models'
``warnings()`` with the same functions (``mass_warnings``, ``_same_at_precision``).

Reading JSON with orjson rather than the strict parser is sound for what the lane accepts:
orjson refuses invalid UTF-8, NaN/Infinity and huge integers just as the strict parser does; the
accepted records hold no number at all (the compiled rules accept strings, booleans, lists and
objects only); and a repeated key (which the strict parser refuses and orjson lets through) is
caught by counting colons (:func:`no_repeated_key`).

``tests/producers/test_fastpath.py`` proves on the example records and on generated mutations
that the lane accepts only what the model accepts without warnings, and that its signed bytes
are byte-identical to ``signing_bytes`` of the model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from pcf_exchange.contracts import ProductFootprint, parse_footprint
from pcf_exchange.contracts._checkgen import (
    WRITTEN_DECIMAL_RE,
    Call,
    Check,
    Dec,
    Instant,
    List,
    Obj,
    OneOf,
    Pattern,
    Recurring,
    compile_object,
    is_zero,
    written_datetime,
)
from pcf_exchange.contracts._envelope import PAYLOAD_FOOTPRINT
from pcf_exchange.contracts._fast import FOOTPRINT_RULES, _labels, _rules, _stages
from pcf_exchange.contracts._footprint import _ROOMY, _same_at_precision, mass_warnings
from pcf_exchange.contracts._pact import PCFX_EXTENSION_SPEC_VERSION
from pcf_exchange.contracts.canonical import canonical_json, pae

__all__ = ["PactFootprint", "accept", "canonical_payload", "no_repeated_key"]


@dataclass(frozen=True, slots=True, eq=False)
class PactFootprint:
    """A footprint the model certainly accepts without warnings, kept as the PACT v3 JSON read
    (in the form the model writes it), with the fields the publisher reads."""

    id: str
    created: datetime
    status: str
    company_ids: tuple[str, ...]
    product_ids: tuple[str, ...]
    canonical: bytes
    """``canonical_json(payload)``: written once by the reader, signed as part of the body."""
    _payload: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def payload(self) -> dict[str, Any]:
        """The PACT JSON as read (read again from :attr:`canonical` after a trip between
        processes, which leaves it out: the publisher signs and sends the bytes)."""
        payload = self._payload
        if payload is None:
            payload = orjson.loads(self.canonical)
            object.__setattr__(self, "_payload", payload)
        return payload

    def __reduce__(self) -> tuple[Any, ...]:
        # a checking process hands the publisher the bytes and the fields, not the parsed JSON
        fields = (self.id, self.created, self.status, self.company_ids, self.product_ids)
        return (PactFootprint, (*fields, self.canonical))

    def model(self) -> ProductFootprint:
        """The pydantic model of :attr:`payload` (for edges that need it; validated again)."""
        return parse_footprint(self.payload)

    def signing_bytes(self, *, supplier_id: str, key_id: str, sequence: int) -> bytes:
        """What ``contracts.signing_bytes(self.model(), ...)`` returns, without the model.

        That is ``pae(type, canonical_json({"keyId", "payload", "sequence", "supplierId"}))``;
        the keys are already in canonical order and the payload's canonical JSON is
        :attr:`canonical`, so the body is put together around it instead of written again
        (``tests/producers/test_fastpath.py`` compares the bytes with the model's)."""
        body = b"".join(
            (
                b'{"keyId":',
                orjson.dumps(key_id),
                b',"payload":',
                self.canonical,
                b',"sequence":',
                b"%d" % sequence,
                b',"supplierId":',
                orjson.dumps(supplier_id),
                b"}",
            )
        )
        return pae(PAYLOAD_FOOTPRINT, body)


def canonical_payload(value: Any) -> bytes:
    """``canonical_json(value)`` of JSON as orjson read it (strings, numbers, booleans, null,
    lists and objects only: the checked form, keys sorted, no whitespace)."""
    return canonical_json(value, checked=True)


def accept(value: Any, canonical: bytes | None = None) -> PactFootprint | None:
    """*value* (JSON read with orjson) as a :class:`PactFootprint` when the model path would
    accept it without warnings and sign the same bytes; ``None``: take the model path.

    *canonical* is :func:`canonical_payload` of *value* when the caller has it already (the
    file reader writes it once for :func:`no_repeated_key`, this check and the signature)."""
    written = canonical_payload(value) if canonical is None else canonical
    # (the model leaves undefined fields out, so a null is never written: a string holding
    # ":null" only sends the record the model's way)
    if b":null" in written or not footprint_written_ok(value) or _may_warn(value):
        return None
    created = written_datetime(value["created"])  # (in the written form: checked above)
    if created is None:  # pragma: no cover - footprint_written_ok checked it
        return None
    return PactFootprint(
        value["id"],
        created,
        value["status"],
        tuple(value["companyIds"]),
        tuple(value["productIds"]),
        written,
        value,
    )


def no_repeated_key(raw: bytes, value: Any, compact: bytes | None = None) -> bool:
    """Whether the JSON text *raw*, which orjson read as *value*, repeats no key in an object.

    Every ``:`` of JSON text is a key's or inside a string, and the only escape that gives a
    colon is ``\\u003a``; with none in *raw*, its strings hold the same colons as text and as
    values. So *raw* has exactly as many colons as orjson's compact writing of *value* unless an
    object repeated a key (orjson keeps the last; the strict parser refuses the document).
    *compact* is that compact writing (keys sorted or not: the same colons) when the caller has
    it already.
    """
    if _COLON_ESCAPE.search(raw) is not None:
        return False
    written = orjson.dumps(value) if compact is None else compact
    return raw.count(b":") == written.count(b":")


_COLON_ESCAPE: Final = re.compile(rb"\\u003[aA]")


# -- the model would write it the same ----------------------------------------------------------
#
# One compiled pass checks the rules and the written form together: the footprint's rule table
# (contracts._fast.FOOTPRINT_RULES) with every decimal and instant asked to be in the form the
# model writes (Dec/Instant ``written``), the ids in lower case and the extension as the model
# writes ours. It replaced footprint_ok followed by a second walk of the record that asked the
# same of each field (``tests/producers/test_fastpath.py`` keeps that walk as the reference and
# compares both on the named cases and on generated mutations).


def _written_stages(value: Any) -> bool:
    """``stageBreakdown`` valid, each amount as the model writes it."""
    return _stages(value) and all(_WRITTEN_DECIMAL(v) is not None for v in value.values())


def _written_labels(value: Any) -> bool:
    """``fieldLabels`` valid, none with a field at its default (the model leaves it out)."""
    return _labels(value) and all(
        label.get("personalInfo") != "NONE" and label.get("tradeSecret") is not False
        for label in value.values()
    )


_WRITTEN_DECIMAL: Final = WRITTEN_DECIMAL_RE.fullmatch
_LOWER_UUID: Final = Pattern(
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), 36
)
_WRITTEN_CALLS: Final[dict[Callable[[Any], bool], Check]] = {
    _rules: Call(_rules),  # (no decimal, no instant: the same)
    _stages: Call(_written_stages),
    # a file's labelling policy, the same record after record: answered once per distinct value
    _labels: Recurring(Call(_written_labels)),
}


def _as_written(check: Check) -> Check:
    """*check*, also asking every decimal and instant in it to be as the model writes it."""
    match check:
        case Dec(kind):
            return Dec(kind, written=True)
        case Instant():
            return Instant(written=True)
        case List():
            return dataclasses.replace(check, item=_as_written(check.item))
        case Recurring(inner):
            return Recurring(_as_written(inner))
        case Call(predicate):
            # a hand-written predicate says itself what it accepts: each is mapped by name
            return _WRITTEN_CALLS[predicate]
        case Obj():
            fields = {key: _as_written(inner) for key, inner in check.fields.items()}
            return dataclasses.replace(check, fields=fields)
    return check


def _written_rules(rules: Obj) -> Obj:
    """:data:`~contracts._fast.FOOTPRINT_RULES`, true only for a footprint the model accepts and
    writes back as the same JSON (given no ``null`` in it, which the caller checks on the bytes):
    decimals and instants in the model's form, the id and preceding ids in lower case, and
    exactly one extension, ours, in its current ``specVersion``, without ``documentation``."""
    top = _as_written(rules)
    assert isinstance(top, Obj)
    fields = dict(top.fields)
    fields["id"] = _LOWER_UUID
    preceding = fields["precedingPfIds"]
    assert isinstance(preceding, List)
    fields["precedingPfIds"] = dataclasses.replace(preceding, item=_LOWER_UUID)
    extensions = fields["extensions"]
    assert isinstance(extensions, List) and isinstance(extensions.item, Obj)
    ours = dict(extensions.item.fields)
    del ours["documentation"]  # an unknown field now: refused
    ours["specVersion"] = OneOf(frozenset({PCFX_EXTENSION_SPEC_VERSION}))
    extension = dataclasses.replace(extensions.item, fields=ours)
    fields["extensions"] = dataclasses.replace(extensions, item=extension, low=1, high=1)
    return dataclasses.replace(top, fields=fields, name="written")


footprint_written_ok: Final = compile_object(_written_rules(FOOTPRINT_RULES))
"""``footprint_ok(p)`` and ``to_pact_json(parse_footprint(p)) == p`` in one generated pass, for
*p* with no ``null`` in it (its source: ``contracts._checkgen.source_of(footprint_written_ok)``)."""


# -- the model would warn ------------------------------------------------------------------------


def _may_warn(p: dict[str, Any]) -> bool:
    """Whether ``check_footprint(p)`` may give a warning (then the model path gives it)."""
    pcf = p["pcf"]
    mass = pcf.get("productMassPerDeclaredUnit")
    if pcf["declaredUnitOfMeasurement"] == "kilogram" and mass is not None:
        amount = Decimal(pcf["declaredUnitAmount"])
        if mass_warnings(amount, "kilogram", Decimal(mass)):
            return True
    excluding_text = pcf["pcfExcludingBiogenicUptake"]
    excluding = Decimal(excluding_text)
    uptake = pcf.get("biogenicCO2Uptake")
    # (no uptake and the same text: excluding + 0 rounds to itself at its own precision)
    if uptake is not None and not (
        is_zero(uptake) and pcf["pcfIncludingBiogenicUptake"] == excluding_text
    ):
        computed = _ROOMY.add(excluding, Decimal(uptake))
        if not _same_at_precision(Decimal(pcf["pcfIncludingBiogenicUptake"]), computed):
            return True
    if pcf.get("ccuCreditCertification") is not None and pcf.get("ccuCalculationApproach") != (
        "Credit"
    ):
        return True
    for rule in pcf.get("productOrSectorSpecificRules", ()):
        if rule["operator"] != "Other" and rule.get("otherOperatorName") is not None:
            return True
    for ext in p.get("extensions", ()):
        data = ext["data"]
        uncertainty = data.get("uncertainty")
        low = uncertainty.get("lower95") if uncertainty is not None else None
        high = uncertainty.get("upper95") if uncertainty is not None else None
        if low is not None and high is not None and not Decimal(low) <= excluding <= Decimal(high):
            return True
        stages = data.get("stageBreakdown")
        if stages:
            total = Decimal(0)
            for amount_text in stages.values():
                total = _ROOMY.add(total, Decimal(amount_text))
            if not _same_at_precision(excluding, total):
                return True
    return False
