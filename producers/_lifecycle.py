"""The PACT v3 footprint lifecycle: a change is a new footprint; the old one is deprecated.

PACT v3 (ADR-41) makes a footprint immutable after creation; the only change allowed is
``status`` to ``Deprecated``. An update therefore publishes, for the same product key:

1. the old footprint again, unchanged but for ``status: Deprecated`` (sequence ``2c+1``);
2. the new footprint (new ``id``, later ``created``, the old id added to ``precedingPfIds``;
   sequence ``2c'`` > ``2c+1``).

Both are keyed by the product id, so they land in one partition in this order and the streams
end with the new footprint as the product's current one. Pure functions; no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pcf_exchange.contracts import ProductFootprint, Violation
from pcf_exchange.producers._fastpath import PactFootprint
from pcf_exchange.producers._input import Item

__all__ = ["deprecated", "supersede", "superseding"]


def deprecated(footprint: ProductFootprint) -> ProductFootprint:
    """*footprint* with ``status: Deprecated`` and nothing else changed."""
    return footprint.model_copy(update={"status": "Deprecated"})


def superseding(new: ProductFootprint, old: Sequence[ProductFootprint]) -> ProductFootprint:
    """*new* with the ids of *old* added to its ``precedingPfIds`` (kept in order, no repeats)."""
    preceding = list(new.preceding_pf_ids or ())
    preceding += [o.id for o in old if o.id not in preceding]
    return new.model_copy(update={"preceding_pf_ids": tuple(preceding)})


def _problems(new: ProductFootprint, old: Sequence[ProductFootprint]) -> list[Violation]:
    problems = []
    for o in old:
        if o.id == new.id:
            problems.append(
                Violation.of(
                    "id",
                    "same_id",
                    "must differ from the id of the footprint it supersedes (PACT v3: a change "
                    "is a new footprint with a new id)",
                    str(new.id),
                )
            )
        elif not new.created > o.created:
            problems.append(
                Violation.of(
                    "created",
                    "not_newer",
                    f"must be after the superseded footprint's created ({o.created.isoformat()}, "
                    f"footprint {o.id})",
                    new.created.isoformat(),
                )
            )
    return problems


def _modelled(item: Item) -> Item:
    """*item* with a fast-lane footprint (JSON as read) as its model: updates edit the model."""
    if isinstance(item.record, PactFootprint):
        return dataclasses.replace(item, record=item.record.model())
    return item


def supersede(old: Sequence[Item], new: Sequence[Item]) -> list[Item]:
    """The items that publish *new* as updates of *old*, paired by product key.

    For each valid new footprint whose first ``productIds`` URN matches old footprints: the old
    ones deprecated, then the new one with their ids in ``precedingPfIds``. New footprints with
    no old counterpart are published as they are. An old footprint that no new one supersedes
    is rejected (``not_superseded``): it was named as superseded, so publishing nothing for it
    silently would hide a pairing mistake.
    """
    old, new = [_modelled(i) for i in old], [_modelled(i) for i in new]
    by_product: dict[str, list[Item]] = {}
    out: list[Item] = []
    for item in old:
        if not isinstance(item.record, ProductFootprint):
            out.append(item)
            continue
        by_product.setdefault(item.record.product_ids[0], []).append(item)
    used: set[str] = set()
    for item in new:
        record = item.record
        if not isinstance(record, ProductFootprint):
            out.append(item)
            continue
        product = record.product_ids[0]
        olds = by_product.get(product, [])
        if not olds:
            out.append(item)
            continue
        previous = [o.record for o in olds if isinstance(o.record, ProductFootprint)]
        problems = _problems(record, previous)
        if problems:
            out.append(item.rejected(problems))
            continue
        used.add(product)
        for o, footprint in zip(olds, previous, strict=True):
            out.append(
                Item(
                    deprecated(footprint),
                    o.ref,
                    o.file,
                    o.index,
                    o.line,
                    warnings=o.warnings,
                    note=f"deprecated: superseded by {record.id}",
                )
            )
        ids = ", ".join(str(p.id) for p in previous)
        out.append(
            Item(
                superseding(record, previous),
                item.ref,
                item.file,
                item.index,
                item.line,
                warnings=item.warnings,
                note=f"supersedes {ids} (precedingPfIds)",
            )
        )
    for product, olds in by_product.items():
        if product in used:
            continue
        for o in olds:
            out.append(
                o.rejected(
                    [
                        Violation.of(
                            "productIds[0]",
                            "not_superseded",
                            "no new footprint in the files being published has this product "
                            "id, so this footprint was not deprecated",
                            product,
                        )
                    ]
                )
            )
    return out
