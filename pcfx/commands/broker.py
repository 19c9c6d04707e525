"""``pcfx broker``: start, stop and inspect the local jar broker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from pcf_exchange.contracts.errors import BrokerError
from pcf_exchange.infra.kafka import launcher
from pcf_exchange.pcfx.console import ExitCode, camel_keys, console, handle_errors, print_json
from pcf_exchange.pcfx.options import JsonOut

app = typer.Typer(
    help="Run a real Apache Kafka broker (KRaft) from Maven Central jars, without Docker.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Folder for the broker's config, data and log "
        "(default: $PCFX_BROKER_DIR or ~/.cache/pcf-exchange/broker).",
    ),
]


@app.command()
@handle_errors
def start(
    state_dir: StateDir = None,
    port: Annotated[
        int | None, typer.Option(help="Broker port on 127.0.0.1 (default: a free one).")
    ] = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="SASL/SCRAM-SHA-512 over TLS with the KRaft StandardAuthorizer (deny unless an"
            " ACL allows): clients need the admin.properties it writes, or a tenant's file"
            " from 'pcfx tenants add'.",
        ),
    ] = False,
    nodes: Annotated[
        int,
        typer.Option(
            "--nodes",
            min=1,
            max=launcher.MAX_NODES,
            help="Run a replicated KRaft cluster of this many nodes on loopback (3: replication"
            " factor 3, min.insync.replicas 2; 'pcfx broker stop' stops them all).",
        ),
    ] = 1,
    json_out: JsonOut = False,
) -> None:
    """Start the broker (resolving the jars with Maven on first use) and wait until it answers."""
    began = time.monotonic()
    if nodes > 1:
        if secure or port is not None:
            raise BrokerError(
                "--nodes runs a plaintext cluster on free ports: it takes neither --secure nor"
                " --port",
                hint="Leave those out, or start a single broker (--nodes 1).",
            )
        with console.status(f"Starting a {nodes}-node Kafka cluster…"):
            cluster = launcher.start_cluster(state_dir, nodes=nodes)
        if json_out:
            print_json(
                {
                    "bootstrap": cluster.bootstrap,
                    "replicationFactor": cluster.info.replication_factor,
                    "minInsyncReplicas": cluster.info.min_insync_replicas,
                    "nodes": [
                        {"nodeId": n.node_id, "pid": n.pid, "port": n.port}
                        for n in cluster.info.nodes
                    ],
                }
            )
            return
        console.print(
            f"[green]Kafka {cluster.info.kafka_version} cluster of {nodes} nodes is ready[/] at"
            f" [bold]{cluster.bootstrap}[/] (replication factor"
            f" {cluster.info.replication_factor}, min.insync.replicas"
            f" {cluster.info.min_insync_replicas}; {time.monotonic() - began:.1f} s)."
        )
        console.print(f"Use it with: export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap}")
        return
    with console.status("Starting Kafka (first run downloads the jars with Maven)…"):
        info = launcher.start(state_dir, port=port, secure=secure)
    if json_out:
        print_json(info.__dict__)
        return
    took = time.monotonic() - began
    console.print(
        f"[green]Kafka {info.kafka_version} is ready[/] at [bold]{info.bootstrap}[/] "
        f"(pid {info.pid}, {took:.1f} s)."
    )
    if info.admin_config:
        console.print(
            f"{info.security_protocol} ({info.sasl_mechanism}); CA file {info.ca_file};"
            f" the operator ({info.admin_principal}, a super user) connects with"
            f" {info.admin_config} (mode 0600)."
        )
        console.print(
            f"Use it with: export KAFKA_BOOTSTRAP_SERVERS={info.bootstrap}"
            f" KAFKA_CLIENT_CONFIG={info.admin_config}"
        )
        console.print("Create principals with: pcfx tenants add NAME --role ROLE")
        return
    console.print(f"Use it with: export KAFKA_BOOTSTRAP_SERVERS={info.bootstrap}")


@app.command()
@handle_errors
def stop(state_dir: StateDir = None, json_out: JsonOut = False) -> None:
    """Stop the broker (or every node of the cluster) that `pcfx broker start` started (never
    any other process)."""
    result = launcher.stop(state_dir)
    if json_out:
        print_json({"running": result.running, "detail": result.detail})
    else:
        console.print(result.detail)


@app.command()
@handle_errors
def status(state_dir: StateDir = None, json_out: JsonOut = False) -> None:
    """Say whether a local broker is running, and where. Exit code 1 when none is."""
    result = launcher.status(state_dir)
    if json_out:
        print_json(
            {
                "running": result.running,
                "detail": result.detail,
                "broker": camel_keys(result.info.__dict__)
                if result.info and result.running
                else None,
            }
        )
    else:
        console.print(result.detail)
    if not result.running:
        raise typer.Exit(int(ExitCode.REJECTED))


@app.command()
@handle_errors
def logs(
    state_dir: StateDir = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines.")] = 40,
    json_out: JsonOut = False,
) -> None:
    """Show the last lines of the broker's log."""
    directory = (state_dir or launcher.default_state_dir()).resolve()
    tail = launcher.read_log_tail(directory, lines)
    if json_out:
        print_json({"stateDir": str(directory), "lines": tail.splitlines()})
    else:
        console.print(tail, markup=False, highlight=False)
