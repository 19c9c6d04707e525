"""``pcfx results [PRODUCT]``: a manufacturer's live results, read from ``pcf.products``.

The command reads ``pcf.products`` to its current end (:func:`contracts.kafka_client.
read_to_end`; the topic is compacted, so a long-lived one holds about one roll-up per product,
a young one every version), decodes each roll-up and folds them with the pure functions of
:mod:`streams.results`: the latest version per product and the one before it.

- Without PRODUCT: a table of every product (its figure per declared unit, or ``—`` and the
  reason when the figure is incomplete, why it has no PACT footprint, and the change since the
  previous version when the topic still holds it).
- With PRODUCT (an id, a unique prefix, or a unique prefix of its last segment): the product's
  tree (its inputs, and theirs when they are products on the topic), its hotspots (the largest
  contributions) and what changed since the previous version (the figure's delta, and which
  inputs changed and how).

``--json`` prints the same as one document with camelCase keys (decimals as strings). Exit 0;
4 for an unknown or ambiguous PRODUCT (the candidates are named); 3 when the broker cannot be
read. Nothing here computes a figure: every number is the streams' (signed) roll-up.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from pcf_exchange.contracts import RolledUpFootprint
from pcf_exchange.contracts.errors import PcfError
from pcf_exchange.pcfx.console import console, handle_errors, print_json
from pcf_exchange.pcfx.options import Bootstrap, JsonOut, RegistryUrl, TopicPrefix
from pcf_exchange.pcfx.tables import resolve_id
from pcf_exchange.streams.results import (
    FigureState,
    Hotspot,
    ProductResults,
    VersionDiff,
    figure_state,
    fold,
    hotspots,
    resolve,
)

__all__ = ["read_results", "results"]

MAX_DEPTH = 12
"""How many tiers the tree shows below the product (a supply chain is a DAG: no cycles)."""


def read_results(
    bootstrap: str,
    topic: str,
    *,
    registry_url: str | None = None,
    prefix: str = "",
    timeout_s: float = 60.0,
) -> tuple[dict[str, ProductResults], int]:
    """Every product's latest roll-up (and the one before) on *topic*, and how many records did
    not decode (counted, never silently dropped); the schemas come from *registry_url*, else
    the registry topic of the deployment *prefix*."""
    from pcf_exchange.contracts import AvroSerde, HttpSchemaRegistry, KafkaSchemaRegistry
    from pcf_exchange.contracts.kafka_client import read_to_end

    registry: Any = (
        HttpSchemaRegistry(registry_url)
        if registry_url
        else KafkaSchemaRegistry(bootstrap, prefix=prefix)
    )
    serde = AvroSerde(registry)
    records: list[RolledUpFootprint] = []
    skipped = 0
    try:
        for message in read_to_end(bootstrap, topic, timeout_s=timeout_s):
            value = message.value()
            if value is None:
                continue
            try:
                records.append(serde.decode(value, RolledUpFootprint))
            except PcfError:
                skipped += 1
    finally:
        close = getattr(registry, "close", None)
        if close is not None:
            close()
    return fold(records), skipped


def _d(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _figure_json(state: FigureState) -> dict[str, Any]:
    return {
        "figure": _d(state.figure),
        "complete": state.complete,
        "partialFigure": None if state.complete else _d(state.partial),
        "reason": state.reason,
        "footprintWithheld": state.footprint_withheld,
    }


def _diff_json(change: VersionDiff | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {
        "previousSequence": change.previous_sequence,
        "currentSequence": change.current_sequence,
        "figureBefore": _d(change.figure_before),
        "figureAfter": _d(change.figure_after),
        "delta": _d(change.delta),
        "deltaPercent": _d(change.delta_percent),
        "ownBefore": _d(change.own_before),
        "ownAfter": _d(change.own_after),
        "bomRevisionBefore": change.bom_revision_before,
        "bomRevisionAfter": change.bom_revision_after,
        "inputs": [
            {
                "input": c.key,
                "change": c.change,
                "before": _d(c.before),
                "after": _d(c.after),
                "delta": _d(c.delta),
                "detail": c.detail,
            }
            for c in change.inputs
        ],
    }


def _hotspot_json(h: Hotspot) -> dict[str, Any]:
    return {
        "input": h.key,
        "kind": h.kind,
        "contribution": _d(h.contribution),
        "sharePercent": _d(h.share_percent),
        "quantity": _d(h.quantity),
        "unit": h.unit,
    }


def _last_segment_prefix(pid: str, wanted: str) -> bool:
    """``PACK`` names ``urn:pact:cz-packs.cn:product-id:PACK-282`` (as :func:`resolve` does)."""
    return pid.rsplit(":", 1)[-1].startswith(wanted)


def product_json(found: ProductResults) -> dict[str, Any]:
    """One product's row (camelCase; decimals as strings)."""
    record = found.current
    change = found.changes()
    return {
        "productId": found.product_id,
        "owner": record.owner,
        "sequence": record.sequence,
        "bomRevision": record.bom_revision,
        "declaredUnit": {
            "amount": _d(record.declared_unit.amount),
            "unit": record.declared_unit.unit,
        },
        **_figure_json(figure_state(record)),
        "footprintId": None if record.footprint is None else str(record.footprint.id),
        "computedAt": record.computed_at.isoformat(),
        "assumptions": list(record.assumptions),
        "previous": None
        if change is None
        else {"sequence": change.previous_sequence, "figure": _d(change.figure_before)},
        "delta": None if change is None else _d(change.delta),
    }


def tree_json(
    products: dict[str, ProductResults],
    pid: str,
    depth: int = 0,
    seen: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """*pid*'s inputs as a tree, expanding inputs that are products on the topic."""
    record = products[pid].current
    children = []
    for line in record.inputs:
        child: dict[str, Any] = {
            "input": str(line.product_id) if line.kind == "footprint" else line.factor_id,
            "kind": line.kind,
            "quantity": _d(line.quantity),
            "unit": line.unit,
            "contribution": _d(line.contribution_kg_co2e),
        }
        if line.kind == "factor":
            child["factorVersion"] = line.factor_version
        key = str(line.product_id)
        if (
            line.kind == "footprint"
            and key in products
            and key not in seen
            and depth + 1 < MAX_DEPTH
        ):
            child["inputs"] = tree_json(products, key, depth + 1, seen | {pid})["inputs"]
        children.append(child)
    own = record.own_emissions
    return {
        "productId": pid,
        "ownEmissions": {
            "direct": _d(own.direct_kg_co2e),
            "electricity": _d(own.electricity_kg_co2e),
            "other": _d(own.other_kg_co2e),
        },
        "inputs": children,
    }


def _short(pid: str) -> str:
    return pid.rsplit(":", 1)[-1]


def _kg(value: Decimal | None) -> str:
    return "—" if value is None else f"{value.quantize(Decimal('0.0001')).normalize():f}"


def _delta(value: Decimal | None, percent: Decimal | None = None) -> str:
    if value is None:
        return ""
    if value == 0:
        return "unchanged"
    text = f"{value.quantize(Decimal('0.0001')).normalize():+f}"
    return f"{text} ({percent:+f} %)" if percent is not None else text


def products_table(products: dict[str, ProductResults]) -> Table:
    table = Table(title=f"{len(products)} products on pcf.products (kgCO2e per declared unit)")
    for column in ("product", "per", "kgCO2e", "version", "since previous", "note"):
        table.add_column(column, overflow="fold")
    for pid in sorted(products):
        found = products[pid]
        record = found.current
        state = figure_state(record)
        change = found.changes()
        notes = [n for n in (state.reason, state.footprint_withheld) if n]
        table.add_row(
            _short(pid),
            f"{record.declared_unit.amount} {record.declared_unit.unit}",
            _kg(state.figure),
            str(record.sequence),
            "" if change is None else _delta(change.delta, change.delta_percent),
            "; ".join(notes),
        )
    return table


def _tree(products: dict[str, ProductResults], pid: str) -> Tree:
    record = products[pid].current
    state = figure_state(record)
    root = Tree(f"{_short(pid)}: {state.shown} kgCO2e per {record.declared_unit.unit}")

    def add(node: Tree, product: str, depth: int, seen: frozenset[str]) -> None:
        rec = products[product].current
        own = rec.own_emissions
        node.add(
            f"own process: {_kg(own.direct_kg_co2e + own.electricity_kg_co2e + own.other_kg_co2e)}"
        )
        for line in rec.inputs:
            name = (
                _short(str(line.product_id))
                if line.kind == "footprint"
                else f"{line.factor_id}@{line.factor_version or '?'} (factor)"
            )
            child = node.add(
                f"{name}: {line.quantity} {line.unit} → {_kg(line.contribution_kg_co2e)}"
            )
            key = str(line.product_id)
            expand = line.kind == "footprint" and key in products and key not in seen
            if expand and depth + 1 < MAX_DEPTH:
                add(child, key, depth + 1, seen | {product})

    add(root, pid, 0, frozenset())
    return root


def _show_one(products: dict[str, ProductResults], pid: str, top: int) -> None:
    found = products[pid]
    record = found.current
    state = figure_state(record)
    console.print(_tree(products, pid))
    if state.reason:
        console.print(f"— {state.reason} (resolved part: {_kg(state.partial)})", markup=False)
    if state.footprint_withheld:
        console.print(f"No PACT footprint: {state.footprint_withheld}", markup=False)
    spots = Table(title=f"Hotspots of {_short(pid)} (largest contributions)")
    for column in ("input", "kind", "kgCO2e", "share"):
        spots.add_column(column, overflow="fold")
    for h in hotspots(record, top=top):
        share = "" if h.share_percent is None else f"{h.share_percent} %"
        spots.add_row(h.key, h.kind, _kg(h.contribution), share)
    console.print(spots)
    change = found.changes()
    if change is None:
        console.print(
            f"Version {record.sequence}: no earlier version on the topic (first version, or"
            " compacted away): nothing to compare."
        )
        return
    head = (
        f"Since version {change.previous_sequence}: {_kg(change.figure_before)} →"
        f" {_kg(change.figure_after)} ({_delta(change.delta, change.delta_percent)})"
    )
    if change.own_before != change.own_after:
        head += f"; own process {_kg(change.own_before)} → {_kg(change.own_after)}"
    if change.bom_revision_before != change.bom_revision_after:
        head += f"; BOM revision {change.bom_revision_before} → {change.bom_revision_after}"
    console.print(head, markup=False)
    if change.inputs:
        table = Table(title="Inputs that changed")
        for column in ("input", "change", "before", "after", "delta", "detail"):
            table.add_column(column, overflow="fold")
        for c in change.inputs:
            table.add_row(c.key, c.change, _kg(c.before), _kg(c.after), _delta(c.delta), c.detail)
        console.print(table)


@handle_errors
def results(
    product: Annotated[
        str | None,
        typer.Argument(
            help="A product id, a unique prefix of one, or a unique prefix of its last segment"
            " (e.g. PACK for urn:pact:cz-packs.cn:product-id:PACK-282); default: all products."
        ),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", min=1, help="How many hotspots to show for PRODUCT.")
    ] = 5,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Live results from pcf.products: every product's latest figure, or one product's tree,
    hotspots and what changed since its previous version."""
    from pcf_exchange.contracts.topics import TopicNames
    from pcf_exchange.pcfx.settings import bootstrap_servers

    servers = bootstrap or bootstrap_servers()
    topic = TopicNames(topic_prefix).products
    with console.status(f"Reading {topic} to its end…"):
        products, skipped = read_results(
            servers, topic, registry_url=registry_url, prefix=topic_prefix
        )
    if product is None:
        if json_out:
            print_json(
                {
                    "topic": topic,
                    "count": len(products),
                    "undecodable": skipped,
                    "products": [product_json(products[p]) for p in sorted(products)],
                }
            )
            return
        console.print(products_table(products))
        if skipped:
            console.print(f"({skipped} record(s) on {topic} did not decode: left out)")
        return
    # an ambiguous prefix is a usage error (2) as everywhere; streams.results.resolve refuses
    # an unknown one (1), naming how many products the topic holds
    wanted = resolve_id(product, products, "product", also=(_last_segment_prefix,))
    pid = resolve(wanted, products)
    found = products[pid]
    if json_out:
        print_json(
            {
                **product_json(found),
                "hotspots": [_hotspot_json(h) for h in hotspots(found.current, top=top)],
                "changes": _diff_json(found.changes()),
                "tree": tree_json(products, pid),
            }
        )
        return
    _show_one(products, pid, top)
