"""``pcfx tenants``: principals of a secured broker and their least-privilege ACLs.

Run as the operator's super user (the ``admin.properties`` that ``pcfx broker start --secure``
writes): ``pcfx --kafka-config admin.properties tenants add catl --role supplier``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pcf_exchange.contracts.acl import ROLES
from pcf_exchange.infra.kafka import tenants as sdk
from pcf_exchange.pcfx.console import ExitCode, camel_keys, console, handle_errors, print_json
from pcf_exchange.pcfx.kafka_options import KafkaConfig, apply
from pcf_exchange.pcfx.options import Bootstrap, JsonOut, TopicPrefix
from pcf_exchange.pcfx.settings import bootstrap_servers

tenants_app = typer.Typer(
    help="Principals (SCRAM-SHA-512) and their ACLs on a secured broker (pcfx broker start"
    " --secure), by role: " + ", ".join(ROLES) + ".",
    no_args_is_help=True,
)

StreamsGroup = Annotated[
    str,
    typer.Option(
        "--streams-group",
        help="The streams workers' consumer group, their 'pcfx streams run --group' (role"
        " streams).",
    ),
]
GatewayGroup = Annotated[
    str,
    typer.Option(
        "--gateway-group",
        help="The gateway's consumer group, its 'pcfx gateway run --group' (role gateway).",
    ),
]

ROLE_HELP = (
    "supplier/manufacturer: write pcf.declared and pcf.bom, read no other company's data"
    " (a manufacturer reads its results on pcf.outbound.<name>); recipient: read"
    " pcf.outbound.<name>; streams, gateway, api, officer: their stage's topics; operator:"
    " write pcf.keys, pcf.factors, the schemas topic, create topics."
)


def _connect(kafka_config: Path | None, bootstrap: str | None) -> str:
    apply(kafka_config)
    return bootstrap_servers(bootstrap)


@tenants_app.command("add")
@handle_errors
def add(
    name: Annotated[str, typer.Argument(help="Tenant name; the principal is User:<name>.")],
    role: Annotated[str, typer.Option("--role", help=ROLE_HELP)],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write the tenant's client properties file (mode 0600)"
            " (default: ./<name>.kafka.properties).",
        ),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file", help="Read the password from this file (default: generate one)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing credential and file.")
    ] = False,
    prefix: TopicPrefix = "",
    app_id: StreamsGroup = "pcfx-streams",
    group: GatewayGroup = "pcfx-gateway",
    bootstrap: Bootstrap = None,
    kafka_config: KafkaConfig = None,
    json_out: JsonOut = False,
) -> None:
    """Create a principal, its role's ACLs and its client properties file (written once)."""
    if role not in ROLES:
        console.print(f"[red]--role must be one of {', '.join(ROLES)} (got {role!r})[/]")
        raise typer.Exit(int(ExitCode.USAGE))
    servers = _connect(kafka_config, bootstrap)
    target = out or Path.cwd() / f"{name}.kafka.properties"
    tenant = sdk.add_tenant(
        name,
        role,
        bootstrap=servers,
        out=target,
        prefix=prefix,
        app_id=app_id,
        group=group,
        password_file=password_file,
        force=force,
    )
    if json_out:
        print_json(
            {
                "name": tenant.name,
                "principal": tenant.principal,
                "role": role,
                "configFile": tenant.config_file,
                "acls": [str(g) for g in tenant.grants],
            }
        )
        return
    console.print(
        f"[green]OK:[/] {tenant.principal} ({role}) with {len(tenant.grants)} ACLs;"
        f" client config {tenant.config_file} (mode 0600, holds the password)."
    )
    console.print(f"Use it with: export KAFKA_CLIENT_CONFIG={tenant.config_file}")


@tenants_app.command("list")
@handle_errors
def list_(
    prefix: TopicPrefix = "",
    app_id: StreamsGroup = "pcfx-streams",
    group: GatewayGroup = "pcfx-gateway",
    bootstrap: Bootstrap = None,
    kafka_config: KafkaConfig = None,
    json_out: JsonOut = False,
) -> None:
    """Show every principal, its SCRAM mechanisms, the role its ACLs match, and the ACLs."""
    servers = _connect(kafka_config, bootstrap)
    tenants = sdk.list_tenants(bootstrap=servers, prefix=prefix, app_id=app_id, group=group)
    if json_out:
        print_json(
            [
                {
                    "name": t.name,
                    "principal": t.principal,
                    "mechanisms": list(t.mechanisms),
                    "role": t.role,
                    "acls": [str(g) for g in t.grants],
                }
                for t in tenants
            ]
        )
        return
    table = Table(title=f"Principals at {servers}")
    for column in ("principal", "SCRAM", "role", "ACLs (ALLOW)"):
        table.add_column(column)
    for t in tenants:
        table.add_row(
            t.principal,
            ", ".join(t.mechanisms) or "-",
            t.role or ("custom" if t.grants else "-"),
            "\n".join(str(g) for g in t.grants) or "(none: super user or no access)",
        )
    console.print(table)


@tenants_app.command("remove")
@handle_errors
def remove(
    name: Annotated[str, typer.Argument(help="Tenant name (principal User:<name>).")],
    bootstrap: Bootstrap = None,
    kafka_config: KafkaConfig = None,
    json_out: JsonOut = False,
) -> None:
    """Delete a principal's SCRAM credential and all its ACLs. Exit 1 if it did not exist."""
    servers = _connect(kafka_config, bootstrap)
    removed = sdk.remove_tenant(name, bootstrap=servers)
    if json_out:
        print_json(camel_keys(removed.__dict__))
    else:
        console.print(
            f"User:{name}: credential {'deleted' if removed.credential_deleted else 'not found'},"
            f" {removed.acls_deleted} ACLs deleted."
        )
    if not removed.credential_deleted and not removed.acls_deleted:
        raise typer.Exit(int(ExitCode.REJECTED))
