"""The CBAM embedded-emissions communication for an installation's goods (Reg. (EU) 2023/956,
Implementing Reg. (EU) 2023/1773; the Commission's Communication Template for Installations).

**What goes in** (``shared/reference/regulation.md`` §2.3): the installation's identity as the
template lists it (name, operator, address, country, UN/LOCODE, geographic coordinates), the
reporting period, and per good its CN code, production route, and the specific direct and
indirect embedded emissions in t CO2e per t of good.

**From what.** A rolled-up product footprint with its lineage (the ``pcf.products`` roll-up, or
PACT JSON carrying the gateway's lineage extension) declared per unit of mass, plus an
installation input file (:func:`read_cbam_input`). Specific emissions: kg CO2e per kg equals
t CO2e per t, so the figure per declared unit is divided by the declared unit's mass in kg (34
significant digits, exact when the quotient ends within them).

**Direct and indirect.** Indirect = the electricity the product's own process used (lineage
``ownEmissions.electricityKgCO2e``); direct = everything else (own direct and other process
emissions, and the precursors' embedded emissions, which supplier footprints do not split into
direct and indirect). That assumption is written into the communication (``assumptions``) with
the roll-up's own (e.g. a value-only factor counted as fossil). A bare footprint without lineage
cannot be split and is refused, naming the missing lineage.

**Scope.** The CN code must be 4, 6 or 8 digits under a CBAM Annex I heading (cement, iron and
steel, aluminium, fertilisers, hydrogen); electricity (2716) is declared per MWh, not per t, and
is out of this builder's scope.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Final

from pcf_exchange.contracts.errors import UnitError, Violation
from pcf_exchange.contracts.units import Dimension, convert, dimension_of
from pcf_exchange.gateway.declarations._source import (
    DIVISION,
    EXACT,
    CertificateRef,
    InputFields,
    ProductSource,
    fail,
)

__all__ = [
    "CBAM_HEADINGS",
    "CbamCommunication",
    "CbamInput",
    "Installation",
    "build_cbam",
    "read_cbam_input",
]

CBAM_TYPE: Final = "cbam-embedded-emissions"
CBAM_HEADINGS: Final = {
    "2507": "cement (calcined clays)",
    "2523": "cement",
    "2808": "fertilisers (nitric acid)",
    "2814": "fertilisers (ammonia)",
    "2834": "fertilisers (nitrates)",
    "3102": "fertilisers",
    "3105": "fertilisers",
    "2804": "hydrogen",
    "2601": "iron and steel (agglomerated iron ore)",
    "72": "iron and steel",
    "73": "iron and steel (articles)",
    "76": "aluminium",
}
"""CN headings (or chapters) of Reg. (EU) 2023/956 Annex I declared per tonne."""
_CN_RE: Final = re.compile(r"^[0-9]{4}([0-9]{2}([0-9]{2})?)?$")
_LOCODE_RE: Final = re.compile(r"^[A-Z]{2} ?[A-Z2-9]{3}$")
INDIRECT_ASSUMPTION: Final = (
    "Indirect emissions are the electricity of the product's own process (roll-up lineage"
    " ownEmissions.electricityKgCO2e); precursors' embedded emissions count as direct, because"
    " their suppliers' footprints do not split direct from indirect."
)


@dataclass(frozen=True, slots=True)
class Installation:
    """The installation as the Communication Template for Installations identifies it."""

    name: str
    operator: str
    address: str
    city: str
    country: str
    un_locode: str
    latitude: Decimal
    longitude: Decimal
    installation_id: str | None = None


@dataclass(frozen=True, slots=True)
class CbamInput:
    installation: Installation
    cn_code: str
    production_route: str
    period_start: date
    period_end: date
    good_description: str | None = None


def _date(f: InputFields, key: str) -> date | None:
    text = f.text(key, what="a date, YYYY-MM-DD")
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        f.problems.append(
            Violation.of(f"{f.path}.{key}" if f.path else key, "date", "must be YYYY-MM-DD", text)
        )
        return None


def read_cbam_input(data: Any, *, subject: str = "installation input") -> CbamInput:
    """Parse the installation input file; every missing or malformed field is named::

    installation: {name, operator, address, city, country, unLocode, latitude, longitude,
                   installationId}
    cnCode: "76011000"
    productionRoute: primary aluminium, prebake electrolysis
    reportingPeriod: {start: 2026-01-01, end: 2026-03-31}
    goodDescription: unwrought aluminium, not alloyed
    """
    f = InputFields(data, subject)
    i = f.child("installation")
    name, operator = i.text("name"), i.text("operator", what="the operator's company name")
    address, city = i.text("address"), i.text("city")
    country = i.text("country", what="ISO 3166-1 alpha-2 code")
    if country is not None and (len(country) != 2 or not country.isalpha()):
        i.problems.append(
            Violation.of(
                "installation.country", "country", "must be an ISO 3166-1 alpha-2 code", country
            )
        )
        country = None
    locode = i.text("unLocode", what="the UN/LOCODE, e.g. CN XMN")
    if locode is not None and not _LOCODE_RE.match(locode.upper()):
        i.problems.append(
            Violation.of(
                "installation.unLocode", "un_locode", "must be a UN/LOCODE (e.g. CN XMN)", locode
            )
        )
        locode = None
    lat, lon = i.decimal("latitude"), i.decimal("longitude")
    if lat is not None and not Decimal(-90) <= lat <= Decimal(90):
        i.problems.append(
            Violation.of(
                "installation.latitude", "range", "must be between -90 and 90", format(lat, "f")
            )
        )
    if lon is not None and not Decimal(-180) <= lon <= Decimal(180):
        i.problems.append(
            Violation.of(
                "installation.longitude", "range", "must be between -180 and 180", format(lon, "f")
            )
        )
    installation_id = i.text("installationId", required=False)
    cn = f.text("cnCode", what="the CN code of the good (8 digits)")
    if cn is not None:
        cn = cn.replace(" ", "")
        if not _CN_RE.match(cn):
            f.problems.append(Violation.of("cnCode", "cn_code", "must be 4, 6 or 8 digits", cn))
            cn = None
        elif not any(cn.startswith(h) for h in CBAM_HEADINGS):
            f.problems.append(
                Violation.of(
                    "cnCode",
                    "not_cbam_good",
                    "must be a CBAM good declared per tonne (Annex I: CN "
                    + ", ".join(sorted(CBAM_HEADINGS))
                    + ")",
                    cn,
                )
            )
            cn = None
    route = f.text("productionRoute", what="the production route, e.g. BF-BOF")
    period = f.child("reportingPeriod")
    start, end = _date(period, "start"), _date(period, "end")
    if start and end and end < start:
        period.problems.append(
            Violation.of(
                "reportingPeriod.end",
                "range",
                f"must not be before start ({start})",
                end.isoformat(),
            )
        )
    description = f.text("goodDescription", required=False)
    f.done(i, period)
    assert name and operator and address and city and country and locode
    assert lat is not None and lon is not None and cn and route and start and end
    return CbamInput(
        Installation(
            name,
            operator,
            address,
            city,
            country.upper(),
            locode.upper(),
            lat,
            lon,
            installation_id,
        ),
        cn,
        route,
        start,
        end,
        description,
    )


@dataclass(frozen=True, slots=True)
class CbamCommunication:
    """One good of one installation, for one reporting period."""

    communication_id: str
    issued_at: datetime
    inp: CbamInput
    direct: Decimal
    """Specific direct embedded emissions, t CO2e per t of good."""
    indirect: Decimal
    """Specific indirect embedded emissions, t CO2e per t of good."""
    assumptions: tuple[str, ...]
    certificates: tuple[CertificateRef, ...]
    pcr_pack: tuple[str, str] | None
    product_id: str
    footprint_id: str
    content_hash: str

    doc_type: ClassVar[str] = CBAM_TYPE
    """The declaration's kind (its ``type`` in JSON, and the policy's default purpose key)."""

    @property
    def total(self) -> Decimal:
        return EXACT.add(self.direct, self.indirect)

    @property
    def title(self) -> str:
        return f"CBAM embedded emissions: CN {self.inp.cn_code}, {self.inp.installation.name}"

    def to_json(self) -> dict[str, Any]:
        i, inst = self.inp, self.inp.installation
        installation = {
            "name": inst.name,
            "operator": inst.operator,
            "address": inst.address,
            "city": inst.city,
            "country": inst.country,
            "unLocode": inst.un_locode,
            "coordinates": {"latitude": _s(inst.latitude), "longitude": _s(inst.longitude)},
        }
        if inst.installation_id:
            installation["installationId"] = inst.installation_id
        good: dict[str, Any] = {
            "cnCode": i.cn_code,
            "productionRoute": i.production_route,
            "productId": self.product_id,
            "unit": "tCO2e/t",
            "specificDirectEmbeddedEmissions": _s(self.direct),
            "specificIndirectEmbeddedEmissions": _s(self.indirect),
            "specificEmbeddedEmissions": _s(self.total),
        }
        if i.good_description:
            good["description"] = i.good_description
        return {
            "type": self.doc_type,
            "communicationId": self.communication_id,
            "issuedAt": _iso(self.issued_at),
            "regulation": "Regulation (EU) 2023/956; Implementing Regulation (EU) 2023/1773",
            "installation": installation,
            "reportingPeriod": {
                "start": i.period_start.isoformat(),
                "end": i.period_end.isoformat(),
            },
            "good": good,
            "assumptions": list(self.assumptions),
            "certificates": [c.to_json() for c in self.certificates],
            "pcrPack": None
            if self.pcr_pack is None
            else {"id": self.pcr_pack[0], "version": self.pcr_pack[1]},
            "source": {
                "productId": self.product_id,
                "footprintId": self.footprint_id,
                "contentHash": self.content_hash,
            },
        }

    def sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        i, inst = self.inp, self.inp.installation
        return [
            (
                "Installation",
                [
                    ("Name", inst.name),
                    ("Operator", inst.operator),
                    ("Address", f"{inst.address}, {inst.city}, {inst.country}"),
                    ("UN/LOCODE", inst.un_locode),
                    ("Coordinates", f"{_s(inst.latitude)}, {_s(inst.longitude)}"),
                ]
                + ([("Installation id", inst.installation_id)] if inst.installation_id else []),
            ),
            (
                "Good",
                [
                    ("CN code", i.cn_code),
                    ("Description", i.good_description or ""),
                    ("Production route", i.production_route),
                    ("Reporting period", f"{i.period_start} to {i.period_end}"),
                ],
            ),
            (
                "Specific embedded emissions (t CO2e per t of good)",
                [
                    ("Direct", _s(self.direct)),
                    ("Indirect", _s(self.indirect)),
                    ("Total", _s(self.total)),
                ],
            ),
            ("Assumptions", [(str(n + 1), a) for n, a in enumerate(self.assumptions)]),
            (
                "References",
                [
                    ("PCR pack", "none" if self.pcr_pack is None else " ".join(self.pcr_pack)),
                    ("Product", self.product_id),
                    ("Footprint", self.footprint_id),
                    ("Content hash (sha256)", self.content_hash),
                ]
                + [
                    (f"Certificate {c.certificate_id}", f"by {c.body_id}, scope {c.scope}")
                    for c in self.certificates
                ],
            ),
        ]


def _s(value: Decimal) -> str:
    return format(value, "f")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def build_cbam(
    source: ProductSource,
    inp: CbamInput,
    *,
    certificates: tuple[CertificateRef, ...] = (),
    issued_at: datetime,
    communication_id: str | None = None,
) -> CbamCommunication:
    """Build the communication (pure). Raises :class:`~contracts.errors.DeclarationInvalid`
    naming the field for a footprint not declared per unit of mass or without lineage (no
    direct/indirect split), and the PCR check's error for one that breaks its pack."""
    unit = source.pcf.get("declaredUnitOfMeasurement")
    amount = source.figure("declaredUnitAmount")
    try:
        dimension = dimension_of(str(unit))
    except UnitError:
        dimension = None
    if dimension is not Dimension.MASS:
        raise fail(
            source.subject,
            Violation.of(
                "pcf.declaredUnitOfMeasurement",
                "unit_not_mass",
                "must be a unit of mass (kilogram, ton): CBAM declares t CO2e per t of good",
                unit,
            ),
        )
    if amount is None or amount <= 0:
        raise fail(
            source.subject,
            Violation.of(
                "pcf.declaredUnitAmount",
                "required",
                "must be a positive decimal",
                None if amount is None else format(amount, "f"),
            ),
        )
    figure = source.figure("pcfExcludingBiogenicUptake")
    assert figure is not None  # a valid PACT footprint has it
    if source.own_electricity is None:
        raise fail(
            source.subject,
            Violation.of(
                "extensions[*].data.lineage.ownEmissions.electricityKgCO2e",
                "required",
                "is required to split direct from indirect emissions: give the pcf.products"
                " roll-up (or PACT JSON with the lineage extension), not a bare footprint",
                None,
            ),
        )
    check = source.pcr(certificates)
    kg = convert(amount, str(unit), "kilogram")
    indirect = DIVISION.divide(source.own_electricity, kg)
    direct = DIVISION.divide(EXACT.subtract(figure, source.own_electricity), kg)
    return CbamCommunication(
        communication_id=communication_id or str(uuid.uuid4()),
        issued_at=issued_at,
        inp=inp,
        direct=direct,
        indirect=indirect,
        assumptions=(INDIRECT_ASSUMPTION, *source.assumptions),
        certificates=certificates,
        pcr_pack=None if check.pack is None else (check.pack.id, check.pack.version),
        product_id=source.product_id,
        footprint_id=source.footprint_id,
        content_hash=source.content_hash,
    )
