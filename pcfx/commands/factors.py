"""``pcfx factors``: the operator's background database (``producers.factors``).

``import`` checks a whole factor table (CSV or JSON) and publishes it to ``pcf.factors`` only when
every row is valid and cites its published source (else nothing, and a reason per row naming
the column); ``list``, ``show`` and ``history`` read the factors back from the topic -- or, with
``--file``, from files, without a broker -- and show each factor's current version and the
versions it superseded. Exit codes as the README's table: 0 OK, 1 a row refused / an unknown
factor id, 3 broker unavailable, 4 a file that cannot be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from pcf_exchange.contracts import EmissionFactor, load_factors
from pcf_exchange.contracts._types import format_decimal
from pcf_exchange.pcfx.commands.publish import (
    BatchSize,
    DryRun,
    LedgerPath,
    NoLedger,
    OperatorPublicKey,
    _finish,
    _ledger,
)
from pcf_exchange.pcfx.console import ExitCode, console, err_console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    Bootstrap,
    JsonOut,
    PassphraseEnv,
    PassphraseFile,
    RegistryUrl,
    TopicPrefix,
    passphrase,
)
from pcf_exchange.pcfx.settings import bootstrap_servers
from pcf_exchange.producers._publisher import Publisher, Topics
from pcf_exchange.producers.factors import (
    FactorCatalogue,
    FactorVersion,
    RowProblem,
    check_factor_table,
    plan_import,
)
from pcf_exchange.producers.keys import KeyRole, load_public_key, load_signer
from pcf_exchange.streams.adapt import factor_assumptions

__all__ = ["factors_app"]

factors_app = typer.Typer(
    help="The background database: import sourced emission-factor tables, list factors, show "
    "one, and the history of its versions.",
    no_args_is_help=True,
)

FromFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--file",
        help="Read factors from this file (JSON or CSV, in publication order) instead of "
        "pcf.factors; repeatable.",
    ),
]
FactorIdArg = Annotated[str, typer.Argument(help="The factor id, e.g. cn:mee:grid:national.")]
Key = Annotated[
    Path | None,
    typer.Option("--key", help="The operator's private key (PEM); not needed with --dry-run."),
]


# --- import ------------------------------------------------------------------------------------


def _problems_json(problems: tuple[RowProblem, ...]) -> list[dict[str, Any]]:
    return [
        {
            "row": p.index,
            "line": p.line,
            "factorId": p.factor_id,
            "violations": [
                {"field": v.path, "code": v.code, "message": v.message}
                | ({"got": v.got} if v.got is not None else {})
                for v in p.violations
            ],
        }
        for p in problems
    ]


def _refuse(
    file: Path, problems: tuple[RowProblem, ...], json_out: bool, *, unreadable: bool
) -> NoReturn:
    """Print why a table is refused (nothing of it published) and exit 1 (4: unreadable)."""
    if json_out:
        print_json(
            {"file": str(file), "ok": False, "published": 0, "problems": _problems_json(problems)}
        )
    else:
        shown = Table("where", "factor id", "field", "problem", title=f"{file}: refused")
        for problem in problems:
            for v in problem.violations:
                got = f" (got {v.got})" if v.got is not None else ""
                shown.add_row(
                    problem.where, problem.factor_id or "", v.path or "-", v.message + got
                )
        console.print(shown)
        err_console.print(
            f"[red]FAIL[/]: {len(problems)} row(s) refused; nothing was published. "
            "Fix them and run the import again (all rows are published together or none)."
        )
    raise typer.Exit(int(ExitCode.UNREADABLE_INPUT if unreadable else ExitCode.REJECTED))


@factors_app.command("import")
@handle_errors
def import_factors(
    file: Annotated[Path, typer.Argument(help="The factor table (.csv, or JSON).")],
    key: Key = None,
    dry_run: DryRun = False,
    json_out: JsonOut = False,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    ledger: LedgerPath = None,
    no_ledger: NoLedger = False,
    batch_size: BatchSize = 500,
    topic_prefix: TopicPrefix = "",
) -> None:
    """Check a whole factor table and publish it to pcf.factors: all rows or none.

    CSV columns: factorId,name,unit,value,source,version (required) and geography,
    referenceYear, referencePublisher, referenceTitle, referenceUrl, referencePublished,
    referenceAsPublished, technologicalDQR, geographicalDQR, temporalDQR,
    relativeStandardUncertaintyPercent, lower95, upper95, uncertaintyMethod,
    fossilGhgEmissions, biogenicNonCO2Emissions, landUseChangeGhgEmissions,
    fossilCarbonContent, biogenicCarbonContent. Every row must name its published source (the
    four reference columns); a (factorId, version) may appear once. A version already on
    pcf.factors with the same content is not sent again; one with other content refuses the
    import (a published version does not change: give a corrected figure a new version). List
    older versions first: the last one published becomes current.
    """
    table = check_factor_table(load_factors(file), file=str(file))
    if not table.ok:
        _refuse(file, table.problems, json_out, unreadable=table.unreadable)
    if dry_run and key is None:
        if json_out:
            print_json({"file": str(file), "ok": True, "published": 0, "valid": len(table.factors)})
        else:
            console.print(
                f"[green]OK[/]: {len(table.factors)} factors valid in {file}; nothing published "
                "(--dry-run)."
            )
        return
    if key is None:
        raise typer.BadParameter("is required to publish (or use --dry-run)", param_hint="--key")
    signer = load_signer(key, passphrase(passphrase_file, passphrase_env), role=KeyRole.OPERATOR)
    factors = table.factors
    if not dry_run:  # what the topic holds decides which rows are new versions
        plan = plan_import(table, _catalogue(None, bootstrap, registry_url, topic_prefix, None))
        if not plan.ok:
            _refuse(file, plan.conflicts, json_out, unreadable=False)
        factors = plan.to_publish
        if plan.already and not json_out:
            console.print(
                f"{len(plan.already)} version(s) already published as they are: not sent again."
            )
        if not factors:
            if json_out:
                print_json(
                    {"file": str(file), "ok": True, "published": 0, "already": len(plan.already)}
                )
            else:
                console.print(f"[green]OK[/]: nothing new in {file}.")
            return
    topics = Topics.prefixed(topic_prefix)
    with Publisher(
        None if dry_run else bootstrap_servers(bootstrap),
        signer=signer,
        registry=registry_url,
        topics=topics,
        ledger=_ledger(ledger, no_ledger),
        batch_size=batch_size,
        dry_run=dry_run,
    ) as publisher:
        summary = publisher.publish_many(factors)
    what = "factors valid" if dry_run else f"factors acknowledged on {topics.factors}"
    _finish(summary, json_out, what=what)


# --- reading -------------------------------------------------------------------------------------


def _catalogue(
    files: list[Path] | None,
    bootstrap: str | None,
    registry_url: str | None,
    topic_prefix: str,
    operator_public_key: Path | None,
) -> FactorCatalogue:
    if files:
        factors: list[EmissionFactor] = []
        for path in files:
            loaded = load_factors(path)
            bad = [r for r in loaded if r.value is None]
            if bad:  # (reading needs valid records, not a reference or unique versions)
                first = bad[0].error.violations[0] if bad[0].error else None
                row = bad[0]
                where = f" line {row.line}" if row.line else f" [{row.index}]"
                err_console.print(
                    f"[red]FAIL[/]: {path}{where if row.index is not None else ''}: "
                    + (f"'{first.path}' {first.message}" if first else "cannot be read")
                    + ". Fix the file, or check it with 'pcfx factors import FILE --dry-run'."
                )
                raise typer.Exit(int(ExitCode.UNREADABLE_INPUT))
            factors.extend(r.value for r in loaded if r.value is not None)
        return FactorCatalogue.of_factors(factors)
    from pcf_exchange.contracts import (
        AvroSerde,
        HttpSchemaRegistry,
        KafkaSchemaRegistry,
        SchemaRegistry,
    )

    servers = bootstrap_servers(bootstrap)
    registry: SchemaRegistry = (
        HttpSchemaRegistry(registry_url)
        if registry_url
        else KafkaSchemaRegistry(servers, prefix=topic_prefix)
    )
    operator = load_public_key(operator_public_key) if operator_public_key else None
    try:
        return FactorCatalogue.read(
            servers, AvroSerde(registry), topic=topic_prefix + "pcf.factors", operator_key=operator
        )
    finally:
        close = getattr(registry, "close", None)
        if close is not None:
            close()


def _row(version: FactorVersion, catalogue: FactorCatalogue) -> dict[str, Any]:
    f = version.factor
    ref = f.reference
    current = catalogue.current(f.factor_id)
    return {
        "factorId": f.factor_id,
        "version": f.version,
        "name": f.name,
        "value": format_decimal(f.value),
        "unit": f.unit,
        "geography": f.geography,
        "referenceYear": f.reference_year,
        "coverage": f.coverage,
        "assumptions": list(factor_assumptions(f)),
        "source": f.source,
        "reference": ref.model_dump(mode="json", by_alias=True) if ref else None,
        "dqr": f.dqr.model_dump(mode="json", by_alias=True) if f.dqr else None,
        "uncertainty": f.uncertainty.model_dump(mode="json", by_alias=True, exclude_none=True)
        if f.uncertainty
        else None,
        "sequence": version.sequence,
        "signedBy": version.signed_by or None,
        "verified": version.verified,
        "current": current is version,
    }


def _unknown(factor_id: str, catalogue: FactorCatalogue) -> typer.Exit:
    err_console.print(
        f"[red]FAIL[/]: no factor {factor_id!r} ({len(catalogue)} factors known). "
        "List them with 'pcfx factors list'."
    )
    return typer.Exit(int(ExitCode.REJECTED))


@factors_app.command("list")
@handle_errors
def list_factors(
    files: FromFiles = None,
    json_out: JsonOut = False,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    operator_public_key: OperatorPublicKey = None,
) -> None:
    """List every factor's current version (the highest sequence)."""
    catalogue = _catalogue(files, bootstrap, registry_url, topic_prefix, operator_public_key)
    rows = []
    for versions in catalogue.versions.values():
        row = _row(versions[-1], catalogue)
        row["versions"] = len(versions)
        rows.append(row)
    if json_out:
        print_json({"factors": rows, "skipped": catalogue.skipped})
        return
    table = Table(title=f"Background factors ({len(rows)}; kgCO2e per unit)")
    table.add_column("factor id", no_wrap=True)
    for column in ("version", "value", "unit", "geography", "covers", "source"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["factorId"],
            row["version"] + (f" (+{row['versions'] - 1} older)" if row["versions"] > 1 else ""),
            row["value"],
            row["unit"],
            row["geography"] or "",
            row["coverage"] + (" (assumed fossil)" if row["coverage"] == "total" else ""),
            row["source"] + ("" if row["reference"] else " [yellow](no reference)[/]"),
        )
    console.print(table)
    if catalogue.skipped:
        console.print(
            f"[yellow]{catalogue.skipped} record(s) skipped[/] (not decodable or forged)."
        )


@factors_app.command("show")
@handle_errors
def show_factor(
    factor_id: FactorIdArg,
    files: FromFiles = None,
    json_out: JsonOut = False,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    operator_public_key: OperatorPublicKey = None,
) -> None:
    """Show a factor's current version with its source, quality and coverage."""
    catalogue = _catalogue(files, bootstrap, registry_url, topic_prefix, operator_public_key)
    current = catalogue.current(factor_id)
    if current is None:
        raise _unknown(factor_id, catalogue)
    row = _row(current, catalogue)
    row["versions"] = len(catalogue.history(factor_id))
    if json_out:
        print_json(row)
        return
    table = Table("field", "value", title=f"{factor_id} (current version)", show_header=False)
    ref = row.pop("reference") or {}
    for name, value in row.items():
        if value is None or value == []:
            continue
        table.add_row(name, ", ".join(value) if isinstance(value, list) else str(value))
    for name, value in ref.items():
        table.add_row(f"reference.{name}", str(value))
    if not ref:
        table.add_row("reference", "[yellow]none: the factor does not cite a published source[/]")
    console.print(table)


@factors_app.command("history")
@handle_errors
def factor_history(
    factor_id: FactorIdArg,
    files: FromFiles = None,
    json_out: JsonOut = False,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    operator_public_key: OperatorPublicKey = None,
) -> None:
    """Every version of a factor, oldest first: the current one and those it superseded."""
    catalogue = _catalogue(files, bootstrap, registry_url, topic_prefix, operator_public_key)
    versions = catalogue.history(factor_id)
    if not versions:
        raise _unknown(factor_id, catalogue)
    rows = [_row(v, catalogue) for v in versions]
    if json_out:
        print_json({"factorId": factor_id, "versions": rows})
        return
    table = Table(
        "sequence", "version", "value", "unit", "year", "published", "state",
        title=f"History of {factor_id}",
    )  # fmt: skip
    for row in rows:
        ref = row["reference"]
        table.add_row(
            str(row["sequence"]),
            row["version"],
            row["value"],
            row["unit"],
            str(row["referenceYear"] or ""),
            ref["published"] if ref else "",
            "[green]current[/]" if row["current"] else "superseded",
        )
    console.print(table)
