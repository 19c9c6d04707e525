"""What every declaration is built from: the product's footprint, its lineage, its PCR pack and its
certificates, read once into typed values (:class:`ProductSource`, :class:`CertificateRef`).

A source is either the ``pcf.products`` roll-up as JSON (a :class:`~contracts.RolledUpFootprint`:
the PACT record in ``footprint``, the lineage beside it) or a PACT v3 footprint, optionally with
the gateway's lineage extension (``dataSchema`` :data:`LINEAGE_SCHEMA`, as ``pcfx gateway decide``
reads it). Both are validated by the one contract (:func:`contracts.parse_footprint`,
:func:`contracts.parse`), so a declaration never rests on a record the exchange would refuse.

Every problem is a :class:`~contracts.errors.DeclarationInvalid` violation naming the field (in
the footprint, or in the declaration input file), what was expected and what came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Any, Final

from pcf_exchange.contracts import RolledUpFootprint, parse, parse_footprint, to_pact_json
from pcf_exchange.contracts._footprint import PCFX_EXTENSION_SCHEMA
from pcf_exchange.contracts.certification import CertStatus, StatusReport, footprint_digest
from pcf_exchange.contracts.errors import DeclarationInvalid, Violation
from pcf_exchange.contracts.pcr import PcrCheck, check_footprint
from pcf_exchange.gateway._adapter import (
    LINEAGE_SCHEMA,  # the one name of the lineage extension
)

__all__ = [
    "DIVISION",
    "EXACT",
    "CertificateRef",
    "InputFields",
    "LineageRow",
    "ProductSource",
    "certificate_refs",
    "exact_sum",
    "fail",
    "read_source",
]

DIVISION: Final = Context(prec=34)
"""Per-unit figures (kg CO2e per kWh, t CO2e per t) divide the declared figure by the declared
unit's amount: 34 significant digits (IEEE 754 decimal128), exact whenever the quotient ends
within them. Sums, differences and products are exact (:data:`EXACT`)."""
EXACT: Final = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, Overflow])
"""Addition, subtraction and multiplication without rounding (an inexact result would raise,
and cannot happen for finite decimals at this precision)."""


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for value in values:
        total = EXACT.add(total, value)
    return total


def fail(subject: str, *violations: Violation) -> DeclarationInvalid:
    return DeclarationInvalid(violations, subject=subject)


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


@dataclass(frozen=True, slots=True)
class LineageRow:
    """One input of the roll-up as the declarations cite it."""

    kind: str
    """``footprint`` (a supplier's) or ``factor`` (a background factor)."""
    factor_id: str | None
    factor_version: str | None
    product_id: str | None
    quantity: Decimal | None
    unit: str | None
    contribution: Decimal | None
    """kg CO2e per declared unit of the product."""


@dataclass(frozen=True, slots=True)
class ProductSource:
    """A product's footprint, read once: the PACT record and what the declarations need of it."""

    pact: Mapping[str, Any]
    """The PACT v3 record (without the lineage extension: what a certificate's hash binds)."""
    content_hash: str
    """:func:`contracts.certification.footprint_digest` of :attr:`pact`."""
    pilot_category: str | None
    category_path: str
    stages: Mapping[str, Decimal] | None
    """``stageBreakdown`` of the pcfx extension (kg CO2e per declared unit), if any."""
    stages_path: str
    inputs: tuple[LineageRow, ...] = ()
    own_direct: Decimal | None = None
    """Own process emissions per declared unit (lineage ``ownEmissions``), when a roll-up."""
    own_electricity: Decimal | None = None
    own_other: Decimal | None = None
    assumptions: tuple[str, ...] = ()
    """The roll-up's documented assumptions (e.g. a value-only factor counted as fossil)."""

    @property
    def pcf(self) -> Mapping[str, Any]:
        pcf = self.pact.get("pcf")
        return pcf if isinstance(pcf, Mapping) else {}

    @property
    def product_id(self) -> str:
        ids = self.pact.get("productIds")
        return str(ids[0]) if isinstance(ids, list) and ids else str(self.pact.get("id"))

    @property
    def footprint_id(self) -> str:
        return str(self.pact.get("id"))

    @property
    def subject(self) -> str:
        return f"footprint {self.footprint_id}"

    def figure(self, name: str) -> Decimal | None:
        return _decimal(self.pcf.get(name))

    def pcr(self, certificates: Iterable[CertificateRef] = ()) -> PcrCheck:
        """The PCR check of the footprint (:func:`contracts.pcr.check_footprint`), raising its
        error when the footprint breaks its pack or is held for review: a declaration cites a
        pack the footprint meets. Each cited certificate must name that very pack and version
        (a certificate for another catalogue entry does not vouch for this declaration)."""
        result = check_footprint(self.pact)
        error = result.error(self.subject)
        if error is not None:
            raise error
        pack = result.pack
        problems = [
            Violation.of(
                f"certificates[{i}]",
                "certificate_other_pack",
                f"certificate {c.certificate_id} must be for the pack the footprint meets"
                f" ({'none' if pack is None else pack.ref})",
                f"{c.pcr_pack_id}@{c.pcr_pack_version}",
            )
            for i, c in enumerate(certificates)
            if pack is None or (c.pcr_pack_id, c.pcr_pack_version) != (pack.id, pack.version)
        ]
        if problems:
            raise fail(self.subject, *problems)
        return result


@dataclass(frozen=True, slots=True)
class CertificateRef:
    """A certificate the declaration cites, checked valid for *this* footprint when built."""

    certificate_id: str
    body_id: str
    scope: str
    pcr_pack_id: str
    pcr_pack_version: str
    valid_until: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "certificateId": self.certificate_id,
            "bodyId": self.body_id,
            "scope": self.scope,
            "pcrPackId": self.pcr_pack_id,
            "pcrPackVersion": self.pcr_pack_version,
            "validUntil": self.valid_until.isoformat().replace("+00:00", "Z"),
        }


def certificate_refs(
    source: ProductSource, reports: Iterable[StatusReport]
) -> tuple[CertificateRef, ...]:
    """The certificates a declaration cites, each from its registry status
    (:meth:`contracts.certification.CertRegistry.status`): it must be valid now (not revoked,
    expired, flagged for a blacklisted body, stale or unknown) and bind this very footprint
    (its content hash). Every certificate that fails is named, with why."""
    refs: list[CertificateRef] = []
    problems: list[Violation] = []
    for i, report in enumerate(reports):
        path = f"certificates[{i}]"
        if report.status is not CertStatus.VALID or report.state is None:
            problems.append(
                Violation.of(
                    path,
                    f"certificate_{report.status.value}",
                    f"certificate {report.certificate_id} must be valid to be cited: "
                    + "; ".join(report.reasons),
                    report.status.value,
                )
            )
            continue
        cert = report.state.certificate
        if cert.content_hash != source.content_hash:
            problems.append(
                Violation.of(
                    path,
                    "certificate_other_footprint",
                    f"certificate {cert.certificate_id} certifies footprint {cert.footprint_id}"
                    f" (content hash {cert.content_hash[:12]}...), not this one"
                    f" ({source.footprint_id}, {source.content_hash[:12]}...)",
                    cert.content_hash,
                )
            )
            continue
        refs.append(
            CertificateRef(
                cert.certificate_id,
                cert.body_id,
                cert.scope,
                cert.pcr_pack_id,
                cert.pcr_pack_version,
                cert.valid_until,
            )
        )
    if problems:
        raise fail(source.subject, *problems)
    return tuple(refs)


def _extension(pact: Mapping[str, Any], schema: str) -> tuple[int, Mapping[str, Any]] | None:
    extensions = pact.get("extensions")
    for i, ext in enumerate(extensions if isinstance(extensions, list) else []):
        if isinstance(ext, Mapping) and ext.get("dataSchema") == schema:
            data = ext.get("data")
            return i, data if isinstance(data, Mapping) else {}
    return None


def _rows_from_lineage(lineage: Mapping[str, Any]) -> tuple[LineageRow, ...]:
    inputs = lineage.get("inputs")
    return tuple(
        LineageRow(
            kind=str(i.get("kind")),
            factor_id=i.get("factorId"),
            factor_version=i.get("factorVersion"),
            product_id=i.get("productId"),
            quantity=_decimal(i.get("quantity")),
            unit=i.get("unit"),
            contribution=_decimal(i.get("contribution")),
        )
        for i in (inputs if isinstance(inputs, list) else [])
        if isinstance(i, Mapping)
    )


def _of_pact(
    pact: dict[str, Any],
    *,
    inputs: tuple[LineageRow, ...] = (),
    own: tuple[Decimal | None, Decimal | None, Decimal | None] = (None, None, None),
    assumptions: tuple[str, ...] = (),
) -> ProductSource:
    category, category_path = None, "extensions"
    stages: dict[str, Decimal] | None = None
    stages_path = "extensions"
    found = _extension(pact, PCFX_EXTENSION_SCHEMA)
    if found is not None:
        index, data = found
        value = data.get("pilotCategory")
        category = value if isinstance(value, str) else None
        category_path = f"extensions[{index}].data.pilotCategory"
        stages_path = f"extensions[{index}].data.stageBreakdown"
        breakdown = data.get("stageBreakdown")
        if isinstance(breakdown, Mapping):
            stages = {}
            for name, figure in breakdown.items():
                number = _decimal(figure)
                if number is not None:
                    stages[str(name)] = number
    return ProductSource(
        pact=pact,
        content_hash=footprint_digest(pact),
        pilot_category=category,
        category_path=category_path,
        stages=stages,
        stages_path=stages_path,
        inputs=inputs,
        own_direct=own[0],
        own_electricity=own[1],
        own_other=own[2],
        assumptions=assumptions,
    )


def read_source(data: Any, *, subject: str = "footprint") -> ProductSource:
    """A :class:`ProductSource` from parsed JSON: a ``pcf.products`` roll-up, or a PACT v3
    footprint (with or without the gateway's lineage extension). Raises
    :class:`~contracts.errors.ValidationFailed` (the contract's own violations) or
    :class:`~contracts.errors.DeclarationInvalid` (a roll-up that issued no footprint)."""
    if not isinstance(data, Mapping):
        raise fail(subject, Violation.of("", "type", "must be a JSON object", type(data).__name__))
    if "pcf" not in data and "footprint" in data:
        rolled = parse(RolledUpFootprint, dict(data), subject=subject)
        if rolled.footprint is None:
            raise fail(
                subject,
                Violation.of(
                    "footprint",
                    "footprint_withheld",
                    "must be a PACT footprint: the roll-up issued none"
                    + (f" ({rolled.footprint_withheld})" if rolled.footprint_withheld else ""),
                    None,
                ),
            )
        rows = tuple(
            LineageRow(
                i.kind,
                i.factor_id,
                i.factor_version,
                i.product_id,
                i.quantity,
                i.unit,
                i.contribution_kg_co2e,
            )
            for i in rolled.inputs
        )
        own = rolled.own_emissions
        return _of_pact(
            to_pact_json(rolled.footprint),
            inputs=rows,
            own=(own.direct_kg_co2e, own.electricity_kg_co2e, own.other_kg_co2e),
            assumptions=tuple(rolled.assumptions),
        )
    pact = dict(data)
    lineage_ext = _extension(pact, LINEAGE_SCHEMA)
    lineage: Mapping[str, Any] = {}
    if lineage_ext is not None:
        index, ext_data = lineage_ext
        found = ext_data.get("lineage")
        lineage = found if isinstance(found, Mapping) else {}
        pact["extensions"] = [e for j, e in enumerate(pact["extensions"]) if j != index]
        if not pact["extensions"]:
            del pact["extensions"]
    footprint = parse_footprint(pact, subject=subject)
    own_map = lineage.get("ownEmissions")
    own_map = own_map if isinstance(own_map, Mapping) else {}
    assumptions = lineage.get("assumptions")
    return _of_pact(
        to_pact_json(footprint),
        inputs=_rows_from_lineage(lineage),
        own=(
            _decimal(own_map.get("directKgCO2e")),
            _decimal(own_map.get("electricityKgCO2e")),
            _decimal(own_map.get("otherKgCO2e")),
        ),
        assumptions=tuple(str(a) for a in assumptions) if isinstance(assumptions, list) else (),
    )


class InputFields:
    """Reads a declaration input file (parsed JSON or YAML) and collects every problem, so one
    run names all missing or malformed fields, each with its path in the file."""

    def __init__(self, data: Any, subject: str, path: str = "") -> None:
        self.subject = subject
        self.path = path
        self.problems: list[Violation] = []
        self.missing = False
        """The object itself is missing (reported once; its fields are not named again)."""
        if not isinstance(data, Mapping):
            self.problems.append(
                Violation.of(path, "type", "must be an object", type(data).__name__)
            )
            data = {}
        self.data: Mapping[str, Any] = data

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def text(self, key: str, *, required: bool = True, what: str = "text") -> str | None:
        value = self.data.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required and not self.missing:
                self.problems.append(
                    Violation.of(self._at(key), "required", f"is required ({what})", None)
                )
            return None
        if not isinstance(value, str):
            self.problems.append(
                Violation.of(self._at(key), "type", f"must be {what}", type(value).__name__)
            )
            return None
        return value.strip()

    def decimal(self, key: str, *, required: bool = True, positive: bool = False) -> Decimal | None:
        value = self.data.get(key)
        if value is None:
            if required and not self.missing:
                self.problems.append(
                    Violation.of(self._at(key), "required", "is required (a decimal string)", None)
                )
            return None
        number = _decimal(value) if not isinstance(value, bool) else None
        if isinstance(value, int) and not isinstance(value, bool):
            number = Decimal(value)
        if number is None:
            self.problems.append(
                Violation.of(
                    self._at(key),
                    "decimal",
                    'must be a decimal written as a string (e.g. "2100"), never a float',
                    value,
                )
            )
            return None
        if positive and number <= 0:
            self.problems.append(
                Violation.of(self._at(key), "min_value", "must be greater than 0", value)
            )
            return None
        return number

    def child(self, key: str) -> InputFields:
        child = InputFields(self.data.get(key), self.subject, self._at(key))
        if self.data.get(key) is None:
            child.missing = True
            child.problems = [
                Violation.of(self._at(key), "required", "is required (an object)", None)
            ]
        return child

    def done(self, *children: InputFields) -> None:
        problems = list(self.problems)
        for child in children:
            problems += child.problems
        if problems:
            raise DeclarationInvalid(problems, subject=self.subject)
