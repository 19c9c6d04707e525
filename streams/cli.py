"""``pcfx streams run`` (a faust worker) and ``pcfx rollup`` (batch mode: files in, results out).

Batch mode runs the very transitions the streaming workers run, over an in-memory queue, so a
dry run or what-if gives exactly what the exchange would converge to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from contracts import (
    BillOfMaterials,
    ContractError,
    LoadedRecord,
    RolledUpFootprint,
    load_boms,
    load_factors,
    load_footprints,
    to_pact_json,
)
from contracts._jsonio import dumps
from pcfx.console import ExitCode, console, err_console, handle_errors, print_json
from pcfx.ops_options import LogFormat, LogFormatName, LogLevel, LogLevelName, MetricsPort
from producers.cli import RegistryUrl
from streams.adapt import core_bom, core_factor, core_footprint, payload_hash, rolled_up_record
from streams.rollup import ContributionNode, RollupResult, contribution_tree, hotspots, run_batch

__all__ = ["rollup", "streams_app"]

streams_app = typer.Typer(
    help="The stream processors: continuous multi-tier roll-up on Kafka.", no_args_is_help=True
)


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
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help="File whose first line is the --service-key passphrase"
            " (else PCFX_KEY_PASSPHRASE).",
        ),
    ] = None,
    app_id: Annotated[
        str | None,
        typer.Option(
            help="Consumer group: workers with one id share work "
            "(default: <topic prefix>pcfx-streams)."
        ),
    ] = None,
    topic_prefix: Annotated[
        str, typer.Option(envvar="PCFX_TOPIC_PREFIX", help="Prefix of every topic name.")
    ] = "",
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
    log_level: LogLevel = LogLevelName.warn,
    log_format: LogFormat = LogFormatName.text,
    metrics_port: MetricsPort = 0,
) -> None:
    """Run one streams worker (start more, with the same --app-id, to share the partitions)."""
    from contracts import HttpSchemaRegistry
    from contracts.handoff import HandoffSigner
    from pcfx.settings import bootstrap_servers
    from producers.keys import key_id_of, load_public_key, load_signer, read_passphrase
    from streams.runtime import StreamsConfig, run_worker

    keys = {key_id_of(k): k for k in (load_public_key(p) for p in operator_key)}
    signer = load_signer(service_key, read_passphrase(passphrase_file))
    data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    config = StreamsConfig(
        bootstrap=bootstrap_servers(),
        operator_keys=keys,
        signer=HandoffSigner(signer.private_key, signer.owner, signer.key_id),
        app_id=app_id or f"{topic_prefix}pcfx-streams",
        topic_prefix=topic_prefix,
        partitions=partitions,
        key_grace_s=key_grace,
        data_dir=data_dir,
        registry=HttpSchemaRegistry(registry_url) if registry_url else None,
    )
    run_worker(
        config, loglevel=log_level.value, log_format=log_format.value, metrics_port=metrics_port
    )


@streams_app.command("topics")
@handle_errors
def topics(
    app_id: Annotated[
        str | None,
        typer.Option(help="The workers' consumer group (default: <topic prefix>pcfx-streams)."),
    ] = None,
    topic_prefix: Annotated[
        str, typer.Option(envvar="PCFX_TOPIC_PREFIX", help="Prefix of every topic name.")
    ] = "",
    partitions: Annotated[int, typer.Option(help="Partitions of every topic.")] = 6,
) -> None:
    """Create the streams' topics (data topics with the broker's clock, LogAppendTime) and check
    them, then exit: run it before anything is published, or the broker auto-creates a topic
    the workers refuse (producer timestamps, its default partition count)."""
    from pcfx.settings import bootstrap_servers
    from streams.runtime import TOPICS, StreamsConfig, ensure_topics

    config = StreamsConfig(
        bootstrap=bootstrap_servers(),
        operator_keys={},
        app_id=app_id or f"{topic_prefix}pcfx-streams",
        topic_prefix=topic_prefix,
        partitions=partitions,
    )
    ensure_topics(config)
    for name in TOPICS:
        console.print(f"OK: {config.topic(name)} ({partitions} partitions)")


# --- batch mode ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchOutcome:
    records: list[RolledUpFootprint]
    results: Mapping[str, RollupResult]
    problems: list[str]
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


def run_rollup(
    footprint_files: Sequence[Path], bom_files: Sequence[Path], factor_files: Sequence[Path]
) -> BatchOutcome:
    """Load the files (reporting every bad record), roll everything up, build the records."""
    problems: list[str] = []
    footprints = [
        r for f in footprint_files for r in _good(load_footprints(f), problems) if r is not None
    ]
    boms: list[BillOfMaterials] = [r for f in bom_files for r in _good(load_boms(f), problems)]
    factors = [r for f in factor_files for r in _good(load_factors(f), problems)]
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
    records = [
        rolled_up_record(results[pid], sequence=1, bom=bom, previous_pf_id=None, now=now)
        for pid, bom in latest.items()
        if pid in results
    ]
    names = {pid: bom.product_name or pid for pid, bom in latest.items()}
    return BatchOutcome(records, results, problems, names)


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
        str | None, typer.Option("--tree", help="Product id to show as a contribution tree.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Roll footprints up through BOMs from files (dry run / what-if); no Kafka needed."""
    for path in [*footprints, *boms, *(factors or [])]:
        if not path.is_file():
            raise ContractError(
                f"input file '{path}' does not exist",
                hint="Check the path; --footprints, --boms and --factors take files.",
            )
    outcome = run_rollup(footprints, boms, factors or [])
    documents = [
        {
            "productId": r.product_id,
            "footprint": to_pact_json(r.footprint) if r.footprint is not None else None,
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
            table.add_column(column)
        for r in outcome.records:
            result = outcome.results[r.product_id]
            interval = (
                f"{_fmt(r.uncertainty.lower95)} – {_fmt(r.uncertainty.upper95)}"
                if r.uncertainty and r.uncertainty.lower95 is not None
                else "—"
            )
            table.add_row(
                outcome.names.get(r.product_id, r.product_id),
                result.status.value,
                _fmt(r.pcf_excluding_biogenic_uptake),
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
        for r in outcome.records:  # a complete roll-up without a PACT footprint says why
            name = outcome.names.get(r.product_id, r.product_id)
            if r.footprint is None and r.completeness.complete and r.footprint_withheld:
                console.print(f"[yellow]no PACT footprint[/] {name}: {r.footprint_withheld}")
        assumed = sorted({a for r in outcome.records for a in r.assumptions})
        if assumed:  # the flagged assumptions of background factors (streams.adapt.core_factor)
            console.print("[yellow]Assumed[/] for background factors used above:")
            for assumption in assumed:
                console.print(f"  {assumption}", markup=False, highlight=False)
        if tree is not None:
            if tree not in outcome.results:
                raise ContractError(f"--tree must name a product with a BOM (got {tree!r})")
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
