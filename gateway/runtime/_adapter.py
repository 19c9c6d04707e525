"""From a roll-up (topic ``pcf.products``) to the record the gateway's policy decides on.

The input record is the PACT v3 JSON of ``rolled.footprint`` (``contracts.to_pact_json``, our
``pcfx`` extension included) plus one more Data Model Extension, the *lineage*, whose layout the
shipped policy classifies field by field (``gateway/policies/default.yaml``)::

    extensions[i] = {specVersion, dataSchema: LINEAGE_SCHEMA, data: {lineage: {
        productId, owner, bomRevision, sequence, method, calcEngineVersion, computedAt,
        completeness: {componentsTotal, componentsResolved, componentsOnFallback,
                       coveragePercent, complete},
        ownEmissions: {directKgCO2e, electricityKgCO2e, otherKgCO2e},
        facility: {name, address, city, subdivision, country,
                   productionVolume: {quantity, unit}, energy[*]: {carrier, quantity, unit}},
        inputs[*]: {componentIndex, kind, tier, productId, pfId, factorId, factorVersion,
                    supplierId, sequence, sha256, quantity, unit, contribution},
        missingComponents[*]: {componentIndex, productId, factorId, reason, detail}}}}

Pure: no Kafka. Decimals become PACT decimal strings, instants UTC ``...Z``; ``None`` is left
out. Nothing is copied that the policy does not name: an unnamed field blocks the record.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from contracts import RolledUpFootprint, to_pact_json
from contracts.errors import ValidationFailed, Violation

__all__ = [
    "LINEAGE_SCHEMA",
    "LINEAGE_SPEC_VERSION",
    "NoFootprint",
    "gateway_record",
    "lineage_of",
    "pilot_category_of",
]

LINEAGE_SCHEMA: Final = "https://pcf-exchange.example/schemas/lineage/v1.json"
"""``dataSchema`` of the lineage extension the gateway adds (policy paths under ``lineage``)."""
LINEAGE_SPEC_VERSION: Final = "2.0.0"


class NoFootprint(ValidationFailed):
    """The roll-up carries no PACT footprint (``footprint`` is null): nothing can be sent."""

    code = "no_footprint"


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def lineage_of(rolled: RolledUpFootprint) -> dict[str, Any]:
    """The ``lineage`` object of *rolled* (see the module docstring for its layout)."""
    unit = rolled.declared_unit.unit
    lineage: dict[str, Any] = _clean(
        {
            "productId": rolled.product_id,
            "owner": rolled.owner,
            "bomRevision": rolled.bom_revision,
            "sequence": rolled.sequence,
            "method": rolled.method,
            "calcEngineVersion": rolled.engine_version,
            "computedAt": _time(rolled.computed_at),
        }
    )
    c = rolled.completeness
    lineage["completeness"] = {
        "componentsTotal": c.components_total,
        "componentsResolved": c.components_resolved,
        "componentsOnFallback": c.components_on_fallback,
        "coveragePercent": format(c.coverage_percent, "f"),
        "complete": c.complete,
    }
    own = rolled.own_emissions
    lineage["ownEmissions"] = {
        "directKgCO2e": format(own.direct_kg_co2e, "f"),
        "electricityKgCO2e": format(own.electricity_kg_co2e, "f"),
        "otherKgCO2e": format(own.other_kg_co2e, "f"),
    }
    if rolled.facility is not None:
        f = rolled.facility
        sub = f.country_subdivision
        facility = _clean(
            {
                "name": f.name,
                "address": f.address,
                "city": f.city,
                "subdivision": sub,
                "country": sub[:2] if sub else None,
            }
        )
        if f.annual_production_volume is not None:
            facility["productionVolume"] = {
                "quantity": format(f.annual_production_volume, "f"),
                "unit": unit,
            }
        if f.annual_energy_use_kwh is not None:
            facility["energy"] = [
                {
                    "carrier": "total",
                    "quantity": format(f.annual_energy_use_kwh, "f"),
                    "unit": "kilowatt hour",
                }
            ]
        if facility:
            lineage["facility"] = facility
    lineage["inputs"] = [
        _clean(
            {
                "componentIndex": i.component_index,
                "kind": i.kind,
                "tier": 1,
                "productId": i.product_id,
                "pfId": None if i.footprint_id is None else str(i.footprint_id),
                "factorId": i.factor_id,
                "factorVersion": i.factor_version,
                "supplierId": i.supplier_id,
                "sequence": i.sequence,
                "sha256": i.content_hash,
                "quantity": format(i.quantity, "f"),
                "unit": i.unit,
                "contribution": format(i.contribution_kg_co2e, "f"),
            }
        )
        for i in rolled.inputs
    ]
    if rolled.missing_components:
        lineage["missingComponents"] = [
            _clean(
                {
                    "componentIndex": m.component_index,
                    "productId": m.product_id,
                    "factorId": m.factor_id,
                    "reason": m.reason,
                    "detail": m.detail,
                }
            )
            for m in rolled.missing_components
        ]
    if not lineage["inputs"]:
        del lineage["inputs"]
    return lineage


def gateway_record(rolled: RolledUpFootprint) -> dict[str, Any]:
    """The record the policy decides on: PACT v3 JSON + the lineage extension.

    Raises :class:`NoFootprint` when the roll-up issued no PACT footprint.
    """
    if rolled.footprint is None:
        raise NoFootprint(
            [
                Violation(
                    "footprint",
                    "required",
                    "is null: the roll-up issued no PACT footprint (no productInfo on the BOM?)",
                )
            ],
            subject=f"roll-up of {rolled.product_id}",
        )
    record = to_pact_json(rolled.footprint)
    extensions = list(record.get("extensions", ()))
    extensions.append(
        {
            "specVersion": LINEAGE_SPEC_VERSION,
            "dataSchema": LINEAGE_SCHEMA,
            "data": {"lineage": lineage_of(rolled)},
        }
    )
    record["extensions"] = extensions
    return record


def pilot_category_of(rolled: RolledUpFootprint) -> str | None:
    """The pilot category (``LITHIUM_BATTERY``, ...) subscriptions may route on."""
    fp = rolled.footprint
    if fp is None or fp.pcfx is None or fp.pcfx.pilot_category is None:
        return None
    value: Any = fp.pcfx.pilot_category
    return str(value.value if hasattr(value, "value") else value)
