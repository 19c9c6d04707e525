"""Between the contracts (Avro/pydantic records on the topics) and the roll-up core's dataclasses.

Inbound, verified records become core inputs: a signed PACT footprint a
:class:`~streams.rollup.ComponentFootprint`, a factor a :class:`~streams.rollup.Factor`, a BOM a
:class:`~streams.rollup.Bom`. Outbound, a :class:`~streams.rollup.RollupResult` becomes the
``RolledUpFootprint`` on ``pcf.products``, carrying — when the BOM has ``productInfo`` and the
roll-up is complete — the PACT v3 footprint issued for it: id = :func:`issued_id` (the result's
content id for a product's first footprint, then chained on the predecessor's id, so that every
version has an id of its own even when a result returns to an earlier content),
``precedingPfIds`` = the previous footprint's id. PACT v3 footprints are immutable and the one
they supersede MUST become ``Deprecated``: :func:`deprecated_record` is the previous record again
with only that changed, sent before its successor (as ``pcfx publish --supersedes`` does for
suppliers). A product's lineage names a rolled-up input by its result's content id and content
hash (what the core keeps), which is that input's PACT id only for its first footprint.

Two builders give the same record. :func:`rolled_up_record` goes through the models (pydantic,
and the PACT footprint through ``parse_footprint``): batch mode, files and tests, and the
reference that names a broken rule. :func:`rolled_up_datum` builds the record's Avro datum
directly, for the streams' publish step, checked by the same rules compiled as plain code
(:mod:`contracts._fast`); when those cannot say yes it returns ``None`` and the caller uses the
models. Both share every computation below (lineage rows, gaps, the PACT document), and
``tests/streams/test_publish_datum.py`` compares their bytes.

Mapping choices: a factor-only BOM line is a line whose component is the factor itself (so it is
always resolved by the factor and flagged secondary); ``otherActivities`` of the own process are
such lines too. Life-cycle stages and uncertainty come from the pcf-exchange PACT extension.
A background factor that gives only a value counts as fossil, and one that does not state its
fossil carbon content counts it as 0: documented, flagged assumptions made here, where a factor
becomes an input, not in the roll-up's arithmetic (:func:`core_factor`). The flag travels up with
the factor's source label, so every product above it lists it in ``assumptions``; a product that
issues no PACT footprint says why in ``footprintWithheld`` (:func:`footprint_withheld`).
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from pcf_exchange.contracts import (
    BillOfMaterials,
    BomComponent,
    Completeness,
    DataQualityIndicators,
    DeclaredUnit,
    EmissionFactor,
    Facility,
    LineageInput,
    MissingComponent,
    OwnEmissions,
    ProductFootprint,
    RolledUpFootprint,
    Uncertainty,
    parse_footprint,
    payload_json,
    to_pact_json,
)
from pcf_exchange.contracts._fast import canonical_uuid, footprint_datum, footprint_ok, rolled_up_ok
from pcf_exchange.contracts._footprint import PCFX_EXTENSION_SCHEMA
from pcf_exchange.contracts._serde import to_avro_dict
from pcf_exchange.contracts._types import MAX_DECIMAL_CHARS, decimal_fits, format_decimal
from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.contracts.errors import RollupError
from pcf_exchange.streams.rollup import (
    DQR_RATINGS,
    HEADLINE_METRIC,
    REQUIRED_METRICS,
    ROLLED_UP_METRICS,
    Bom,
    BomLine,
    ComponentFootprint,
    Factor,
    OwnProcess,
    RollupResult,
    SourceKind,
    Status,
)
from pcf_exchange.streams.rollup._result import RESULT_NAMESPACE

__all__ = [
    "ASSUMED",
    "CARBON_CONTENT_AS_ZERO",
    "ENGINE_VERSION",
    "METHOD",
    "VALUE_ONLY_AS_FOSSIL",
    "assumptions",
    "core_bom",
    "core_factor",
    "core_footprint",
    "core_footprint_pact",
    "deprecated_record",
    "factor_assumptions",
    "footprint_withheld",
    "issued_id",
    "payload_hash",
    "rolled_up_datum",
    "rolled_up_record",
]

METHOD = "pcfx-rollup/attributional-cradle-to-gate"
ENGINE_VERSION = "pcf-exchange 0.1.0"
_HUNDRED = Decimal(100)
_Z95 = Decimal("1.959963984540054")
_PACT_REQUIRED_FIGURES = frozenset({*REQUIRED_METRICS, "fossilCarbonContent"})
"""CarbonFootprint figures PACT v3 requires: without one of them no footprint is issued."""


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


# --- inbound -----------------------------------------------------------------------------------


def payload_hash(record: ProductFootprint | EmissionFactor | BillOfMaterials) -> str:
    """sha256 of an unsigned record's canonical JSON (batch mode's inputs carry no envelope)."""
    return hashlib.sha256(canonical_json(payload_json(record))).hexdigest()


def core_footprint(
    fp: ProductFootprint, *, sequence: int, content_hash: str, supplier: str | None = None
) -> ComponentFootprint:
    """A supplier footprint as a roll-up input (figures by their PACT names).

    *supplier* is the company that signed it (the streams pass the envelope's ``supplierId``,
    which ingestion checked is among ``companyIds``); by default the first of ``companyIds``
    (batch mode: unsigned files)."""
    return core_footprint_pact(
        to_pact_json(fp),
        sequence=sequence,
        content_hash=content_hash,
        supplier=fp.company_ids[0] if supplier is None else supplier,
    )


def core_footprint_pact(
    payload: Mapping[str, Any], *, sequence: int, content_hash: str, supplier: str
) -> ComponentFootprint:
    """A footprint's PACT v3 JSON (``to_pact_json``, or the ingestion's fast path's checked
    payload, :class:`contracts.CheckedFootprint`) as a roll-up input: the one mapping, which
    :func:`core_footprint` uses for a model too."""
    pcf = payload["pcf"]
    figures = {k: Decimal(v) for k, v in pcf.items() if k in ROLLED_UP_METRICS and v is not None}
    dqr = {k: Decimal(v) for k, v in (pcf.get("dqi") or {}).items() if k in DQR_RATINGS}
    headline = figures[HEADLINE_METRIC]
    stages: dict[str, Decimal] = {}
    std_dev: Decimal | None = None
    ours = [
        e["data"]
        for e in payload.get("extensions") or ()
        if e.get("dataSchema") == PCFX_EXTENSION_SCHEMA
    ]
    if ours:
        breakdown = {k: Decimal(v) for k, v in (ours[0].get("stageBreakdown") or {}).items()}
        if breakdown and sum(breakdown.values(), Decimal(0)) == headline:
            stages = breakdown
        uncertainty = ours[0].get("uncertainty")
        if uncertainty is not None:
            std_dev = _std_dev_of(
                _optional_decimal(uncertainty.get("relativeStandardUncertaintyPercent")),
                _optional_decimal(uncertainty.get("lower95")),
                _optional_decimal(uncertainty.get("upper95")),
                headline,
            )
    share, mass = pcf.get("primaryDataShare"), pcf.get("productMassPerDeclaredUnit")
    return ComponentFootprint(
        product_id=payload["productIds"][0],
        footprint_id=str(UUID(payload["id"])),
        sequence=sequence,
        declared_unit=pcf["declaredUnitOfMeasurement"],
        declared_unit_amount=Decimal(pcf["declaredUnitAmount"]),
        figures=figures,
        product_mass_per_declared_unit=Decimal(mass) if mass is not None else None,
        primary_data_share=Decimal(share) if share is not None else None,
        dqr=dqr,
        std_dev=std_dev,
        stages=stages,
        secondary_sources=tuple(
            f"{s['name']} {s['version']}" for s in pcf.get("secondaryEmissionFactorSources") or ()
        ),
        content_hash=content_hash,
        supplier=supplier,
    )


def _optional_decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _std_dev(uncertainty: Uncertainty | None, value: Decimal) -> Decimal | None:
    if uncertainty is None:
        return None
    return _std_dev_of(
        uncertainty.relative_standard_uncertainty_percent,
        uncertainty.lower95,
        uncertainty.upper95,
        value,
    )


def _std_dev_of(
    percent: Decimal | None, lower95: Decimal | None, upper95: Decimal | None, value: Decimal
) -> Decimal | None:
    if percent is not None:
        return abs(value) * percent / _HUNDRED
    if lower95 is not None and upper95 is not None:
        return (upper95 - lower95) / (2 * _Z95)
    return None


VALUE_ONLY_AS_FOSSIL = "value only, counted as fossil (excl = incl = fossil = value)"
"""The assumption a ``total`` factor (a value and nothing said of its origin) is used under."""
CARBON_CONTENT_AS_ZERO = "fossil carbon content not stated, counted as 0"
"""The assumption a factor that does not state ``fossilCarbonContent`` is used under."""
ASSUMED = " [assumed: "
"""Marks a factor's source label that carries assumptions: ``"<source> (<version>) [assumed:
<assumption>; ...]"``."""


def factor_assumptions(f: EmissionFactor) -> tuple[str, ...]:
    """The documented assumptions under which :func:`core_factor` uses *f* (empty: none)."""
    assumed: list[str] = []
    if f.coverage == "total":
        assumed.append(VALUE_ONLY_AS_FOSSIL)
    if f.fossil_carbon_content is None:
        assumed.append(CARBON_CONTENT_AS_ZERO)
    return tuple(assumed)


def core_factor(
    f: EmissionFactor, *, sequence: int, content_hash: str, publisher: str = ""
) -> Factor:
    """A background factor as a roll-up input, per one ``unit``.

    A ``split`` factor gives PACT's figures as stated: ``pcfExcludingBiogenicUptake`` = value,
    ``fossilGhgEmissions`` = its fossil part, ``biogenicNonCO2Emissions`` and
    ``landUseChangeGhgEmissions`` as given, ``pcfIncludingBiogenicUptake`` = value (a factor
    states no biogenic uptake). A ``total`` factor -- a value alone, the common case -- counts
    as fossil: excl = incl = fossil = value (:data:`VALUE_ONLY_AS_FOSSIL`). A factor that does
    not state its fossil carbon content counts it as 0 (:data:`CARBON_CONTENT_AS_ZERO`; PACT
    requires the figure, and without it every product above the factor would lose its
    footprint). Both are *flagged*, never silent: the factor's source label carries them
    (``... [assumed: ...]``), which the roll-up hands up to every product above it in
    ``factor_sources``, so :func:`rolled_up_record` lists them in ``assumptions`` and PACT's
    ``secondaryEmissionFactorSources`` names them. The factor's ``version`` goes into its lineage
    identity (``id@version``).
    """
    dqr: dict[str, Decimal] = {}
    if f.dqr is not None:
        dqr = {
            k: Decimal(v)
            for k, v in f.dqr.model_dump(mode="json", by_alias=True).items()
            if k in DQR_RATINGS and v is not None
        }
    figures = dict.fromkeys(REQUIRED_METRICS, f.value)
    if f.fossil_ghg_emissions is not None:
        figures["fossilGhgEmissions"] = f.fossil_ghg_emissions
        figures["biogenicNonCO2Emissions"] = f.biogenic_non_co2_emissions or Decimal(0)
        figures["landUseChangeGhgEmissions"] = f.land_use_change_ghg_emissions or Decimal(0)
    figures["fossilCarbonContent"] = (
        f.fossil_carbon_content if f.fossil_carbon_content is not None else Decimal(0)
    )
    if f.biogenic_carbon_content is not None:
        figures["biogenicCarbonContent"] = f.biogenic_carbon_content
    assumed = factor_assumptions(f)
    label = f"{f.source} ({f.version})"
    if assumed:
        label += ASSUMED + "; ".join(assumed) + "]"
    return Factor(
        factor_id=f.factor_id,
        sequence=sequence,
        unit=f.unit,
        figures=figures,
        std_dev=_std_dev(f.uncertainty, f.value),
        dqr=dqr,
        source=label,
        content_hash=content_hash,
        publisher=publisher,
        version=f.version,
    )


def core_bom(bom: BillOfMaterials) -> Bom:
    """A BOM as the core sees it; factor-only lines become lines on the factor itself."""
    lines = [
        BomLine(
            component_id=c.product_id or c.factor_id or "",
            quantity=c.quantity,
            unit=c.unit,
            factor_id=c.factor_id,
        )
        for c in bom.components
    ]
    own = OwnProcess()
    process = bom.process_emissions
    if process is not None:
        for activity in process.other_activities or ():
            lines.append(
                BomLine(activity.factor_id, activity.quantity, activity.unit, activity.factor_id)
            )
        own = OwnProcess(
            direct_kgco2e=process.direct_kg_co2e or Decimal(0),
            electricity_kwh=process.electricity_k_wh or Decimal(0),
            grid_factor_id=process.electricity_factor_id,
        )
    return Bom(
        product_id=bom.product_id,
        revision=bom.revision,
        components=tuple(lines),
        own=own,
        declared_unit=bom.declared_unit.unit,
        declared_unit_amount=bom.declared_unit.amount,
        product_mass_per_declared_unit=bom.product_mass_per_declared_unit,
        owner=bom.owner or "",
    )


# --- outbound ----------------------------------------------------------------------------------


def _index(path: str) -> int | None:
    if path.startswith("components[") and path.endswith("]"):
        return int(path[len("components[") : -1])
    return None


def _lineage_rows(result: RollupResult, bom: BillOfMaterials) -> list[dict[str, Any]]:
    """The lineage inputs of *result* as plain values by their wire names (decimals as
    :class:`Decimal`): what :func:`_lineage` makes models of and :func:`rolled_up_datum`
    writes."""
    rows = []
    lines = bom.components
    for item in result.lineage:
        index = _index(item.path)
        if index is None or item.contribution is None:
            continue  # own process: reported in OwnEmissions; unresolved: in missing
        line = lines[index] if index < len(lines) else None
        by_factor = item.kind is SourceKind.FACTOR
        version = item.footprint_id.partition("@")[2]
        rows.append(
            {
                "componentIndex": index,
                "kind": "factor" if by_factor else "footprint",
                "productId": None if by_factor else item.ref.removeprefix("product:"),
                "footprintId": None if by_factor else item.footprint_id,
                "factorId": item.ref.removeprefix("factor:") if by_factor else None,
                "factorVersion": (version or None) if by_factor else None,
                "supplierId": item.supplier or None,
                "sequence": item.sequence,
                "contentHash": _hex(item.content_hash),
                "quantity": line.quantity if line else item.quantity,
                "unit": line.unit if line else item.unit,
                "contributionKgCO2e": item.contribution,
            }
        )
    return rows


def _lineage(result: RollupResult, bom: BillOfMaterials) -> tuple[LineageInput, ...]:
    return tuple(LineageInput(**row) for row in _lineage_rows(result, bom))


def _own_sums(result: RollupResult) -> tuple[Decimal, Decimal]:
    """(direct, electricity): the own process emissions of *result*."""
    direct = electricity = Decimal(0)
    for item in result.lineage:
        if item.kind is SourceKind.OWN_DIRECT and item.contribution is not None:
            direct += item.contribution
        elif item.kind is SourceKind.OWN_ELECTRICITY and item.contribution is not None:
            electricity += item.contribution
    return direct, electricity


def _own(result: RollupResult) -> OwnEmissions:
    direct, electricity = _own_sums(result)
    return OwnEmissions(
        direct_kg_co2e=direct, electricity_kg_co2e=electricity, other_kg_co2e=Decimal(0)
    )


def _refs(line: BomComponent) -> set[str]:
    return {f"product:{line.product_id}", f"factor:{line.factor_id}"}


def _gap(index: int, line: BomComponent | None, reason: str, detail: str) -> dict[str, Any]:
    return {
        "componentIndex": index,
        "productId": line.product_id if line else None,
        "factorId": line.factor_id if line else None,
        "reason": reason,
        "detail": detail[:10_000],
    }


def _missing_rows(result: RollupResult, bom: BillOfMaterials) -> list[dict[str, Any]]:
    """Why *result* is not complete, line by line (by the wire names): no footprint and no
    factor, units that do not convert, an input with no usable roll-up, an input that is itself
    incomplete (naming what is missing further up); or the cycle."""
    lines = bom.components
    gone, blocked = set(result.missing), set(result.blocked_by)
    further = ", ".join(sorted(gone - {ref for line in lines for ref in _refs(line)}))
    incomplete = {_index(item.path) for item in result.lineage if item.status is Status.INCOMPLETE}
    missing: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        refs = _refs(line)
        if refs & gone:
            reason = "no_footprint" if line.product_id else "no_factor"
            detail = "no supplier footprint and no usable background factor"
            missing.append(_gap(index, line, reason, detail))
        elif refs & blocked:
            detail = "its input has no usable roll-up (an error, a cycle or a blocked input)"
            missing.append(_gap(index, line, "other", detail))
        elif index in incomplete:
            detail = f"its input is incomplete; missing further up: {further or 'unknown'}"
            missing.append(_gap(index, line, "other", detail))
    for error in result.errors:
        where = _index(error.path.partition(".")[0])
        at = lines[where] if where is not None and where < len(lines) else None
        missing.append(_gap(where or 0, at, "unit_mismatch", f"{error.path}: {error.message}"))
    if result.cycle:
        missing.append(_gap(0, None, "cycle", " -> ".join(result.cycle)))
    return missing


def _missing(result: RollupResult, bom: BillOfMaterials) -> tuple[MissingComponent, ...]:
    return tuple(MissingComponent(**row) for row in _missing_rows(result, bom))


def _percent(value: Decimal) -> Decimal:
    """Shares and ratings are presented to two decimals; emission figures are never rounded."""
    return value.quantize(Decimal("0.01"))


def _dqi(result: RollupResult) -> DataQualityIndicators | None:
    ratings = _dqi_json(result)
    return None if ratings is None else DataQualityIndicators.model_validate(ratings)


def assumptions(result: RollupResult) -> tuple[str, ...]:
    """The flagged assumptions of the factors *result* rests on, here or upstream (their source
    labels, see :func:`core_factor`)."""
    return tuple(s for s in result.factor_sources if ASSUMED in s)


def footprint_withheld(result: RollupResult, bom: BillOfMaterials) -> str | None:
    """Why no PACT footprint is issued for *result* (``None``: one is)."""
    if result.status is not Status.COMPLETE:
        why = {
            Status.INCOMPLETE: "some inputs have no footprint and no factor: "
            + ", ".join(result.missing),
            Status.ERROR: "a line of the BOM cannot be evaluated: "
            + "; ".join(f"{e.path}: {e.message}" for e in result.errors),
            Status.BLOCKED: "inputs cannot be rolled up: " + ", ".join(result.blocked_by),
            Status.CYCLE: "the product is on a cycle: " + " -> ".join(result.cycle),
        }[result.status]
        return f"the roll-up is {result.status.value}; {why}"[:10_000]
    if bom.product_info is None:
        return (
            "the BOM has no productInfo (company, product name and description, reference "
            "period), which a PACT footprint needs"
        )
    figures = result.figures or {}
    absent = sorted(_PACT_REQUIRED_FIGURES - figures.keys())
    if absent:
        lacking = "; ".join(
            f"{name} lacking from {', '.join(result.metric_gaps.get(name, ())) or 'every input'}"
            for name in absent
        )
        return f"PACT requires {', '.join(absent)}, which not every input reports: {lacking}"[
            :10_000
        ]
    return None


def _dqi_json(result: RollupResult) -> dict[str, str] | None:
    """The three DQRs of *result* as PACT decimal text (two decimals), when it has all three."""
    ratings = result.dqr
    names = ("technologicalDQR", "geographicalDQR", "temporalDQR")
    if not all(n in ratings for n in names):
        return None
    return {n: format(_percent(ratings[n]), "f") for n in names}


def _pact_doc(
    result: RollupResult,
    bom: BillOfMaterials,
    previous_id: str | None,
    now: datetime,
    dqi: Mapping[str, str] | None,
    share: Decimal | None,
) -> dict[str, Any] | None:
    """The PACT v3 JSON of the footprint issued for a complete roll-up of a BOM that has
    productInfo (*dqi* and the primary data *share* as in its record); ``None`` when there is
    none to issue. Checked by the model (:func:`_issue_pact`) or by the fast rules
    (:func:`rolled_up_datum`)."""
    info = bom.product_info
    figures = result.figures
    if info is None or figures is None or not figures.keys() >= _PACT_REQUIRED_FIGURES:
        return None  # RolledUpFootprint still carries the figures, lineage and metric gaps
    pcf: dict[str, Any] = {
        "declaredUnitOfMeasurement": result.declared_unit,
        "declaredUnitAmount": format_decimal(result.declared_unit_amount),
        "productMassPerDeclaredUnit": format_decimal(result.mass_per_declared_unit or Decimal(0)),
        "referencePeriodStart": info.reference_period_start.isoformat(),
        "referencePeriodEnd": info.reference_period_end.isoformat(),
        "boundaryProcessesDescription": (
            f"Cradle to gate: own process plus {len(bom.components)} inputs, rolled up "
            "through every tier by pcf-exchange"
        ),
        "ipccCharacterizationFactors": ["AR6"],
        "crossSectoralStandards": ["ISO14067"],
        "exemptedEmissionsPercent": "0",
        "packagingEmissionsIncluded": False,
        **{name: format_decimal(value) for name, value in figures.items()},
    }
    if info.geography_country_subdivision:
        pcf["geographyCountrySubdivision"] = info.geography_country_subdivision
    elif info.geography_country:
        pcf["geographyCountry"] = info.geography_country
    if share is not None:
        pcf["primaryDataShare"] = format_decimal(share)
    if dqi is not None:
        pcf["dqi"] = dict(dqi)
    if result.factor_sources:
        pcf["secondaryEmissionFactorSources"] = [
            {"name": source, "version": "-"} for source in result.factor_sources
        ]
    footprint_id = issued_id(result, previous_id)
    doc: dict[str, Any] = {
        "id": footprint_id,
        "specVersion": "3.0.0",
        "created": now.isoformat(),
        "status": "Active",
        "companyName": info.company_name,
        "companyIds": list(info.company_ids),
        "productDescription": info.product_description,
        "productIds": [result.product_id],
        "productNameCompany": info.product_name_company,
        "comment": f"Rolled up from BOM revision {result.bom_revision}; lineage in pcf.products",
        "pcf": pcf,
    }
    if previous_id is not None and previous_id != footprint_id:
        doc["precedingPfIds"] = [previous_id]
    if info.product_classifications:
        doc["productClassifications"] = list(info.product_classifications)
    return doc


def _issue_pact(
    result: RollupResult,
    bom: BillOfMaterials,
    previous_id: str | None,
    now: datetime,
    dqi: DataQualityIndicators | None,
    share: Decimal | None,
) -> ProductFootprint | None:
    """The PACT v3 footprint for a complete roll-up of a BOM that has productInfo (*dqi* and
    the primary data *share* as in its record), through the model."""
    dqi_json = None if dqi is None else dqi.model_dump(mode="json", by_alias=True)
    doc = _pact_doc(result, bom, previous_id, now, dqi_json, share)
    return None if doc is None else parse_footprint(doc)


def _check_writable(result: RollupResult) -> None:
    """Raise :class:`RollupError` naming the first figure of *result* that no decimal field can
    hold (more integer digits than :data:`MAX_DECIMAL_CHARS`: inputs that are valid one by one
    can multiply into one)."""
    named: list[tuple[str, Decimal | None]] = [
        (f"pcf.{name}", value) for name, value in (result.figures or {}).items()
    ]
    named += [(f"lineage[{i}].contribution", x.contribution) for i, x in enumerate(result.lineage)]
    uncertainty = result.uncertainty
    if uncertainty is not None:
        named += [
            ("uncertainty.lower95", uncertainty.low),
            ("uncertainty.upper95", uncertainty.high),
        ]
    for path, value in named:
        if value is not None and not decimal_fits(value):
            raise RollupError(
                f"'{path}' of the roll-up of {result.product_id} is {value:.3E}: more digits "
                f"before the point than a decimal may have ({MAX_DECIMAL_CHARS} characters)",
                path=path,
                hint="Check the quantities and units of its BOM and the figures of its inputs.",
            )


def _resolved(result: RollupResult, total_lines: int) -> int:
    """The BOM's lines that contribute (an incomplete input counts)."""
    return len(
        {
            index
            for item in result.lineage
            if item.contribution is not None
            and (index := _index(item.path)) is not None
            and index < total_lines
        }
    )


def _coverage(resolved: int, total_lines: int) -> Decimal:
    if not total_lines:
        return _HUNDRED
    return (Decimal(resolved) * _HUNDRED / total_lines).quantize(Decimal("0.01"))


def _relative_uncertainty(std_dev: Decimal, headline: Decimal) -> Decimal | None:
    return (std_dev * _HUNDRED / headline).quantize(Decimal("0.01")) if headline else None


_INTERVAL_METHOD = "first-order propagation, independent inputs, normal 95 % interval"


def issued_id(result: RollupResult, previous_id: str | None) -> str:
    """The id of the PACT footprint issued for *result* when the product's last issued one is
    *previous_id*: unique to each version, deterministic.

    The product's first footprint has the result's own id (``uuid5(product | content hash)``,
    :attr:`~streams.rollup.RollupResult.result_id`); every later one
    ``uuid5(product | content hash | previous id)``, so each id is a function of the product's
    history of issued footprints. A product whose result returns to an earlier content (A, then
    B, then A again) thus issues a new id the third time, with B as its predecessor: a content
    id alone re-issued A's, which the gateway (rightly) refuses to reactivate once it was sent
    as ``Deprecated``, leaving the recipient with no ``Active`` footprint. The previous id is
    the product row's (:attr:`~streams._rollup_step.ProductRecord.issued`), stored with the
    row after the batch's records were acknowledged: a redelivered batch after a crash, or
    another worker after a rebalance, sees the same one, so it issues the same ids.
    """
    if previous_id is None:
        return result.result_id
    name = f"{result.product_id}|{result.content_hash}|{previous_id}"
    return str(uuid.uuid5(RESULT_NAMESPACE, name))


def rolled_up_record(
    result: RollupResult,
    *,
    sequence: int,
    bom: BillOfMaterials,
    previous_pf_id: str | None,
    now: datetime,
) -> RolledUpFootprint:
    """The ``pcf.products`` record for *result* (the product's *sequence*-th emission).

    *previous_pf_id* is the id of the last PACT footprint issued for the product (results that
    issued none, e.g. a transiently incomplete one, do not count): it becomes ``precedingPfIds``.
    Through the models: every rule checked, a broken one raised with its field (the publish
    step builds the same record's Avro datum with :func:`rolled_up_datum`, and comes here only
    when its rules cannot say yes).
    """
    _check_writable(result)
    headline = result.pcf if result.pcf is not None else Decimal(0)
    total_lines = len(bom.components)
    missing = _missing(result, bom)
    resolved = _resolved(result, total_lines)
    uncertainty = result.uncertainty
    dqi = _dqi(result)  # (built once: they go into the record and its PACT footprint)
    withheld = footprint_withheld(result, bom)  # (the one decision whether PACT is issued)
    share = result.primary_data_share
    share = _percent(share) if share is not None else None
    return RolledUpFootprint(
        product_id=result.product_id,
        owner=bom.owner,
        bom_revision=result.bom_revision,
        sequence=sequence,
        declared_unit=DeclaredUnit(amount=result.declared_unit_amount, unit=result.declared_unit),
        pcf_excluding_biogenic_uptake=headline,
        own_emissions=_own(result),
        inputs=_lineage(result, bom),
        completeness=Completeness(
            components_total=total_lines,
            components_resolved=resolved,
            components_on_fallback=len(result.secondary),
            coverage_percent=_coverage(resolved, total_lines),
            complete=result.is_complete,
        ),
        missing_components=missing,
        primary_data_share=share,
        dqi=dqi,
        uncertainty=(
            Uncertainty(
                relative_standard_uncertainty_percent=_relative_uncertainty(
                    uncertainty.std_dev, headline
                ),
                lower95=uncertainty.low,
                upper95=uncertainty.high,
                method=_INTERVAL_METHOD,
            )
            # an interval only when some input assessed its uncertainty: a zero-width
            # interval from unassessed inputs would claim a certainty nobody stated
            if uncertainty is not None and uncertainty.std_dev > 0
            else None
        ),
        footprint=(
            _issue_pact(result, bom, previous_pf_id, now, dqi, share) if withheld is None else None
        ),
        facility=bom.product_info.facility if bom.product_info else None,
        method=METHOD,
        engine_version=ENGINE_VERSION,
        computed_at=now,
        assumptions=assumptions(result),
        footprint_withheld=withheld,
    )


def _optional_text(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


@functools.lru_cache(maxsize=1024)
def _facility_datum(facility: Facility) -> dict[str, Any]:
    """A BOM's site as its Avro datum (the same record after record: made once; copied by
    the caller, since encoding changes a datum in place)."""
    return to_avro_dict(facility)


def rolled_up_datum(
    result: RollupResult,
    *,
    sequence: int,
    bom: BillOfMaterials,
    previous_pf_id: str | None,
    now: datetime,
) -> dict[str, Any] | None:
    """The Avro datum of :func:`rolled_up_record`'s record, built without the models: the
    publish step's path (``to_avro_dict(rolled_up_record(...))``, the same bytes once encoded;
    ``tests/streams/test_publish_datum.py`` compares them on varied results).

    ``None`` when the compiled rules cannot say the models certainly accept it
    (:func:`contracts._fast.rolled_up_ok` for the record, :func:`contracts._fast.footprint_ok`
    for its PACT footprint, a figure too large to write): then build it with
    :func:`rolled_up_record`, which raises the rule's error naming the field, so a bad result
    reaches the DLQ with the reason it always had.
    """
    try:
        datum = _datum(result, sequence, bom, previous_pf_id, now)
    except (ValueError, TypeError, KeyError, InvalidOperation):  # (e.g. a figure too large)
        return None
    return datum if datum is not None and rolled_up_ok(datum) else None


def _datum(
    result: RollupResult,
    sequence: int,
    bom: BillOfMaterials,
    previous_pf_id: str | None,
    now: datetime,
) -> dict[str, Any] | None:
    figures = result.figures
    if figures is not None and not all(decimal_fits(v) for v in figures.values()):
        return None  # (written or not, the model path refuses it: _check_writable)
    headline = result.pcf if result.pcf is not None else Decimal(0)
    total_lines = len(bom.components)
    resolved = _resolved(result, total_lines)
    dqi = _dqi_json(result)
    withheld = footprint_withheld(result, bom)
    share = result.primary_data_share
    share = _percent(share) if share is not None else None
    footprint = None
    if withheld is None:
        doc = _pact_doc(result, bom, previous_pf_id, now, dqi, share)
        if doc is not None:
            if not footprint_ok(doc):
                return None
            footprint = footprint_datum(doc)
            if footprint is None:
                return None
            footprint["created"] = now  # (the instant itself, as the model keeps it)
    inputs = _lineage_rows(result, bom)
    for row in inputs:
        if row["footprintId"] is not None:
            row["footprintId"] = canonical_uuid(row["footprintId"])
        row["quantity"] = format_decimal(row["quantity"])
        row["contributionKgCO2e"] = format_decimal(row["contributionKgCO2e"])
    for item in result.lineage:  # (own process lines: summed below, and checked like all)
        if item.contribution is not None and not decimal_fits(item.contribution):
            return None
    direct, electricity = _own_sums(result)
    uncertainty = result.uncertainty
    info = bom.product_info
    facility = info.facility if info is not None else None
    return {
        "productId": result.product_id,
        "owner": bom.owner,
        "bomRevision": result.bom_revision,
        "sequence": sequence,
        "declaredUnit": {
            "amount": format_decimal(result.declared_unit_amount),
            "unit": result.declared_unit,
        },
        "pcfExcludingBiogenicUptake": format_decimal(headline),
        "ownEmissions": {
            "directKgCO2e": format_decimal(direct),
            "electricityKgCO2e": format_decimal(electricity),
            "otherKgCO2e": "0",
        },
        "inputs": inputs,
        "completeness": {
            "componentsTotal": total_lines,
            "componentsResolved": resolved,
            "componentsOnFallback": len(result.secondary),
            "coveragePercent": format_decimal(_coverage(resolved, total_lines)),
            "complete": result.is_complete,
        },
        "missingComponents": _missing_rows(result, bom),
        "primaryDataShare": _optional_text(share),
        "dqi": dqi,
        "uncertainty": (
            {
                "relativeStandardUncertaintyPercent": _optional_text(
                    _relative_uncertainty(uncertainty.std_dev, headline)
                ),
                "lower95": format_decimal(uncertainty.low),
                "upper95": format_decimal(uncertainty.high),
                "method": _INTERVAL_METHOD,
            }
            if uncertainty is not None and uncertainty.std_dev > 0
            else None
        ),
        "footprint": footprint,
        "facility": None if facility is None else dict(_facility_datum(facility)),
        "method": METHOD,
        "engineVersion": ENGINE_VERSION,
        "computedAt": now,
        "assumptions": list(assumptions(result)),
        "footprintWithheld": withheld,
    }


def deprecated_record(record: RolledUpFootprint) -> RolledUpFootprint | None:
    """*record* again with its PACT footprint's ``status`` set to ``Deprecated`` and nothing else
    changed (PACT v3 lets a footprint change only that); ``None`` if it issued no footprint."""
    if record.footprint is None:
        return None
    footprint = record.footprint.model_copy(update={"status": "Deprecated"})
    return record.model_copy(update={"footprint": footprint})
