"""The batch roll-up: files in, the records the exchange would publish out, no Kafka.

``pcfx rollup`` (a dry run or what-if), the demo, the README walkthrough's checks and the
reliability harness all need the same thing: read supplier footprints, BOMs and background
factors from files, roll everything up, and build the ``pcf.products`` record for each product's
latest BOM revision. :func:`run_rollup` does exactly that with the very transitions the
streaming workers run (:func:`streams.rollup.run_batch` over the adapters of
:mod:`streams.adapt`), so a batch run gives what the exchange would converge to.

It is pure apart from reading the files it is given: a bad record is not an exception but a line
in :attr:`BatchOutcome.problems` (file, record number, error), and the good ones are still
rolled up. Long work reports its stages through a *stage* callable (``stage(label, total)``
returns the callable that advances that stage), which the command line turns into a progress
bar; the default reports nothing. This module knows no command line: ``pcfx/commands/streams.py``
is the thin shell around it (progress bar, table, ``--json``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pcf_exchange.contracts import (
    BillOfMaterials,
    LoadedRecord,
    RolledUpFootprint,
    load_boms,
    load_factors,
    load_footprints,
)
from pcf_exchange.streams.adapt import (
    core_bom,
    core_factor,
    core_footprint,
    payload_hash,
    rolled_up_record,
)
from pcf_exchange.streams.rollup import RollupResult, run_batch

__all__ = ["BatchOutcome", "Stage", "run_rollup", "why_no_footprint"]

Tick = Callable[[int], None]
Stage = Callable[[str, int | None], Tick]
"""``stage(label, total)`` starts a stage of long work (``None``: no known total) and returns
the callable that advances it by a count."""


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch roll-up produced, for display and checks."""

    records: list[RolledUpFootprint]
    """One record per product with a BOM that rolled up, as the streams would publish it."""
    results: Mapping[str, RollupResult]
    """product id -> the core's result (lineage, status), for trees and hotspots."""
    problems: list[str]
    """``file#index: error`` per record that could not be read; those were left out."""
    names: Mapping[str, str]
    """product id -> the BOM's product name, for display."""


def _good(loaded: Sequence[LoadedRecord[Any]], problems: list[str]) -> list[Any]:
    good = []
    for item in loaded:
        if item.error is not None:
            problems.append(f"{item.file}#{item.index}: {item.error}")
        else:
            good.append(item.value)
    return good


def _no_tick(_: int) -> None:
    return None


def _no_stage(label: str, total: int | None) -> Tick:
    return _no_tick


def run_rollup(
    footprint_files: Sequence[Path],
    bom_files: Sequence[Path],
    factor_files: Sequence[Path],
    *,
    stage: Stage = _no_stage,
) -> BatchOutcome:
    """Load the files (reporting every bad record), roll everything up, build the records;
    *stage* is told of each stage and advanced per file and per product."""
    problems: list[str] = []
    tick = stage("reading files", len(footprint_files) + len(bom_files) + len(factor_files))
    footprints = []
    for f in footprint_files:
        footprints += [r for r in _good(load_footprints(f), problems) if r is not None]
        tick(1)
    boms: list[BillOfMaterials] = []
    for f in bom_files:
        boms += _good(load_boms(f), problems)
        tick(1)
    factors = []
    for f in factor_files:
        factors += _good(load_factors(f), problems)
        tick(1)
    stage(f"rolling up {len(boms)} BOMs", None)
    results = run_batch(
        [core_footprint(fp, sequence=1, content_hash=payload_hash(fp)) for fp in footprints],
        [core_bom(b) for b in boms],
        [core_factor(f, sequence=1, content_hash=payload_hash(f)) for f in factors],
    )
    now = datetime.now(UTC)
    latest: dict[str, BillOfMaterials] = {}
    for bom in boms:
        if bom.product_id not in latest or bom.revision > latest[bom.product_id].revision:
            latest[bom.product_id] = bom
    tick = stage("building records", len(latest))
    records = []
    for pid, bom in latest.items():
        if pid in results:
            records.append(
                rolled_up_record(results[pid], sequence=1, bom=bom, previous_pf_id=None, now=now)
            )
        tick(1)
    names = {pid: bom.product_name or pid for pid, bom in latest.items()}
    return BatchOutcome(records, results, problems, names)


def why_no_footprint(record: RolledUpFootprint) -> str | None:
    """Why *record* has no PACT footprint, in one line (``None`` when it has one): the roll-up's
    own ``footprintWithheld``, else the inputs that are missing."""
    if record.footprint is not None:
        return None
    if record.footprint_withheld:
        return record.footprint_withheld
    if not record.completeness.complete:
        return f"incomplete: {_missing(record)}"
    return "no footprint was issued and the roll-up gives no reason"


def _missing(record: RolledUpFootprint) -> str:
    """What is missing from an incomplete roll-up, briefly: the count of inputs and reasons."""
    c = record.completeness
    reasons = sorted({m.reason.replace("_", " ") for m in record.missing_components})
    if not reasons:
        return "an input further up the supply chain is missing"
    return (
        f"{c.components_total - c.components_resolved} of {c.components_total} inputs"
        f" unresolved ({', '.join(reasons)})"
    )
