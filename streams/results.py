"""What a manufacturer sees of its live results (``pcfx results``): pure functions over roll-ups.

``pcf.products`` holds, per product, the roll-ups the streams published (compacted: after
compaction only the latest per product key is left, before it every version). This module folds
those records and answers the three questions of issue #20 item 4, without I/O:

- **the latest result per product** (:class:`ProductResults`, :func:`fold`): the record with the
  highest ``sequence`` (the streams' per-product counter, monotonic), plus the version before it
  when the topic still holds one (a compacted topic may not: then there is no diff to show, and
  the result says so rather than inventing one);
- **hotspots** (:func:`hotspots`): the inputs with the largest contributions (kg CO2e per
  declared unit, from the roll-up's own lineage), largest first, each with its share of the
  figure; own process emissions count as one more line (``own process``), so a product whose
  hotspot is its own electricity shows it;
- **what changed since the previous version** (:func:`diff`): the figure's delta, and which
  inputs changed — a supplier footprint replaced (another footprint id or content hash), a
  factor moved to another version, a quantity changed, an input added or removed — each with
  its contribution before and after.

**A figure that is not complete** (a BOM line unresolved: ``completeness.complete`` false) or a
roll-up without a PACT footprint is never shown as a number without its reason:
:func:`figure_state` gives the text to show instead (``—``) and the reason (the missing lines,
or ``footprintWithheld``). Figures stay :class:`~decimal.Decimal`; shares are the only derived
numbers, rounded to 0.1 % for display.

**Ids.** :func:`resolve` accepts a product id, a unique prefix of it, or a unique prefix of its
last segment (``PACK`` for ``urn:pact:cz-packs.cn:product-id:PACK-282``), and refuses an
ambiguous or unknown one naming the candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Final

from pcf_exchange.contracts import RolledUpFootprint
from pcf_exchange.contracts.errors import ContractError

__all__ = [
    "OWN_PROCESS",
    "FigureState",
    "Hotspot",
    "InputChange",
    "ProductResults",
    "VersionDiff",
    "diff",
    "figure_state",
    "fold",
    "hotspots",
    "input_key",
    "resolve",
]

OWN_PROCESS: Final = "own process"
"""The hotspot line of a product's own process emissions (direct, electricity, other)."""
_SHARE: Final = Context(prec=34, rounding=ROUND_HALF_EVEN)
_TENTH: Final = Decimal("0.1")


def input_key(line: Any) -> str:
    """What identifies a lineage input across versions: the supplier product, or the factor
    (its version is what may change)."""
    if line.kind == "footprint":
        return str(line.product_id)
    return f"factor:{line.factor_id}"


def _label(line: Any) -> str:
    if line.kind == "footprint":
        return str(line.product_id)
    return f"{line.factor_id}@{line.factor_version}" if line.factor_version else str(line.factor_id)


def _own(record: RolledUpFootprint) -> Decimal:
    own = record.own_emissions
    return own.direct_kg_co2e + own.electricity_kg_co2e + own.other_kg_co2e


def _share(part: Decimal, whole: Decimal) -> Decimal | None:
    if whole == 0:
        return None
    return _SHARE.divide(part * 100, whole).quantize(_TENTH, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class FigureState:
    """How to show a roll-up's figure: the number, or ``—`` and why not."""

    complete: bool
    figure: Decimal | None
    """The figure, when it is complete; ``None`` otherwise (never a partial sum shown as one)."""
    partial: Decimal
    """The sum of what did resolve (shown only beside its reason)."""
    reason: str | None
    """Why there is no complete figure (the unresolved lines), else ``None``."""
    footprint_withheld: str | None
    """Why no PACT footprint was issued for it (``None`` when one was)."""

    @property
    def shown(self) -> str:
        return "—" if self.figure is None else format(self.figure, "f")


def figure_state(record: RolledUpFootprint) -> FigureState:
    """The figure to show for *record*, or ``—`` with the reason (module docstring)."""
    withheld = record.footprint_withheld if record.footprint is None else None
    if withheld is None and record.footprint is None:
        withheld = "no PACT footprint was issued for this roll-up (no reason recorded)"
    if record.completeness.complete:
        return FigureState(True, record.pcf_excluding_biogenic_uptake,
                           record.pcf_excluding_biogenic_uptake, None, withheld)  # fmt: skip
    missing = [
        f"line {m.component_index} ({m.product_id or m.factor_id or '?'}): {m.reason}"
        + (f" — {m.detail}" if m.detail else "")
        for m in record.missing_components
    ]
    c = record.completeness
    reason = f"incomplete: {c.components_resolved} of {c.components_total} BOM lines resolved" + (
        f"; {'; '.join(missing)}" if missing else ""
    )
    return FigureState(False, None, record.pcf_excluding_biogenic_uptake, reason, withheld)


@dataclass(frozen=True, slots=True)
class Hotspot:
    """One contribution to a product's figure."""

    key: str
    """The input (supplier product id, ``factor@version``) or :data:`OWN_PROCESS`."""
    kind: str
    """``footprint``, ``factor`` or ``own``."""
    contribution: Decimal
    """kg CO2e per declared unit of the product."""
    share_percent: Decimal | None
    """Of the product's figure, rounded to 0.1 (``None`` for a zero figure)."""
    quantity: Decimal | None = None
    unit: str | None = None


def hotspots(record: RolledUpFootprint, *, top: int = 5) -> tuple[Hotspot, ...]:
    """The *top* largest contributions to *record*'s figure, largest first (ties: by key)."""
    if top < 1:
        raise ValueError(f"top must be at least 1 (got {top})")
    total = record.pcf_excluding_biogenic_uptake
    lines = [
        Hotspot(
            _label(line),
            line.kind,
            line.contribution_kg_co2e,
            _share(line.contribution_kg_co2e, total),
            line.quantity,
            line.unit,
        )
        for line in record.inputs
    ]
    own = _own(record)
    if own != 0:
        lines.append(Hotspot(OWN_PROCESS, "own", own, _share(own, total)))
    lines.sort(key=lambda h: (-h.contribution, h.key))
    return tuple(lines[:top])


@dataclass(frozen=True, slots=True)
class InputChange:
    """How one input differs between two versions of a product's roll-up."""

    key: str
    change: str
    """``added``, ``removed``, ``replaced`` (another footprint or factor version: the supplier
    or the operator published a new one), ``quantity`` (the BOM changed the amount) or
    ``recomputed`` (same record, another contribution: its own inputs moved upstream)."""
    before: Decimal | None
    after: Decimal | None
    detail: str

    @property
    def delta(self) -> Decimal:
        return (self.after or Decimal(0)) - (self.before or Decimal(0))


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """What changed from one version of a product's roll-up to the next."""

    previous_sequence: int
    current_sequence: int
    figure_before: Decimal
    figure_after: Decimal
    own_before: Decimal
    own_after: Decimal
    inputs: tuple[InputChange, ...]
    bom_revision_before: int
    bom_revision_after: int

    @property
    def delta(self) -> Decimal:
        return self.figure_after - self.figure_before

    @property
    def delta_percent(self) -> Decimal | None:
        return _share(self.delta, self.figure_before)


def _ident(line: Any) -> str:
    if line.kind == "footprint":
        return f"footprint {str(line.footprint_id)[:8]}… ({line.content_hash[:12]}…)"
    return f"version {line.factor_version or '?'}"


def diff(previous: RolledUpFootprint, current: RolledUpFootprint) -> VersionDiff:
    """*current* against *previous* (two versions of one product), inputs by :func:`input_key`;
    unchanged inputs are left out."""
    if previous.product_id != current.product_id:
        raise ValueError(
            f"a diff is between versions of one product (got {previous.product_id!r} and"
            f" {current.product_id!r})"
        )
    before: dict[str, Any] = {input_key(i): i for i in previous.inputs}
    after: dict[str, Any] = {input_key(i): i for i in current.inputs}
    changes: list[InputChange] = []
    for key in sorted(before.keys() | after.keys()):
        if key not in before:
            new = after[key]
            changes.append(InputChange(key, "added", None, new.contribution_kg_co2e, _ident(new)))
            continue
        old = before[key]
        if key not in after:
            changes.append(InputChange(key, "removed", old.contribution_kg_co2e, None, _ident(old)))
            continue
        new = after[key]
        if old.content_hash != new.content_hash or old.factor_version != new.factor_version:
            changes.append(
                InputChange(
                    key,
                    "replaced",
                    old.contribution_kg_co2e,
                    new.contribution_kg_co2e,
                    f"{_ident(old)} → {_ident(new)}",
                )
            )
        elif old.quantity != new.quantity or old.unit != new.unit:
            changes.append(
                InputChange(
                    key,
                    "quantity",
                    old.contribution_kg_co2e,
                    new.contribution_kg_co2e,
                    f"{old.quantity} {old.unit} → {new.quantity} {new.unit}",
                )
            )
        elif old.contribution_kg_co2e != new.contribution_kg_co2e:
            changes.append(
                InputChange(
                    key,
                    "recomputed",
                    old.contribution_kg_co2e,
                    new.contribution_kg_co2e,
                    "same record, new contribution",
                )
            )
    return VersionDiff(
        previous.sequence,
        current.sequence,
        previous.pcf_excluding_biogenic_uptake,
        current.pcf_excluding_biogenic_uptake,
        _own(previous),
        _own(current),
        tuple(changes),
        previous.bom_revision,
        current.bom_revision,
    )


@dataclass(frozen=True, slots=True)
class ProductResults:
    """A product's latest roll-up, and the one before it if the topic still holds it."""

    current: RolledUpFootprint
    previous: RolledUpFootprint | None = None

    @property
    def product_id(self) -> str:
        return str(self.current.product_id)

    def changes(self) -> VersionDiff | None:
        return None if self.previous is None else diff(self.previous, self.current)


def fold(records: Iterable[RolledUpFootprint]) -> dict[str, ProductResults]:
    """Per product, the record with the highest ``sequence`` and the highest one below it (in
    any order; a redelivered record of the same sequence changes nothing)."""
    out: dict[str, ProductResults] = {}
    for record in records:
        pid = str(record.product_id)
        got = out.get(pid)
        if got is None:
            out[pid] = ProductResults(record)
        elif record.sequence > got.current.sequence:
            out[pid] = ProductResults(record, got.current)
        elif record.sequence < got.current.sequence and (
            got.previous is None or record.sequence > got.previous.sequence
        ):
            out[pid] = ProductResults(got.current, record)
    return out


def resolve(query: str, products: Mapping[str, Any] | Iterable[str]) -> str:
    """The product id *query* names: itself, a unique prefix of an id, or a unique prefix of an
    id's last ``:`` segment. :class:`ContractError` (``unknown_product``) names what matched."""
    ids = sorted(products)
    if query in ids:
        return query
    found = [p for p in ids if query and p.startswith(query)]
    if not found:
        found = [p for p in ids if query and p.rsplit(":", 1)[-1].startswith(query)]
    if len(found) == 1:
        return found[0]
    if found:
        shown = ", ".join(found[:5]) + (" …" if len(found) > 5 else "")
        message = f"product {query!r} is ambiguous: {len(found)} products match ({shown})"
    else:
        message = f"no product on the topic matches {query!r} ({len(ids)} products there)"
    error = ContractError(message)
    error.code = "unknown_product"
    error.hint = "Give more of the id; 'pcfx results' lists every product."
    raise error
