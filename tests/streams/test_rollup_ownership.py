"""A rolled-up product belongs to its BOM's owner: another company's declared footprint for it
never replaces its roll-up (even where namespaces overlap), and lineage names every input's
supplier."""

from __future__ import annotations

from dataclasses import replace

from pcf_exchange.streams.rollup import ComponentFootprint, RollupResult, run_batch
from tests.streams._rollup_helpers import D, bom, fp, line

CELL, PACK = "urn:x:cells.cn:cell", "urn:x:packs.cn:pack"
CELLS, PACKS, EVIL = "cells-co", "packs-co", "evil-co"


def pack_with(*footprints: ComponentFootprint) -> dict[str, RollupResult]:
    boms = [
        replace(bom(CELL, line("urn:x:mat.cn:m", "2")), owner=CELLS),
        replace(bom(PACK, line(CELL, "10")), owner=PACKS),
    ]
    material = replace(fp("urn:x:mat.cn:m", "3"), supplier="mat-co")
    return run_batch([material, *footprints], boms, [])


def test_another_companys_footprint_does_not_override_a_rolled_up_product() -> None:
    honest = pack_with()
    hijacked = pack_with(replace(fp(CELL, "0.01", seq=9), supplier=EVIL))
    assert honest[PACK].pcf == D(60)
    assert hijacked[PACK].pcf == D(60)
    (cell_input,) = hijacked[PACK].lineage
    assert cell_input.supplier == CELLS and hijacked[CELL].owner == CELLS


def test_the_owners_own_declared_footprint_still_takes_precedence() -> None:
    declared = pack_with(replace(fp(CELL, "5", seq=9), supplier=CELLS))
    assert declared[PACK].pcf == D(50)
    (cell_input,) = declared[PACK].lineage
    assert cell_input.supplier == CELLS
    (material,) = declared[CELL].lineage
    assert material.supplier == "mat-co"
