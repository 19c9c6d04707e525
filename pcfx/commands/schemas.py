"""``pcfx schemas``: the deployment's schema registry topic (``<prefix>pcf._schemas``).

``migrate`` is the upgrade path of a deployment that ran with ``PCFX_TOPIC_PREFIX`` before the
registry followed the prefix: its subjects (``<prefix><topic>-value``) and the ids its records
carry are in the shared ``pcf._schemas``. The command copies them into the prefixed topic with
their ids and versions, in one transaction, and only reads the old topic
(:func:`contracts._registry.migrate_schemas`). Running it again copies nothing; any id or version
the prefixed topic holds for another schema refuses the whole copy, naming subject, version and
id. Until it has run, ``streams run``, ``gateway run`` and ``api serve`` refuse to start on the
empty prefixed topic and print this command.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pcf_exchange.contracts._registry import (
    LEGACY_SCHEMAS_TOPIC,
    RegisteredSchema,
    migrate_schemas,
    require_prefix,
)
from pcf_exchange.pcfx.console import console, handle_errors, print_json
from pcf_exchange.pcfx.options import Bootstrap, JsonOut, TopicPrefix
from pcf_exchange.pcfx.settings import bootstrap_servers

__all__ = ["schemas_app"]

schemas_app = typer.Typer(
    help="The deployment's schema registry topic (<prefix>pcf._schemas): upgrade from the"
    " shared pcf._schemas.",
    no_args_is_help=True,
)


@schemas_app.command("migrate")
@handle_errors
def migrate(
    *,
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="The registry topic the deployment used before the upgrade.",
        ),
    ] = LEGACY_SCHEMAS_TOPIC,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be copied; write nothing.")
    ] = False,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    json_out: JsonOut = False,
) -> None:
    """Copy this deployment's subjects from the shared registry topic into its own, keeping
    their ids (the records on the topics carry them). Idempotent; refuses on any conflict."""
    require_prefix(topic_prefix)  # (before the broker is asked)
    plan = migrate_schemas(
        bootstrap_servers(bootstrap), topic_prefix, source_topic=source, dry_run=dry_run
    )
    if json_out:
        print_json(
            {
                "source": plan.source,
                "target": plan.target,
                "dryRun": dry_run,
                "copied": [] if dry_run else [_entry(e) for e in plan.copies],
                "toCopy": [_entry(e) for e in plan.copies] if dry_run else [],
                "present": [_entry(e) for e in plan.present],
                "compatibility": {subject: level.value for subject, level in plan.levels},
            }
        )
        return
    verb = "would copy" if dry_run else "copied"
    table = Table(title=f"{plan.source} → {plan.target}")
    for column in ("subject", "version", "id", "state"):
        table.add_column(column, justify="right" if column in ("version", "id") else "left")
    for entry in plan.copies:
        table.add_row(entry.subject, str(entry.version), str(entry.schema_id), verb)
    for entry in plan.present:
        table.add_row(entry.subject, str(entry.version), str(entry.schema_id), "already there")
    if plan.copies or plan.present:
        console.print(table)
    if not plan.copies and not plan.present:
        console.print(
            f"[yellow]'{plan.source}' holds no subject of prefix '{topic_prefix}'[/]: nothing"
            " to copy. Check --topic-prefix (or $PCFX_TOPIC_PREFIX) and --from."
        )
        return
    console.print(
        f"{len(plan.copies)} {verb}, {len(plan.present)} already there"
        + (f", {len(plan.levels)} compatibility level(s) set" if plan.levels else "")
        + (". Run again without --dry-run to copy." if dry_run and plan.copies else ".")
    )


def _entry(entry: RegisteredSchema) -> dict[str, object]:
    return {"subject": entry.subject, "version": entry.version, "id": entry.schema_id}
