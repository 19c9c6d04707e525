"""``pcfx api``: ``serve`` runs the PACT v3 API over TLS only (your certificate, or
``--self-signed`` for development); ``hash-secret`` prints a client's ``secret_hash``.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from contracts.keyfiles import key_id_of, load_ed25519_public_key
from gateway.api._app import api_readiness, api_state, create_app
from gateway.api._auth import hash_secret, load_clients
from gateway.api._labels import SnapshotFile
from gateway.api._server import create_self_signed_cert, serve
from gateway.api._source import InMemoryFootprintSource
from pcfx.console import console, handle_errors, print_json
from pcfx.ops_options import LogFormat, LogFormatName, LogLevel, LogLevelName, MetricsPort

__all__ = ["app"]

app = typer.Typer(
    help="The PACT v3 (WBCSD) HTTPS API: external customers pull the footprints released to them.",
    no_args_is_help=True,
)


@app.command("serve")
@handle_errors
def serve_command(
    *,
    clients: Annotated[
        Path,
        typer.Option(
            "--clients",
            help="YAML/JSON file: client id → recipient, secret_hash, scopes, events endpoint.",
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: let the OS choose).")] = 8443,
    cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM, chain).")] = None,
    key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    self_signed: Annotated[
        bool, typer.Option("--self-signed", help="Make a development CA and certificate.")
    ] = False,
    tls_dir: Annotated[
        Path | None,
        typer.Option(help="Where --self-signed writes ca.pem/server.pem (default: a temp dir)."),
    ] = None,
    footprints: Annotated[
        Path | None,
        typer.Option(help="Directory <recipient id>/*.json of released PACT v3 footprints."),
    ] = None,
    token_ttl: Annotated[float, typer.Option(help="Access token lifetime in seconds.")] = 3600.0,
    event_source: Annotated[
        str | None,
        typer.Option(
            help="CloudEvents 'source' of events we send (default: //HOST:PORT/3/events)."
        ),
    ] = None,
    log_level: LogLevel = LogLevelName.info,
    log_format: LogFormat = LogFormatName.text,
    metrics_port: MetricsPort = 0,
    label_snapshot: Annotated[
        Path | None,
        typer.Option(
            "--label-snapshot",
            help="Serve GET /labels/verify against this registry snapshot (pcfx bodies export),"
            " re-read when it changes.",
        ),
    ] = None,
    label_operator_key: Annotated[
        Path | None,
        typer.Option(
            "--label-operator-key",
            envvar="PCFX_OPERATOR_KEY",
            help="The operator's public key that signed the snapshot.",
        ),
    ] = None,
) -> None:
    """Serve ListFootprints, GetFootprint, Events and the token endpoint over HTTPS (and
    /healthz, /readyz, /metrics; with --metrics-port, those also on plain HTTP)."""
    from contracts.observability import configure_logging, log_level_of, start_ops_server

    configure_logging("api", log_level.value, log_format.value)
    if self_signed == (cert is not None or key is not None):
        raise typer.BadParameter("give either --cert and --key, or --self-signed")
    if not self_signed and (cert is None or key is None):
        raise typer.BadParameter("--cert and --key go together")
    registered = load_clients(clients)
    source = (
        InMemoryFootprintSource.from_directory(footprints)
        if footprints
        else InMemoryFootprintSource()
    )
    if self_signed:
        directory = tls_dir or Path(tempfile.mkdtemp(prefix="pcfx-api-tls-"))
        names = list(dict.fromkeys([host, "localhost", "127.0.0.1"]))
        dev = create_self_signed_cert(directory, hostnames=names)
        cert, key = dev.cert_file, dev.key_file
        console.print(
            f"[yellow]Development certificate.[/] Clients must trust: [bold]{dev.ca_file}[/]"
        )
    assert cert is not None and key is not None
    labels = None
    if label_snapshot is not None:
        if label_operator_key is None:
            raise typer.BadParameter(
                "give the operator's public key", param_hint="--label-operator-key"
            )
        public = load_ed25519_public_key(label_operator_key)
        labels = SnapshotFile(label_snapshot, {key_id_of(public): public})
    api = create_app(
        source,
        registered,
        token_ttl=token_ttl,
        event_source=event_source or f"//{host}:{port}/3/events",
        label_registry=labels,
    )

    def ready(url: str) -> None:
        console.print(
            f"[green]PACT v3 API[/] on [bold]{url}[/] "
            f"({len(registered)} clients, {len(source.recipients())} recipients with footprints)",
            soft_wrap=True,
        )

    ops = start_ops_server("api", metrics_port, lambda: api_readiness(api_state(api)))
    try:
        serve(
            api,
            host,
            port,
            cert,
            key,
            log_level=log_level_of(log_level.value),
            on_ready=ready,
            root_logging=True,
        )
    finally:
        if ops is not None:
            ops.stop()


@app.command("hash-secret")
@handle_errors
def hash_secret_command(
    generate: Annotated[
        bool,
        typer.Option("--generate", help="Make a new random secret and print it with its hash."),
    ] = False,
    from_stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the secret from the first line of stdin.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Print the scrypt hash of a client secret for the clients file (`secret_hash`)."""
    if generate:
        secret = secrets.token_urlsafe(32)
    elif from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = typer.prompt("Client secret", hide_input=True, confirmation_prompt=True)
    hashed = hash_secret(secret)
    if json_out:
        print_json({"secret_hash": hashed, **({"secret": secret} if generate else {})})
    elif generate:
        console.print(f"secret:      {secret}", soft_wrap=True, highlight=False)
        console.print(f"secret_hash: {hashed}", soft_wrap=True, highlight=False)
        console.print("[yellow]Give the secret to the client now; only the hash is kept.[/]")
    else:
        console.print(hashed, soft_wrap=True, highlight=False)
