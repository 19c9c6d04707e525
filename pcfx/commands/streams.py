"""``pcfx streams run`` (a faust worker) and ``pcfx rollup`` (batch mode: files in, results out).

Batch mode runs the very transitions the streaming workers run, over an in-memory queue, so a
dry run or what-if gives exactly what the exchange would converge to. The roll-up itself is
:func:`streams.batch.run_rollup` (the harnesses and the demo call it too); ``pcfx rollup`` is
the shell around it: the progress bar, the table, the tree, ``--json`` and the exit code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.tree import Tree

from pcf_exchange.contracts import to_pact_json
from pcf_exchange.contracts._jsonio import dumps
from pcf_exchange.contracts.errors import UnreadableInput
from pcf_exchange.pcfx.console import (
    ExitCode,
    console,
    err_console,
    handle_errors,
    print_json,
    stages,
)
from pcf_exchange.pcfx.options import (
    Bootstrap,
    JsonOut,
    LogFormat,
    LogFormatName,
    LogLevel,
    MetricsPort,
    PassphraseEnv,
    PassphraseFile,
    RegistryUrl,
    TopicPrefix,
    deprecated,
    log_level,
    passphrase,
)
from pcf_exchange.pcfx.tables import resolve_id
from pcf_exchange.streams.batch import run_rollup, why_no_footprint
from pcf_exchange.streams.rollup import ContributionNode, contribution_tree, hotspots

__all__ = ["rollup", "streams_app"]

streams_app = typer.Typer(
    help="The stream processors: continuous multi-tier roll-up on Kafka.", no_args_is_help=True
)


OldAppId = Annotated[str | None, typer.Option("--app-id", hidden=True, help="Deprecated: --group.")]


def _group(group: str | None, app_id: str | None) -> str | None:
    if app_id is not None:
        deprecated("--app-id", "--group")
        if group is not None and group != app_id:
            raise typer.BadParameter(f"--group {group!r} and --app-id {app_id!r} differ")
        return app_id
    return group


def _faust_level(level: str) -> str:
    """faust's names for the standard levels."""
    return {"critical": "crit", "warning": "warn"}.get(level, level)


@streams_app.command("run")
@handle_errors
def run(
    operator_key: Annotated[
        list[Path],
        typer.Option(
            "--operator-key",
            help="Operator public key (PEM) that signs key registrations and factors; repeat.",
        ),
    ],
    service_key: Annotated[
        Path,
        typer.Option(
            "--service-key",
            help="The worker's private key (PEM, mode 600): it signs every batch the worker"
            " writes to pcf.products; the operator registers its public key with --role service.",
            show_default=False,
        ),
    ],
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Consumer group: workers with one group share the partitions"
            " (default: <topic prefix>pcfx-streams).",
            show_default=False,
        ),
    ] = None,
    app_id: OldAppId = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    partitions: Annotated[int, typer.Option(help="Partitions of every topic.")] = 6,
    key_grace: Annotated[
        float,
        typer.Option(
            help=(
                "Seconds after its append a record whose signing key is not registered stays"
                " parked (the partition goes on) before the DLQ (unknown_key)."
            )
        ),
    ] = 10.0,
    data_dir: Annotated[Path, typer.Option(help="Worker state folder.")] = Path(".pcfx/streams"),
    registry_url: RegistryUrl = None,
    level: LogLevel = "warning",
    log_format: LogFormat = LogFormatName.text,
    metrics_port: MetricsPort = 0,
) -> None:
    """Run one streams worker (start more, with the same --group, to share the partitions)."""
    from pcf_exchange.contracts import HttpSchemaRegistry
    from pcf_exchange.contracts._registry import require_migrated
    from pcf_exchange.contracts.handoff import HandoffSigner
    from pcf_exchange.pcfx.settings import bootstrap_servers
    from pcf_exchange.producers.keys import key_id_of, load_public_key, load_signer
    from pcf_exchange.streams.runtime import StreamsConfig, run_worker

    keys = {key_id_of(k): k for k in (load_public_key(p) for p in operator_key)}
    signer = load_signer(service_key, passphrase(passphrase_file, passphrase_env))
    servers = bootstrap_servers(bootstrap)
    if not registry_url:  # an un-migrated prefixed deployment: refuse, say what to run
        require_migrated(servers, topic_prefix)
    data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    config = StreamsConfig(
        bootstrap=servers,
        operator_keys=keys,
        signer=HandoffSigner(signer.private_key, signer.owner, signer.key_id),
        app_id=_group(group, app_id) or f"{topic_prefix}pcfx-streams",
        topic_prefix=topic_prefix,
        partitions=partitions,
        key_grace_s=key_grace,
        data_dir=data_dir,
        registry=HttpSchemaRegistry(registry_url) if registry_url else None,
    )
    run_worker(
        config,
        loglevel=_faust_level(log_level(level)),
        log_format=log_format.value,
        metrics_port=metrics_port,
    )


@streams_app.command("topics")
@handle_errors
def topics(
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="The workers' consumer group (default: <topic prefix>pcfx-streams).",
            show_default=False,
        ),
    ] = None,
    app_id: OldAppId = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    partitions: Annotated[int, typer.Option(help="Partitions of every topic.")] = 6,
    json_out: JsonOut = False,
) -> None:
    """Create the streams' topics (data topics with the broker's clock, LogAppendTime) and check
    them, then exit: run it before anything is published, or the broker auto-creates a topic
    the workers refuse (producer timestamps, its default partition count)."""
    from pcf_exchange.pcfx.settings import bootstrap_servers
    from pcf_exchange.streams.runtime import TOPICS, StreamsConfig, ensure_topics

    config = StreamsConfig(
        bootstrap=bootstrap_servers(bootstrap),
        operator_keys={},
        app_id=_group(group, app_id) or f"{topic_prefix}pcfx-streams",
        topic_prefix=topic_prefix,
        partitions=partitions,
    )
    ensure_topics(config)
    if json_out:
        print_json({"topics": [config.topic(name) for name in TOPICS], "partitions": partitions})
        return
    for name in TOPICS:
        console.print(f"OK: {config.topic(name)} ({partitions} partitions)")


# --- batch mode (the roll-up itself is streams.batch) ------------------------------------------


def resolve_product(wanted: str, products: Iterable[str], names: Mapping[str, str]) -> str:
    """The one product *wanted* names (:func:`pcfx.tables.resolve_id`), tried in this order: its
    full id, a unique prefix or end of the id (the part after the URN's last ``:``), its BOM's
    product name, a unique part of that name (any case). An unknown or ambiguous name is a
    usage error listing the candidates."""
    ids = sorted(products)
    found = resolve_id(
        wanted,
        ids,
        "product",
        also=(
            lambda pid, w: pid.endswith(w),
            lambda pid, w: names.get(pid, "").casefold() == w.casefold(),
            lambda pid, w: w.casefold() in names.get(pid, "").casefold(),
        ),
        param_hint="--tree",
    )
    if found in ids:
        return found
    raise typer.BadParameter(
        f"{wanted!r} names no product with a BOM (give its id, a unique part of it, or its"
        f" name; {len(ids)} products were rolled up)",
        param_hint="--tree",
    )


def _fmt(value: Decimal | None, places: str = "0.001") -> str:
    return "—" if value is None else f"{value.quantize(Decimal(places)):,}"


def _tree(node: ContributionNode, branch: Tree) -> None:
    share = f" ({node.share.quantize(Decimal('0.1'))} %)" if node.share is not None else ""
    child = branch.add(f"{node.label}: {_fmt(node.contribution)} kgCO2e{share} [{node.kind}]")
    for sub in node.children:
        _tree(sub, child)


@handle_errors
def rollup(
    footprints: Annotated[
        list[Path], typer.Option("--footprints", help="PACT v3 JSON files of supplier footprints.")
    ],
    boms: Annotated[list[Path], typer.Option("--boms", help="BOM JSON files.")],
    factors: Annotated[
        list[Path] | None, typer.Option("--factors", help="Background factor files (JSON/CSV).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write PACT v3 footprints + lineage here.")
    ] = None,
    tree: Annotated[
        str | None,
        typer.Option(
            "--tree",
            help="Product to show as a contribution tree: its id, a unique prefix or end of the"
            " id, or its name.",
        ),
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """Roll footprints up through BOMs from files (dry run / what-if); no Kafka needed."""
    for path in [*footprints, *boms, *(factors or [])]:
        if not path.is_file():
            raise UnreadableInput(
                f"input file '{path}' does not exist",
                hint="Check the path; --footprints, --boms and --factors take files.",
            )
    with stages(not json_out and err_console.is_terminal) as stage:
        outcome = run_rollup(footprints, boms, factors or [], stage=stage)
    root_id = resolve_product(tree, outcome.results, outcome.names) if tree else None
    documents = [
        {
            "productId": r.product_id,
            "footprint": to_pact_json(r.footprint) if r.footprint is not None else None,
            "footprintWithheld": why_no_footprint(r),
            "rollup": json.loads(r.model_dump_json(by_alias=True, exclude={"footprint"})),
        }
        for r in outcome.records
    ]
    if out is not None:
        out.write_text(dumps(documents) + "\n")
    if json_out:
        print_json({"results": documents, "problems": outcome.problems})
    else:
        table = Table(title="Rolled-up footprints (per declared unit)")
        for column in ("product", "status", "kgCO2e", "unit", "95 % interval", "primary %"):
            table.add_column(column, overflow="fold")
        for r in outcome.records:
            result = outcome.results[r.product_id]
            interval = (
                f"{_fmt(r.uncertainty.lower95)} – {_fmt(r.uncertainty.upper95)}"
                if r.uncertainty and r.uncertainty.lower95 is not None
                else "—"
            )
            complete = r.completeness.complete
            table.add_row(
                outcome.names.get(r.product_id, r.product_id),
                result.status.value,
                # a partial sum is not a footprint: — here, and why in the lines below
                _fmt(r.pcf_excluding_biogenic_uptake) if complete else "—",
                f"{_fmt(r.declared_unit.amount, '1')} {r.declared_unit.unit}",
                interval,
                _fmt(r.primary_data_share, "0.1"),
            )
        console.print(table)
        for problem in outcome.problems:
            err_console.print(f"[red]FAIL[/]: {problem}")
        for r in outcome.records:  # why each product is not complete, line by line
            status = outcome.results[r.product_id].status.value
            for m in r.missing_components:
                line = f"components[{m.component_index}] {m.product_id or m.factor_id or ''}"
                name = outcome.names.get(r.product_id, r.product_id)
                console.print(f"[yellow]{status}[/] {name}: {line}: {m.detail or m.reason}")
        for r in outcome.records:  # a roll-up without a PACT footprint says why
            name = outcome.names.get(r.product_id, r.product_id)
            why = why_no_footprint(r)
            if why is not None:
                console.print(f"[yellow]no PACT footprint[/] {name}: {why}", highlight=False)
        assumed = sorted({a for r in outcome.records for a in r.assumptions})
        if assumed:  # the flagged assumptions of background factors (streams.adapt.core_factor)
            console.print("[yellow]Assumed[/] for background factors used above:")
            for assumption in assumed:
                console.print(f"  {assumption}", markup=False, highlight=False)
        if root_id is not None:
            tree = root_id
            root = Tree(f"[bold]{tree}[/]")
            for node in contribution_tree(outcome.results, tree).children:
                _tree(node, root)
            console.print(root)
            spots = Table(title=f"Hotspots of {tree}")
            for column in ("input", "kind", "kgCO2e", "share %"):
                spots.add_column(column)
            for spot in hotspots(outcome.results, tree, top=8):
                spots.add_row(spot.ref, spot.kind, _fmt(spot.contribution), _fmt(spot.share, "0.1"))
            console.print(spots)
        if out is not None:
            console.print(f"Wrote {len(documents)} results to {out}")
    incomplete = any(not r.completeness.complete for r in outcome.records)
    if outcome.problems or incomplete:
        raise typer.Exit(int(ExitCode.REJECTED))
