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

Two ways in, one result. :func:`gateway_record` takes the validated model (the edges: files,
CLI, API, an approval's re-read). :func:`record_from_datum` takes the Avro datum as fastavro
decoded it from ``pcf.products`` (the runner's hot path) and builds the same record without a
pydantic model: the footprint's Avro fields already carry the PACT names, decimals travel as the
PACT decimal text the streams' model wrote (so they are copied, not re-parsed), instants become
``...Z`` text with ``contracts._types.format_datetime``, UUIDs their text, ``null`` is left out and
our ``pcfx`` extension is appended as ``to_pact_json`` appends it. Foreign extensions' ``data``
is parsed from its JSON text with exact decimals, as the model does. The one part whose JSON
form the model reshapes (``pcfx.fieldLabels``: defaults left out) takes the model's way.
``tests/gateway/test_adapter_datum.py`` pins that both ways give the same record, key order
included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from pcf_exchange.contracts import PCFX_EXTENSION_SCHEMA, RolledUpFootprint, to_pact_json
from pcf_exchange.contracts._jsonio import loads as json_loads
from pcf_exchange.contracts._pact import PCFX_EXTENSION_SPEC_VERSION
from pcf_exchange.contracts._serde import from_avro_dict
from pcf_exchange.contracts._types import format_datetime
from pcf_exchange.contracts.errors import ValidationFailed, Violation

__all__ = [
    "LINEAGE_SCHEMA",
    "LINEAGE_SPEC_VERSION",
    "NoFootprint",
    "gateway_record",
    "lineage_of",
    "pilot_category_of",
    "record_from_datum",
    "record_from_read",
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


# ----------------------------------------------------------------------------------------------
# the hot path: from the Avro datum, no model


def _plain(node: Any) -> Any:
    """An Avro value as PACT JSON: ``None`` left out of records, instants and UUIDs as text."""
    kind = type(node)
    if kind is dict:
        return {k: _plain(v) for k, v in node.items() if v is not None}
    if kind is list or kind is tuple:
        return [_plain(v) for v in node]
    if kind is datetime:
        return format_datetime(node)
    if kind is UUID:
        return str(node)
    return node


def _footprint_json(footprint: Mapping[str, Any]) -> dict[str, Any]:
    """``to_pact_json`` of the footprint, from its Avro datum."""
    out: dict[str, Any] = {}
    for name, value in footprint.items():
        if value is None or name == "pcfx":
            continue
        if name == "extensions":
            out[name] = [
                {
                    **{k: v for k, v in ext.items() if v is not None and k != "data"},
                    "data": json_loads(ext["data"], subject="extension data"),
                }
                for ext in value
            ]
            continue
        out[name] = _plain(value)
    pcfx = footprint.get("pcfx")
    if pcfx is not None:
        out.setdefault("extensions", []).append(
            {
                "specVersion": PCFX_EXTENSION_SPEC_VERSION,
                "dataSchema": PCFX_EXTENSION_SCHEMA,
                "data": _plain(pcfx),
            }
        )
    return out


def _lineage_from_datum(datum: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`lineage_of`, from the Avro datum (decimals are already PACT decimal text)."""
    unit = datum["declaredUnit"]["unit"]
    lineage: dict[str, Any] = {"productId": datum["productId"]}
    if datum["owner"] is not None:
        lineage["owner"] = datum["owner"]
    lineage["bomRevision"] = datum["bomRevision"]
    lineage["sequence"] = datum["sequence"]
    lineage["method"] = datum["method"]
    lineage["calcEngineVersion"] = datum["engineVersion"]
    lineage["computedAt"] = format_datetime(datum["computedAt"])
    lineage["completeness"] = dict(datum["completeness"])
    own = datum["ownEmissions"]
    lineage["ownEmissions"] = {
        "directKgCO2e": own["directKgCO2e"],
        "electricityKgCO2e": own["electricityKgCO2e"],
        "otherKgCO2e": own["otherKgCO2e"],
    }
    f = datum["facility"]
    if f is not None:
        sub = f["countrySubdivision"]
        facility = _clean(
            {
                "name": f["name"],
                "address": f["address"],
                "city": f["city"],
                "subdivision": sub,
                "country": sub[:2] if sub else None,
            }
        )
        if f["annualProductionVolume"] is not None:
            facility["productionVolume"] = {"quantity": f["annualProductionVolume"], "unit": unit}
        if f["annualEnergyUseKWh"] is not None:
            facility["energy"] = [
                {"carrier": "total", "quantity": f["annualEnergyUseKWh"], "unit": "kilowatt hour"}
            ]
        if facility:
            lineage["facility"] = facility
    inputs = [
        _clean(
            {
                "componentIndex": i["componentIndex"],
                "kind": i["kind"],
                "tier": 1,
                "productId": i["productId"],
                "pfId": None if i["footprintId"] is None else str(i["footprintId"]),
                "factorId": i["factorId"],
                "factorVersion": i["factorVersion"],
                "supplierId": i["supplierId"],
                "sequence": i["sequence"],
                "sha256": i["contentHash"],
                "quantity": i["quantity"],
                "unit": i["unit"],
                "contribution": i["contributionKgCO2e"],
            }
        )
        for i in datum["inputs"]
    ]
    if inputs:
        lineage["inputs"] = inputs
    if datum["missingComponents"]:
        lineage["missingComponents"] = [
            _clean(
                {
                    "componentIndex": m["componentIndex"],
                    "productId": m["productId"],
                    "factorId": m["factorId"],
                    "reason": m["reason"],
                    "detail": m["detail"],
                }
            )
            for m in datum["missingComponents"]
        ]
    return lineage


def record_from_datum(datum: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """``(gateway_record, pilot category)`` of a ``RolledUpFootprint`` Avro datum, no model.

    The record is ``None`` when the roll-up issued no PACT footprint. Equal to
    ``gateway_record(from_avro_dict(RolledUpFootprint, datum).value)`` (see the module
    docstring); a datum whose ``pcfx.fieldLabels`` is set takes that way itself.
    """
    footprint = datum["footprint"]
    if footprint is None:
        return None, None
    pcfx = footprint["pcfx"]
    category = None if pcfx is None else pcfx["pilotCategory"]
    if pcfx is not None and pcfx.get("fieldLabels") is not None:
        rolled = from_avro_dict(RolledUpFootprint, datum).value
        if rolled is None:  # (the streams validated it before signing it: never on the hot path)
            raise ValidationFailed(
                [Violation("footprint.pcfx.fieldLabels", "invalid", "does not validate")],
                subject=f"roll-up of {datum['productId']}",
            )
        return gateway_record(rolled), pilot_category_of(rolled)
    record = _footprint_json(footprint)
    extensions = record.setdefault("extensions", [])
    extensions.append(
        {
            "specVersion": LINEAGE_SPEC_VERSION,
            "dataSchema": LINEAGE_SCHEMA,
            "data": {"lineage": _lineage_from_datum(datum)},
        }
    )
    return record, None if category is None else str(category)


def record_from_read(read: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None] | None:
    """:func:`record_from_datum` of what the generated reader gives
    (``gateway.runtime._rollup_reader``): the roll-up's datum whose ``footprint`` is already
    read in its PACT JSON form (``None`` left out, instants and UUIDs as text), which it takes
    over (the record is built in it). ``None`` when ``pcfx.fieldLabels`` is set: that roll-up
    takes the model's way (through fastavro's datum)."""
    footprint = read["footprint"]
    if footprint is None:
        return None, None
    # the footprint's dict is the record already (fresh from the reader: ours to change); the
    # extensions keep their place, ``pcfx`` moves to the end as one of them
    record: dict[str, Any] = footprint
    pcfx = record.pop("pcfx", None)
    extensions = record.get("extensions")
    if extensions is not None:
        record["extensions"] = [
            {
                **{k: v for k, v in ext.items() if k != "data"},
                "data": json_loads(ext["data"], subject="extension data"),
            }
            for ext in extensions
        ]
    category = None
    if pcfx is not None:
        if "fieldLabels" in pcfx:
            return None
        category = pcfx.get("pilotCategory")
        record.setdefault("extensions", []).append(
            {
                "specVersion": PCFX_EXTENSION_SPEC_VERSION,
                "dataSchema": PCFX_EXTENSION_SCHEMA,
                "data": pcfx,
            }
        )
    record.setdefault("extensions", []).append(
        {
            "specVersion": LINEAGE_SPEC_VERSION,
            "dataSchema": LINEAGE_SCHEMA,
            "data": {"lineage": _lineage_from_datum(read)},
        }
    )
    return record, None if category is None else str(category)
