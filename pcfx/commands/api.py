"""``pcfx api``: ``serve`` runs the PACT v3 API over TLS only (your certificate, or
``--self-signed`` for development); ``hash-secret`` prints a client's ``secret_hash``.

``serve`` serves what the gateway released for the API and nothing else: it reads
``pcf.api.releases`` continuously with the API service's X25519 key (``--api-key``), verifying
the gateway's signature (``--gateway-pub``), and records every footprint it serves on its own
audit chain on ``pcf.audit`` (``--audit-log``), sealed with its Ed25519 key
(``--signing-key``): no audit record, no response (:mod:`gateway.api._kafka`). Schema ids come
from the deployment's registry topic (``<prefix>pcf._schemas``), or from a Confluent-compatible
registry with ``--registry-url`` (as ``streams run`` and ``gateway run`` take it).
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from pcf_exchange.contracts.keyfiles import (
    key_id_of,
    load_ed25519_private_key,
    load_ed25519_public_key,
    load_x25519_private_key,
)
from pcf_exchange.gateway.api._app import api_readiness, api_state, create_app
from pcf_exchange.gateway.api._auth import hash_secret, load_clients
from pcf_exchange.gateway.api._disclosure import DEFAULT_AUDIT_LOG
from pcf_exchange.gateway.api._labels import SnapshotFile
from pcf_exchange.gateway.api._server import create_self_signed_cert, serve
from pcf_exchange.pcfx.console import console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    LogFormat,
    LogFormatName,
    LogLevel,
    MetricsPort,
    RegistryUrl,
    log_level,
)

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
    api_key: Annotated[
        Path,
        typer.Option(
            "--api-key",
            help="The API service's X25519 private key (PEM): opens what the gateway released"
            " for the API (gateway run --api-key takes its public key).",
        ),
    ],
    gateway_pub: Annotated[
        list[Path],
        typer.Option(
            "--gateway-pub",
            help="The gateway's public key (PEM) whose signature releases must carry (repeat"
            " for earlier keys after a rotation).",
        ),
    ],
    signing_key: Annotated[
        Path,
        typer.Option(
            "--signing-key",
            help="The API service's Ed25519 key (PEM) that seals its disclosure audit chain.",
        ),
    ],
    audit_log: Annotated[
        str, typer.Option("--audit-log", help="Log id of this API's chain on pcf.audit.")
    ] = DEFAULT_AUDIT_LOG,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="The https:// base URL clients use (OpenID issuer, pagination links);"
            " default: https://HOST:PORT as served. The Host header is never used.",
        ),
    ] = None,
    topic_prefix: Annotated[
        str,
        typer.Option(
            "--topic-prefix", envvar="PCFX_TOPIC_PREFIX", help="Prefix of every topic name."
        ),
    ] = "",
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap",
            help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS or the local broker).",
        ),
    ] = None,
    registry_url: RegistryUrl = None,
    passphrase_env: Annotated[
        str | None, typer.Option(help="Env var holding the private keys' passphrase.")
    ] = None,
    token_ttl: Annotated[float, typer.Option(help="Access token lifetime in seconds.")] = 3600.0,
    event_source: Annotated[
        str | None,
        typer.Option(
            help="CloudEvents 'source' of events we send (default: //HOST:PORT/3/events)."
        ),
    ] = None,
    level: LogLevel = "info",
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
    """Serve what the gateway released (ListFootprints, GetFootprint, Events) over HTTPS,
    every disclosure audited (and /healthz, /readyz, /metrics; with --metrics-port, those also
    on plain HTTP)."""
    from pcf_exchange.contracts.observability import (
        configure_logging,
        log_level_of,
        start_ops_server,
    )

    configure_logging("api", log_level(level), log_format.value)
    if self_signed == (cert is not None or key is not None):
        raise typer.BadParameter("give either --cert and --key, or --self-signed")
    if not self_signed and (cert is None or key is None):
        raise typer.BadParameter("--cert and --key go together")
    if not gateway_pub:
        raise typer.BadParameter("give the gateway's public key", param_hint="--gateway-pub")
    # the Kafka side is imported here, not when `pcfx` starts
    from pcf_exchange.gateway._sealing import GatewayKey
    from pcf_exchange.gateway._topics import Topics
    from pcf_exchange.gateway.api._kafka import KafkaDisclosureRecorder, KafkaReleaseSource

    registered = load_clients(clients)
    passphrase = os.environ.get(passphrase_env, "").encode() if passphrase_env else None
    private = load_x25519_private_key(api_key, passphrase)
    signer = GatewayKey.from_private_key(load_ed25519_private_key(signing_key, passphrase))
    gateways = [load_ed25519_public_key(p) for p in gateway_pub]
    if self_signed:
        directory = tls_dir or Path(tempfile.mkdtemp(prefix="pcfx-api-tls-"))
        names = list(dict.fromkeys([host, "localhost", "127.0.0.1"]))
        dev = create_self_signed_cert(directory, hostnames=names)
        cert, key = dev.cert_file, dev.key_file
        console.print(
            f"[yellow]Development certificate.[/] Clients must trust: [bold]{dev.ca_file}[/]"
        )
    assert cert is not None and key is not None
    if public_url is None and port != 0:  # (port 0: the address bound, read from the socket)
        public_url = f"https://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
    labels = None
    if label_snapshot is not None:
        if label_operator_key is None:
            raise typer.BadParameter(
                "give the operator's public key", param_hint="--label-operator-key"
            )
        public = load_ed25519_public_key(label_operator_key)
        labels = SnapshotFile(label_snapshot, {key_id_of(public): public})
    from pcf_exchange.contracts import SERVICE_STARTUP_S, HttpSchemaRegistry, KafkaSchemaRegistry
    from pcf_exchange.contracts._registry import require_migrated
    from pcf_exchange.pcfx.settings import bootstrap_servers

    servers = bootstrap or bootstrap_servers()
    topics = Topics(topic_prefix)
    registry: HttpSchemaRegistry | KafkaSchemaRegistry = (
        HttpSchemaRegistry(registry_url)
        if registry_url
        else KafkaSchemaRegistry(servers, prefix=topic_prefix, startup_s=SERVICE_STARTUP_S)
    )
    if isinstance(registry, KafkaSchemaRegistry):  # an un-migrated prefixed deployment: refuse
        try:
            require_migrated(servers, topic_prefix, registry=registry)
        except BaseException:
            registry.close()
            raise
    source = KafkaReleaseSource(
        servers, topics=topics, registry=registry, private_key=private, gateway_keys=gateways
    )
    recorder = KafkaDisclosureRecorder(
        servers, topics=topics, registry=registry, signer=signer, log_id=audit_log
    )
    try:
        source.start()
        recorder.start()
        source.wait_ready()
        api = create_app(
            source,
            registered,
            token_ttl=token_ttl,
            event_source=event_source or f"//{host}:{port}/3/events",
            label_registry=labels,
            disclosures=recorder,
            public_url=public_url,
        )

        def ready(url: str) -> None:
            console.print(
                f"[green]PACT v3 API[/] on [bold]{url}[/] ({len(registered)} clients,"
                f" {len(source.recipients())} recipients with releases; disclosures audited on"
                f" {topics.audit} as '{audit_log}')",
                soft_wrap=True,
            )

        # SIGTERM (`kill`) stops as Ctrl-C does: uvicorn shuts down gracefully and re-raises
        # the signal, which lands here, so the reader stops, the audit chain gets its closing
        # checkpoint, and the exit code is 0
        previous = signal.signal(signal.SIGTERM, _interrupt)
        ops = start_ops_server("api", metrics_port, lambda: api_readiness(api_state(api)))
        try:
            serve(
                api,
                host,
                port,
                cert,
                key,
                log_level=log_level_of(log_level(level)),
                on_ready=ready,
                root_logging=True,
            )
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            if ops is not None:
                ops.stop()
    finally:
        source.close()
        recorder.close()
        registry.close()
    console.print(
        f"stopped: {source.served} releases read, {len(source.refused)} refused;"
        f" {recorder.recorded} disclosures audited",
        soft_wrap=True,
    )


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


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
        print_json({"secretHash": hashed, **({"secret": secret} if generate else {})})
    elif generate:
        console.print(f"secret:      {secret}", soft_wrap=True, highlight=False)
        console.print(f"secret_hash: {hashed}", soft_wrap=True, highlight=False)
        console.print("[yellow]Give the secret to the client now; only the hash is kept.[/]")
    else:
        console.print(hashed, soft_wrap=True, highlight=False)
