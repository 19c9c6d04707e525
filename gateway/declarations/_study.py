"""The GB/T 24067-2024 / ISO 14067 carbon-footprint study report for one product.

**What goes in** (``shared/reference/regulation.md`` §1.6, the practical minimum): goal and scope;
the functional or declared unit; the system boundary and the stages included; the reference
period; the data sources (primary data share, the secondary sources, and every background factor
the roll-up used, with its source, version, publisher, reference year, geography and what it
covers: total only, or a fossil / biogenic / land-use split); allocation; data quality (the
three PACT DQRs, against the PCR pack's maximum); results per stage and the fossil / biogenic /
land-use split; uncertainty; the assumptions the figures rest on (e.g. a value-only factor
counted as fossil, as the roll-up documents it); the PCR pack and the certificates.

**From what.** A :class:`~gateway.declarations.ProductSource` (its lineage names each factor by
id *and* version), the background factors as :class:`~contracts.EmissionFactor` records keyed by
``(factorId, version)`` (the caller loads them, e.g. the shipped sourced set), and an optional
input (goal, intended application, commissioner, practitioner). A factor the lineage names but
the given table does not hold is listed as such (``source`` unknown), never invented.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Final

from pcf_exchange.contracts import EmissionFactor
from pcf_exchange.contracts._footprint import PCFX_EXTENSION_SCHEMA
from pcf_exchange.contracts.errors import Violation
from pcf_exchange.gateway.declarations._source import (
    CertificateRef,
    InputFields,
    ProductSource,
    fail,
)

__all__ = ["FactorCitation", "StudyInput", "StudyReport", "build_study", "read_study_input"]

STUDY_TYPE: Final = "gbt24067-study-report"
_DEFAULT_GOAL: Final = (
    "Quantify the partial carbon footprint of the product per declared unit for exchange along"
    " the supply chain"
)
_SPLIT: Final = (
    "fossilGhgEmissions",
    "landUseChangeGhgEmissions",
    "biogenicCO2Uptake",
    "biogenicNonCO2Emissions",
    "pcfIncludingBiogenicUptake",
)


@dataclass(frozen=True, slots=True)
class StudyInput:
    goal: str = _DEFAULT_GOAL
    intended_application: str | None = None
    commissioner: str | None = None
    practitioner: str | None = None


def read_study_input(data: Any, *, subject: str = "study input") -> StudyInput:
    """Parse the optional study input (``goal``, ``intendedApplication``, ``commissioner``,
    ``practitioner``; all text)."""
    if data is None:
        return StudyInput()
    f = InputFields(data, subject)
    goal = f.text("goal", required=False)
    application = f.text("intendedApplication", required=False)
    commissioner = f.text("commissioner", required=False)
    practitioner = f.text("practitioner", required=False)
    f.done()
    return StudyInput(goal or _DEFAULT_GOAL, application, commissioner, practitioner)


@dataclass(frozen=True, slots=True)
class FactorCitation:
    """A background factor the roll-up used, cited with what the factor table says of it."""

    factor_id: str
    version: str | None
    contribution: Decimal | None
    factor: EmissionFactor | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "factorId": self.factor_id,
            "version": self.version,
            "contributionKgCO2e": None if self.contribution is None else _s(self.contribution),
        }
        f = self.factor
        if f is None:
            out["source"] = None
            out["note"] = "not in the given factor table: source unknown"
            return out
        out.update(
            name=f.name,
            source=f.source,
            geography=f.geography,
            referenceYear=f.reference_year,
            coverage=f.coverage,
            publisher=None if f.reference is None else f.reference.publisher,
            title=None if f.reference is None else f.reference.title,
            url=None if f.reference is None else f.reference.url,
            dqr=None
            if f.dqr is None
            else {
                "technologicalDQR": _s(f.dqr.technological_dqr),
                "geographicalDQR": _s(f.dqr.geographical_dqr),
                "temporalDQR": _s(f.dqr.temporal_dqr),
            },
        )
        return out


@dataclass(frozen=True, slots=True)
class StudyReport:
    report_id: str
    issued_at: datetime
    inp: StudyInput
    source: ProductSource
    factors: tuple[FactorCitation, ...]
    certificates: tuple[CertificateRef, ...]
    pcr_pack: tuple[str, str] | None
    boundary: str | None
    max_dqr: Decimal | None

    doc_type: ClassVar[str] = STUDY_TYPE
    """The declaration's kind (its ``type`` in JSON, and the policy's default purpose key)."""

    @property
    def title(self) -> str:
        name = self.source.pact.get("productNameCompany") or self.source.product_id
        return f"Carbon footprint study report (GB/T 24067-2024 / ISO 14067): {name}"

    def to_json(self) -> dict[str, Any]:
        pact, pcf = self.source.pact, self.source.pcf
        stages = self.source.stages or {}
        return {
            "type": self.doc_type,
            "reportId": self.report_id,
            "issuedAt": _iso(self.issued_at),
            "standards": ["GB/T 24067-2024", "ISO 14067:2018"],
            "goalAndScope": {
                k: v
                for k, v in {
                    "goal": self.inp.goal,
                    "intendedApplication": self.inp.intended_application,
                    "commissioner": self.inp.commissioner,
                    "practitioner": self.inp.practitioner,
                }.items()
                if v is not None
            },
            "product": {
                "productId": self.source.product_id,
                "name": pact.get("productNameCompany"),
                "description": pact.get("productDescription"),
                "companyName": pact.get("companyName"),
            },
            "declaredUnit": {
                "amount": pcf.get("declaredUnitAmount"),
                "unit": pcf.get("declaredUnitOfMeasurement"),
                "productMassPerDeclaredUnit": pcf.get("productMassPerDeclaredUnit"),
            },
            "systemBoundary": {
                "boundary": self.boundary,
                "stagesIncluded": sorted(stages),
                "description": pcf.get("boundaryProcessesDescription"),
                "exemptedEmissionsPercent": pcf.get("exemptedEmissionsPercent"),
            },
            "referencePeriod": {
                "start": pcf.get("referencePeriodStart"),
                "end": pcf.get("referencePeriodEnd"),
            },
            "dataSources": {
                "primaryDataShare": pcf.get("primaryDataShare"),
                "secondaryEmissionFactorSources": list(
                    pcf.get("secondaryEmissionFactorSources") or []
                ),
                "backgroundFactors": [f.to_json() for f in self.factors],
            },
            "allocation": pcf.get("allocationRulesDescription"),
            "dataQuality": {
                "dqi": pcf.get("dqi"),
                "packMaximumDQR": None if self.max_dqr is None else _s(self.max_dqr),
            },
            "results": {
                "unit": f"kgCO2e per {pcf.get('declaredUnitAmount')}"
                f" {pcf.get('declaredUnitOfMeasurement')}",
                "pcfExcludingBiogenicUptake": pcf.get("pcfExcludingBiogenicUptake"),
                **{k: pcf.get(k) for k in _SPLIT if pcf.get(k) is not None},
                "perStage": [{"stage": k, "kgCO2e": _s(v)} for k, v in stages.items()],
                "ipccCharacterizationFactors": list(pcf.get("ipccCharacterizationFactors") or []),
            },
            "uncertainty": _uncertainty(self.source),
            "assumptions": list(self.source.assumptions),
            "pcrPack": None
            if self.pcr_pack is None
            else {"id": self.pcr_pack[0], "version": self.pcr_pack[1]},
            "certificates": [c.to_json() for c in self.certificates],
            "source": {
                "footprintId": self.source.footprint_id,
                "contentHash": self.source.content_hash,
            },
        }

    def sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        doc = self.to_json()
        pcf = self.source.pcf
        rows_factors = []
        for f in self.factors:
            if f.factor is None:
                rows_factors.append((f"{f.factor_id} {f.version or ''}", "not in the factor table"))
                continue
            ref = f.factor.reference
            cited = f"{ref.publisher}, {ref.url}" if ref else "no reference"
            rows_factors.append(
                (
                    f"{f.factor_id} (version {f.version or f.factor.version})",
                    f"{f.factor.source}; {cited};"
                    f" {f.factor.geography or '-'}, {f.factor.reference_year or '-'};"
                    f" covers {f.factor.coverage}"
                    + (
                        f"; contributes {_s(f.contribution)} kgCO2e"
                        if f.contribution is not None
                        else ""
                    ),
                )
            )
        found = pcf.get("dqi")
        dqi: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        return [
            ("Goal and scope", [(k, str(v)) for k, v in doc["goalAndScope"].items()]),
            (
                "Declared unit and boundary",
                [
                    (
                        "Declared unit",
                        f"{pcf.get('declaredUnitAmount')} {pcf.get('declaredUnitOfMeasurement')}",
                    ),
                    ("Boundary", str(self.boundary or "-")),
                    ("Stages included", ", ".join(doc["systemBoundary"]["stagesIncluded"]) or "-"),
                    (
                        "Reference period",
                        f"{pcf.get('referencePeriodStart')} to {pcf.get('referencePeriodEnd')}",
                    ),
                ],
            ),
            (
                "Data sources",
                [("Primary data share", f"{pcf.get('primaryDataShare', '-')} %"), *rows_factors],
            ),
            ("Allocation", [("Rules", str(pcf.get("allocationRulesDescription") or "-"))]),
            (
                "Data quality (DQR, 1 best)",
                [(k, str(v)) for k, v in dqi.items()]
                + [("Pack maximum", "-" if self.max_dqr is None else _s(self.max_dqr))],
            ),
            (
                "Results (kgCO2e per declared unit)",
                [("Total (excl. biogenic uptake)", str(pcf.get("pcfExcludingBiogenicUptake")))]
                + [(k, str(pcf.get(k))) for k in _SPLIT if pcf.get(k) is not None]
                + [(f"Stage: {k}", _s(v)) for k, v in (self.source.stages or {}).items()],
            ),
            (
                "Uncertainty and characterisation",
                [(k, str(v)) for k, v in (_uncertainty(self.source) or {}).items()]
                + [("IPCC GWP set", ", ".join(doc["results"]["ipccCharacterizationFactors"]))],
            ),
            ("Assumptions", [(str(n + 1), a) for n, a in enumerate(self.source.assumptions)]),
            (
                "PCR and verification",
                [("PCR pack", "none" if self.pcr_pack is None else " ".join(self.pcr_pack))]
                + [
                    (f"Certificate {c.certificate_id}", f"by {c.body_id}, scope {c.scope}")
                    for c in self.certificates
                ],
            ),
        ]


def _uncertainty(source: ProductSource) -> Mapping[str, Any] | None:
    """The pcfx extension's ``uncertainty`` of the total, as published (or ``None``)."""
    for ext in source.pact.get("extensions") or ():
        if isinstance(ext, Mapping) and ext.get("dataSchema") == PCFX_EXTENSION_SCHEMA:
            found = (ext.get("data") or {}).get("uncertainty")
            return found if isinstance(found, Mapping) else None
    return None


def _s(value: Decimal) -> str:
    return format(value, "f")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def build_study(
    source: ProductSource,
    *,
    factors: Mapping[tuple[str, str], EmissionFactor],
    inp: StudyInput | None = None,
    certificates: tuple[CertificateRef, ...] = (),
    issued_at: datetime,
    report_id: str | None = None,
) -> StudyReport:
    """Build the study report (pure). Needs a stage breakdown (results per stage) and a footprint
    that meets its PCR pack (the check's error otherwise)."""
    if not source.stages:
        raise fail(
            source.subject,
            Violation.of(
                source.stages_path,
                "required",
                "is required: a GB/T 24067 study report gives the results per life-cycle stage",
                None,
            ),
        )
    check = source.pcr(certificates)
    cited: list[FactorCitation] = []
    for row in source.inputs:
        if row.kind != "factor" or row.factor_id is None:
            continue
        factor = factors.get((row.factor_id, row.factor_version)) if row.factor_version else None
        cited.append(FactorCitation(row.factor_id, row.factor_version, row.contribution, factor))
    return StudyReport(
        report_id=report_id or str(uuid.uuid4()),
        issued_at=issued_at,
        inp=inp or StudyInput(),
        source=source,
        factors=tuple(cited),
        certificates=certificates,
        pcr_pack=None if check.pack is None else (check.pack.id, check.pack.version),
        boundary=None if check.pack is None else check.pack.boundary.value,
        max_dqr=None if check.pack is None else check.pack.max_dqr,
    )
