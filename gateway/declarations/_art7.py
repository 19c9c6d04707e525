"""The EU Battery Regulation Art. 7 carbon-footprint declaration, and the battery passport's
carbon-footprint part (Battery Pass data model 1.2.0, DIN DKE SPEC 99100 §6.3).

**What goes in.** Art. 7(1) and Annex II (``shared/reference/regulation.md`` §2.1): (a) the
manufacturer's administrative information (name, registered trade name, address); (b) the battery
model; (c) the geographic location of the manufacturing plant; (d) the carbon footprint in
kg CO2e per kWh of the total energy the battery provides over its expected service life (the
functional unit); (e) the carbon footprint per life-cycle stage (Annex II point 4: raw material
acquisition and pre-processing, main product production, distribution, end of life and
recycling; the use stage is excluded); (f) the EU declaration of conformity's identifier; (g) a
web link to the public version of the supporting study. A declaration is per battery model per
manufacturing plant. The carbon-footprint performance class (Art. 7(2)) does not exist until the
delegated act sets the classes: it is ``null`` with that reason, or the class the input names.

**From what.** A rolled-up product footprint (:class:`~gateway.declarations.ProductSource`)
whose pcfx extension names the ``LITHIUM_BATTERY`` category and carries a ``stageBreakdown``,
plus a small input file (:func:`read_art7_input`). The battery packs are cradle-to-gate (a
``use`` or ``end_of_life`` stage breaks them), so the certified footprint holds raw material
acquisition, production and perhaps distribution; the stages beyond it (end of life and
recycling, and distribution when the footprint has none) come from the input file's
``beyondGate`` (kg CO2e per kWh, with the study they come from), and the declaration says for
each stage where it came from. A stage neither gives is an error, never a silent zero; a stage
both give is an error too. The footprint must meet its PCR pack
(:func:`contracts.pcr.check_footprint`: every rule, and not held for review). The stage mapping is
fixed: ``raw_material_acquisition`` → RawMaterialExtraction, ``production`` → MainProduction,
``distribution`` → Distribution, ``end_of_life`` → Recycling; a ``use`` stage is left out and
said so.

**Units.** A footprint declared per energy unit (kWh, MJ, MWh) is converted exactly to per kWh;
one declared per ``piece`` (one battery) is divided by ``serviceLifeEnergyKWh`` from the input
file (the total energy over the expected service life); any other dimension is refused (a
battery declared per kilogram says nothing per kWh). The life-cycle figure is the exact sum of
the four stages, and the stages plus any ``use`` stage must add up to the footprint's
``pcfExcludingBiogenicUptake`` (else the breakdown is not this footprint's). Figures stay
:class:`~decimal.Decimal` (divisions at 34 significant digits, :data:`DIVISION`); the JSON writes
them as strings (PACT's convention), the passport as JSON numbers (its schema says ``number``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Final

from pcf_exchange.contracts.errors import UnitError, Violation
from pcf_exchange.contracts.units import Dimension, convert, dimension_of
from pcf_exchange.gateway.declarations._source import (
    DIVISION,
    EXACT,
    CertificateRef,
    InputFields,
    ProductSource,
    exact_sum,
    fail,
)

__all__ = [
    "ART7_STAGES",
    "PASSPORT_SCHEMA_URN",
    "Art7Declaration",
    "Art7Input",
    "BatteryCategory",
    "Manufacturer",
    "Plant",
    "StageFigure",
    "build_art7",
    "read_art7_input",
]

ART7_TYPE: Final = "eu-battery-regulation-art7"
PASSPORT_SCHEMA_URN: Final = (
    "urn:samm:io.BatteryPass.CarbonFootprint:1.2.0#CarbonFootprintForBatteries"
)
ART7_STAGES: Final = (
    (
        "raw_material_acquisition",
        "RawMaterialExtraction",
        "raw material acquisition and pre-processing",
    ),
    ("production", "MainProduction", "main product production"),
    ("distribution", "Distribution", "distribution"),
    ("end_of_life", "Recycling", "end of life and recycling"),
)
"""(pcfx ``stageBreakdown`` key, Battery Pass ``LifecycleStage``, Annex II point 4 wording)."""
NO_CLASS_REASON: Final = (
    "no carbon footprint performance classes exist yet: Art. 7(2) classes apply once the"
    " Commission's delegated act sets them"
)
PASSPORT_NO_CLASS: Final = "N/A"
"""What the passport's required ``carbonFootprintPerformanceClass`` string holds while no classes
exist (the schema needs a string; a class letter would be false)."""
_KWH: Final = "kilowatt hour"
_INPUT_KEYS: Final = {"distribution": "distribution", "end_of_life": "endOfLife"}
"""The stages the input file's ``beyondGate`` may give, by ``stageBreakdown`` key."""


class BatteryCategory(StrEnum):
    """Art. 7 applies to these batteries (Art. 7(1), phase-in dates in regulation.md §2.1)."""

    EV = "EV"
    LMT = "LMT"
    INDUSTRIAL = "INDUSTRIAL"


@dataclass(frozen=True, slots=True)
class Manufacturer:
    name: str
    trade_name: str
    address: str


@dataclass(frozen=True, slots=True)
class Plant:
    """The manufacturing plant's geographic location (Art. 7(1)(c))."""

    name: str
    address: str
    city: str
    subdivision: str | None
    country: str


@dataclass(frozen=True, slots=True)
class Art7Input:
    """The declaration input file: what the footprint does not say."""

    manufacturer: Manufacturer
    battery_model: str
    category: BatteryCategory
    plant: Plant
    conformity_id: str
    """Identifier of the EU declaration of conformity (Art. 7(1)(f))."""
    study_url: str
    """Web link to the public version of the supporting study (Art. 7(1)(g))."""
    service_life_energy_kwh: Decimal | None = None
    """Total energy one battery provides over its expected service life (kWh)."""
    performance_class: str | None = None
    beyond_gate: Mapping[str, Decimal] = field(default_factory=dict)
    """``distribution`` / ``end_of_life`` in kg CO2e per kWh, from the manufacturer's study."""
    beyond_gate_source: str | None = None


def _plant(f: InputFields) -> Plant | None:
    name, address, city = f.text("name"), f.text("address"), f.text("city")
    subdivision = f.text("subdivision", required=False, what="ISO 3166-2 code, e.g. CN-FJ")
    country = f.text("country", what="ISO 3166-1 alpha-2 code, e.g. CN")
    if country is not None and (len(country) != 2 or not country.isalpha()):
        f.problems.append(
            Violation.of(
                f"{f.path}.country", "country", "must be an ISO 3166-1 alpha-2 code", country
            )
        )
        country = None
    if name and address and city and country:
        return Plant(name, address, city, subdivision, country.upper())
    return None


def read_art7_input(data: Any, *, subject: str = "declaration input") -> Art7Input:
    """Parse the Art. 7 input file (JSON or YAML, already loaded); every missing field is named::

    manufacturer: {name, tradeName, address}
    batteryModel: LFP280-PACK-48V
    batteryCategory: EV | LMT | INDUSTRIAL
    manufacturingPlant: {name, address, city, subdivision, country}
    euDeclarationOfConformityId: EU-DoC-...
    studyUrl: https://...
    serviceLifeEnergyKWh: "2800"    # required when the footprint is declared per piece
    performanceClass: null          # a class letter once the delegated act sets classes
    beyondGate:                     # kg CO2e per kWh, the stages the footprint has not
      endOfLife: "-1.10"
      distribution: "0.35"          # only if the footprint has no distribution stage
      source: public study, section 5
    """
    f = InputFields(data, subject)
    m = f.child("manufacturer")
    name, trade, address = m.text("name"), m.text("tradeName"), m.text("address")
    model = f.text("batteryModel", what="the battery model identifier")
    raw_category = f.text("batteryCategory", what="EV, LMT or INDUSTRIAL")
    category = None
    if raw_category is not None:
        try:
            category = BatteryCategory(raw_category.upper())
        except ValueError:
            f.problems.append(
                Violation.of(
                    "batteryCategory",
                    "enum",
                    "must be EV, LMT or INDUSTRIAL (the batteries Art. 7 covers)",
                    raw_category,
                )
            )
    p = f.child("manufacturingPlant")
    plant = _plant(p)
    conformity = f.text("euDeclarationOfConformityId", what="the EU declaration of conformity id")
    url = f.text("studyUrl", what="an https:// link to the public study")
    if url is not None and not url.startswith(("https://", "http://")):
        f.problems.append(Violation.of("studyUrl", "url", "must be a web link (https://...)", url))
    energy = f.decimal("serviceLifeEnergyKWh", required=False, positive=True)
    klass = f.text("performanceClass", required=False, what="a class letter, A best")
    beyond: dict[str, Decimal] = {}
    beyond_source = None
    children = [m, p]
    if f.data.get("beyondGate") is not None:
        b = f.child("beyondGate")
        for key, stage in (("distribution", "distribution"), ("endOfLife", "end_of_life")):
            if b.data.get(key) is not None:
                value = b.decimal(key)
                if value is not None:
                    beyond[stage] = value
        beyond_source = b.text("source", what="where the figures come from (the study)")
        children.append(b)
    f.done(*children)
    assert name and trade and address and model and category and plant and conformity and url
    return Art7Input(
        Manufacturer(name, trade, address),
        model,
        category,
        plant,
        conformity,
        url,
        energy,
        klass,
        beyond,
        beyond_source,
    )


@dataclass(frozen=True, slots=True)
class StageFigure:
    key: str
    """The pcfx ``stageBreakdown`` key."""
    passport_stage: str
    annex_ii: str
    kg_co2e_per_kwh: Decimal
    origin: str
    """``footprint`` (the certified footprint's stageBreakdown) or ``declaration input``
    (``beyondGate``, from the manufacturer's study)."""


@dataclass(frozen=True, slots=True)
class Art7Declaration:
    """One Art. 7 declaration: one battery model at one plant."""

    declaration_id: str
    issued_at: datetime
    inp: Art7Input
    total_per_kwh: Decimal
    stages: tuple[StageFigure, ...]
    absolute_kg_co2e: Decimal | None
    """Per battery over its life (per kWh × ``serviceLifeEnergyKWh``), when the energy is known."""
    kwh_per_declared_unit: Decimal
    excluded_use: Decimal | None
    """The ``use`` stage of the footprint (kg CO2e per kWh), left out as Art. 7 requires."""
    certificates: tuple[CertificateRef, ...]
    pcr_pack_id: str
    pcr_pack_version: str
    product_id: str
    footprint_id: str
    content_hash: str

    doc_type: ClassVar[str] = ART7_TYPE
    """The declaration's kind (its ``type`` in JSON, and the policy's default purpose key)."""

    @property
    def title(self) -> str:
        return (
            f"EU Battery Regulation Art. 7 carbon footprint declaration: {self.inp.battery_model}"
        )

    def passport(self) -> dict[str, Any]:
        """The Battery Pass ``CarbonFootprintForBatteries`` 1.2.0 object (figures as
        :class:`~decimal.Decimal`: write it with :func:`gateway.declarations.dump_json`, which
        writes them as JSON numbers)."""
        out: dict[str, Any] = {
            "batteryCarbonFootprint": self.total_per_kwh,
            "carbonFootprintPerLifecycleStage": [
                {"lifecycleStage": s.passport_stage, "carbonFootprint": s.kg_co2e_per_kwh}
                for s in self.stages
            ],
            "carbonFootprintPerformanceClass": self.inp.performance_class or PASSPORT_NO_CLASS,
            "carbonFootprintStudy": self.inp.study_url,
        }
        if self.absolute_kg_co2e is not None:
            out["absoluteCarbonFootprint"] = self.absolute_kg_co2e
        return out

    def to_json(self) -> dict[str, Any]:
        """The declaration (camelCase; decimals as strings)."""
        i, plant = self.inp, self.inp.plant
        return {
            "type": self.doc_type,
            "declarationId": self.declaration_id,
            "issuedAt": _iso(self.issued_at),
            "regulation": "Regulation (EU) 2023/1542, Art. 7(1) and Annex II",
            "manufacturer": {
                "name": i.manufacturer.name,
                "tradeName": i.manufacturer.trade_name,
                "address": i.manufacturer.address,
            },
            "batteryModel": {"identifier": i.battery_model, "category": i.category.value},
            "manufacturingPlant": _clean(
                {
                    "name": plant.name,
                    "address": plant.address,
                    "city": plant.city,
                    "subdivision": plant.subdivision,
                    "country": plant.country,
                }
            ),
            "carbonFootprint": _clean(
                {
                    "functionalUnit": "1 kWh of the total energy provided over the expected"
                    " service life",
                    "unit": "kgCO2e/kWh",
                    "lifeCycle": _s(self.total_per_kwh),
                    "lifeCycleStages": [
                        {
                            "stage": s.passport_stage,
                            "annexII": s.annex_ii,
                            "kgCO2ePerKWh": _s(s.kg_co2e_per_kwh),
                            "origin": s.origin,
                        }
                        for s in self.stages
                    ],
                    "useStageExcluded": None
                    if self.excluded_use is None
                    else _s(self.excluded_use),
                    "serviceLifeEnergyKWh": None
                    if i.service_life_energy_kwh is None
                    else _s(i.service_life_energy_kwh),
                    "absoluteKgCO2e": None
                    if self.absolute_kg_co2e is None
                    else _s(self.absolute_kg_co2e),
                    "beyondGateSource": self.inp.beyond_gate_source,
                }
            ),
            "performanceClass": i.performance_class,
            "performanceClassNote": None if i.performance_class else NO_CLASS_REASON,
            "euDeclarationOfConformityId": i.conformity_id,
            "studyUrl": i.study_url,
            "certificates": [c.to_json() for c in self.certificates],
            "pcrPack": {"id": self.pcr_pack_id, "version": self.pcr_pack_version},
            "source": {
                "productId": self.product_id,
                "footprintId": self.footprint_id,
                "contentHash": self.content_hash,
            },
        }

    def sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """What the printable document shows, section by section (label, value)."""
        i, p = self.inp, self.inp.plant
        where = ", ".join(x for x in (p.address, p.city, p.subdivision, p.country) if x)
        stage_rows = [
            (
                f"{s.annex_ii} ({s.passport_stage})",
                f"{_s(s.kg_co2e_per_kwh)} kg CO2e/kWh (from the {s.origin})",
            )
            for s in self.stages
        ]
        if self.inp.beyond_gate_source:
            stage_rows.append(("Stages from the declaration input", self.inp.beyond_gate_source))
        return [
            (
                "Manufacturer (Art. 7(1)(a))",
                [
                    ("Name", i.manufacturer.name),
                    ("Registered trade name", i.manufacturer.trade_name),
                    ("Address", i.manufacturer.address),
                ],
            ),
            (
                "Battery (Art. 7(1)(b))",
                [("Model", i.battery_model), ("Category", i.category.value)],
            ),
            ("Manufacturing plant (Art. 7(1)(c))", [("Plant", p.name), ("Location", where)]),
            (
                "Carbon footprint (Art. 7(1)(d))",
                [
                    (
                        "Functional unit",
                        "1 kWh of the total energy provided over the expected service life",
                    ),
                    ("Life cycle (use stage excluded)", f"{_s(self.total_per_kwh)} kg CO2e/kWh"),
                ]
                + (
                    [("Absolute, per battery", f"{_s(self.absolute_kg_co2e)} kg CO2e")]
                    if self.absolute_kg_co2e is not None
                    else []
                ),
            ),
            ("Per life-cycle stage (Art. 7(1)(e), Annex II point 4)", stage_rows),
            (
                "Performance class (Art. 7(2))",
                [("Class", i.performance_class or f"none: {NO_CLASS_REASON}")],
            ),
            (
                "References (Art. 7(1)(f), (g))",
                [
                    ("EU declaration of conformity", i.conformity_id),
                    ("Public study", i.study_url),
                    ("PCR pack", f"{self.pcr_pack_id} {self.pcr_pack_version}"),
                ]
                + [
                    (
                        f"Certificate {c.certificate_id}",
                        f"by {c.body_id}, scope {c.scope}, valid until {_iso(c.valid_until)}",
                    )
                    for c in self.certificates
                ],
            ),
            (
                "Source",
                [
                    ("Product", self.product_id),
                    ("Footprint", self.footprint_id),
                    ("Content hash (sha256)", self.content_hash),
                ],
            ),
        ]


def _s(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _kwh_per_declared_unit(source: ProductSource, inp: Art7Input) -> Decimal:
    pcf = source.pcf
    unit = pcf.get("declaredUnitOfMeasurement")
    amount = source.figure("declaredUnitAmount")
    path = "pcf.declaredUnitOfMeasurement"
    try:
        dimension = dimension_of(str(unit))
    except UnitError:
        dimension = None
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
    if dimension is Dimension.ENERGY:
        return convert(amount, str(unit), _KWH)
    if dimension is Dimension.COUNT:
        if inp.service_life_energy_kwh is None:
            raise fail(
                source.subject,
                Violation.of(
                    "serviceLifeEnergyKWh",
                    "required",
                    "is required in the declaration input: the footprint is declared per"
                    f" {unit}, and Art. 7 declares per kWh of the total energy over the service"
                    " life",
                    None,
                ),
            )
        return EXACT.multiply(amount, inp.service_life_energy_kwh)
    raise fail(
        source.subject,
        Violation.of(
            path,
            "unit_not_kwh",
            "must be an energy unit (kilowatt hour) or piece (with serviceLifeEnergyKWh):"
            " Art. 7 declares kg CO2e per kWh of the total energy over the service life, and"
            f" a footprint per {unit} cannot be converted to that",
            unit,
        ),
    )


def build_art7(
    source: ProductSource,
    inp: Art7Input,
    *,
    certificates: tuple[CertificateRef, ...] = (),
    issued_at: datetime,
    declaration_id: str | None = None,
) -> Art7Declaration:
    """Build the declaration (pure). Raises :class:`~contracts.errors.DeclarationInvalid`
    naming the field when the footprint is not a battery's, has no or an incomplete stage
    breakdown, or is declared in a unit that cannot be converted to kWh; and the PCR check's
    own error when the footprint breaks its pack or is held for review."""
    if source.pilot_category != "LITHIUM_BATTERY":
        raise fail(
            source.subject,
            Violation.of(
                source.category_path,
                "not_a_battery",
                "must be LITHIUM_BATTERY: Art. 7 declarations are for EV, LMT and industrial"
                " batteries",
                source.pilot_category,
            ),
        )
    if not source.stages:
        raise fail(
            source.subject,
            Violation.of(
                source.stages_path,
                "required",
                "is required: Art. 7(1)(e) declares the footprint per life-cycle stage; publish"
                " the footprint with a stageBreakdown holding "
                + ", ".join(k for k, _, _ in ART7_STAGES),
                None,
            ),
        )
    others = sorted(set(source.stages) - {k for k, _, _ in ART7_STAGES} - {"use"})
    if others:
        raise fail(
            source.subject,
            Violation.of(
                source.stages_path,
                "unknown_stage",
                "must hold only the Annex II stages (and use, which Art. 7 leaves out)",
                ", ".join(others),
            ),
        )
    problems = []
    for key, _, wording in ART7_STAGES:
        in_footprint, in_input = key in source.stages, key in inp.beyond_gate
        if in_footprint and in_input:
            problems.append(
                Violation.of(
                    f"beyondGate.{_INPUT_KEYS[key]}",
                    "given_twice",
                    f"must not be given: the footprint's stageBreakdown already has {key}",
                    format(inp.beyond_gate[key], "f"),
                )
            )
        elif not in_footprint and not in_input:
            where = (
                f"{source.stages_path}.{key}"
                if key not in _INPUT_KEYS
                else f"{source.stages_path}.{key} or beyondGate.{_INPUT_KEYS[key]}"
            )
            problems.append(
                Violation.of(
                    where,
                    "required",
                    f"is required for Art. 7 (Annex II point 4: {wording}; 0 if it emits nothing)",
                    None,
                )
            )
    if problems:
        raise fail(source.subject, *problems)
    figure = source.figure("pcfExcludingBiogenicUptake")
    all_stages = exact_sum(source.stages.values())
    if figure is None or all_stages != figure:
        raise fail(
            source.subject,
            Violation.of(
                source.stages_path,
                "sum_mismatch",
                f"must add up to pcf.pcfExcludingBiogenicUptake ({figure}): the stages are"
                " declared as this footprint's",
                format(all_stages, "f"),
            ),
        )
    kwh = _kwh_per_declared_unit(source, inp)
    check = source.pcr(certificates)
    assert check.pack is not None
    stages = tuple(
        StageFigure(key, stage, wording, DIVISION.divide(source.stages[key], kwh), "footprint")
        if key in source.stages
        else StageFigure(key, stage, wording, inp.beyond_gate[key], "declaration input")
        for key, stage, wording in ART7_STAGES
    )
    total = exact_sum(s.kg_co2e_per_kwh for s in stages)
    use = source.stages.get("use")
    energy = inp.service_life_energy_kwh
    absolute = None if energy is None else EXACT.multiply(total, energy)
    return Art7Declaration(
        declaration_id=declaration_id or str(uuid.uuid4()),
        issued_at=issued_at,
        inp=inp,
        total_per_kwh=total,
        stages=stages,
        absolute_kg_co2e=absolute,
        kwh_per_declared_unit=kwh,
        excluded_use=None if use is None else DIVISION.divide(use, kwh),
        certificates=certificates,
        pcr_pack_id=check.pack.id,
        pcr_pack_version=check.pack.version,
        product_id=source.product_id,
        footprint_id=source.footprint_id,
        content_hash=source.content_hash,
    )
