"""The product-category-rule gate of publishing (:mod:`contracts.pcr`), one call per record.

A footprint or BOM that names a category is checked against its rule pack after it is parsed
and before it is signed, so that ``pcfx publish`` (``--dry-run`` too) refuses what the streams
would send to the DLQ: a broken rule is a rejection naming the rule, the field and the pack.
A figure far outside the category's plausible range is what the streams would hold for review:
here it is a warning, and a rejection with ``--strict``.
"""

from __future__ import annotations

from dataclasses import replace

from pcf_exchange.contracts import BillOfMaterials, ProductFootprint
from pcf_exchange.contracts.errors import Violation
from pcf_exchange.contracts.pcr import (
    PcrCheck,
    PcrOutcome,
    check_bom,
    check_footprint,
    check_footprint_model,
)
from pcf_exchange.producers._fastpath import PactFootprint
from pcf_exchange.producers._input import Item

__all__ = ["pcr_gate", "pcr_of"]


def pcr_of(record: object) -> PcrCheck | None:
    """The PCR check of a footprint or BOM (``None`` for other records).

    A footprint the fast lane read (:class:`~producers._fastpath.PactFootprint`) is checked on
    its PACT JSON, the same check the streams make at ingestion."""
    if isinstance(record, PactFootprint):
        return check_footprint(record.payload)
    if isinstance(record, ProductFootprint):
        return check_footprint_model(record)
    if isinstance(record, BillOfMaterials):
        return check_bom(record.model_dump(by_alias=True, mode="json", exclude_none=True))
    return None


def pcr_gate(item: Item, *, strict: bool) -> Item | list[Violation]:
    """*item* (with a range warning added), or the violations that refuse it."""
    result = pcr_of(item.record)
    if result is None or result.outcome in (PcrOutcome.PASSED, PcrOutcome.NOT_APPLICABLE):
        return item
    found = [f.violation() for f in result.findings]
    if result.outcome is PcrOutcome.VIOLATED or strict:
        return found
    held = [
        replace(
            v,
            message=f"{v.message}; the streams will hold it for a compliance officer's review"
            " (--strict refuses it here)",
        )
        for v in found
    ]
    return replace(item, warnings=(*item.warnings, *held))
