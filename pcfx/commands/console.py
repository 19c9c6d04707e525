"""``pcfx console serve|add-user``: the compliance console (``gateway.console``) from the CLI.

``add-user`` writes an officer's entry in the console users file (their officer key and a scrypt
hash of their password); ``serve`` runs the console over TLS with the same uvicorn helper as the
PACT API. The audit log comes from a JSON-lines file (``--audit-log``: a ``pcfx audit export``
or a gateway's own audit file) or, without it, from the audit topics; the approvals queue is
``pcf.approvals`` on the broker (``--no-approvals`` serves the read-only pages without one).

Every gateway import here is from the module that defines the name (not ``from gateway import
...``), so a ``gateway/`` folder in the working directory cannot shadow the package.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcf_exchange.pcfx.console import console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    LogFormat,
    LogFormatName,
    LogLevel,
    MetricsPort,
    PassphraseEnv,
    PassphraseFile,
    log_level,
    passphrase,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from pcf_exchange.gateway.runtime._officer import OfficerKey

__all__ = ["console_app"]

console_app = typer.Typer(
    help="The compliance console: officers see what went out, drill down, approve or deny.",
    no_args_is_help=True,
)

UsersOpt = Annotated[
    Path,
    typer.Option(
        "--users", help="The console users file (JSON, mode 600; made by 'pcfx console add-user')."
    ),
]


@console_app.command("add-user")
@handle_errors
def add_user(
    officer: Annotated[str, typer.Argument(help="The officer's name: their officer key's owner.")],
    key: Annotated[
        Path,
        typer.Option(
            "--key", help="The officer's private key (PEM, mode 600), registered with role officer."
        ),
    ],
    users: UsersOpt,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env",
            help="Read the password from this environment variable (scripts); else a prompt.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine output.")] = False,
) -> None:
    """Add an officer (or set a new password): the key must load and belong to OFFICER."""
    from pcf_exchange.contracts.errors import KeyStoreError
    from pcf_exchange.gateway.console._auth import UsersFile
    from pcf_exchange.producers.keys import load_signer

    signer = load_signer(key, passphrase(passphrase_file, passphrase_env), owner=officer)
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise KeyStoreError(
                f"environment variable {password_env} (the console password) is not set"
            )
    else:
        password = typer.prompt("Console password", hide_input=True, confirmation_prompt=True)
    UsersFile.set_password(
        users,
        officer,
        key=key,
        password=password,
        passphrase_file=passphrase_file,
        passphrase_env=passphrase_env,
    )
    if as_json:
        print_json({"officer": officer, "keyId": signer.key_id, "users": str(users)})
    else:
        console.print(
            f"OK: officer {officer} (key {signer.key_id}) can log in to the console;"
            f" users file {users}",
            markup=False,
        )


@console_app.command("serve")
@handle_errors
def serve_console(
    users: UsersOpt,
    gateway_pub: Annotated[
        list[Path],
        typer.Option(
            "--gateway-pub", help="Trusted gateway public key (PEM); repeat for rotated keys."
        ),
    ],
    audit_log: Annotated[
        Path | None,
        typer.Option(
            "--audit-log",
            help="JSON-lines audit file (pcfx audit export, or the gateway's own); else the"
            " audit topics.",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM, chain).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")
    ] = None,
    self_signed: Annotated[
        bool, typer.Option("--self-signed", help="Make a development CA and certificate.")
    ] = False,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: let the OS choose).")] = 8444,
    no_approvals: Annotated[
        bool,
        typer.Option("--no-approvals", help="Serve without the approvals queue (no broker)."),
    ] = False,
    operator_pub: Annotated[
        Path | None,
        typer.Option(
            "--operator-pub",
            envvar="PCFX_OPERATOR_KEY",
            help="The operator's public key: at login, the officer key must be registered with"
            " role officer on pcf.keys under it (else the gateway alone checks it).",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="Policy file naming each rule's legal basis."),
    ] = None,
    topic_prefix: Annotated[
        str, typer.Option("--topic-prefix", envvar="PCFX_TOPIC_PREFIX", help="Topic prefix.")
    ] = "",
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers.")
    ] = None,
    level: LogLevel = "info",
    log_format: LogFormat = LogFormatName.text,
    metrics_port: MetricsPort = 0,
) -> None:
    """Serve the compliance console over HTTPS (officer login required for every page); with
    --metrics-port, /metrics, /healthz and /readyz on plain HTTP."""
    import threading

    from pcf_exchange.contracts.observability import (
        Readiness,
        configure_logging,
        log_level_of,
        start_ops_server,
    )
    from pcf_exchange.gateway._keys import load_gateway_public_key
    from pcf_exchange.gateway._sealing import KeyRing
    from pcf_exchange.gateway.api._server import create_self_signed_cert, serve
    from pcf_exchange.gateway.console._app import ConsoleSettings, create_console_app
    from pcf_exchange.gateway.console._auth import UsersFile
    from pcf_exchange.gateway.console._sources import (
        ApprovalQueue,
        AuditSource,
        FileAuditSource,
        KafkaApprovalQueue,
        KafkaAuditSource,
        rule_basis,
    )

    configure_logging("console", log_level(level), log_format.value)
    if self_signed == (tls_cert is not None or tls_key is not None):
        raise typer.BadParameter("give either --tls-cert and --tls-key, or --self-signed")
    if not self_signed and (tls_cert is None or tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if not gateway_pub:
        raise typer.BadParameter("at least one trusted key", param_hint="--gateway-pub")
    officers = UsersFile.read(users)
    keys = KeyRing.of(*(load_gateway_public_key(p) for p in gateway_pub))
    servers: str | None = None
    if audit_log is None or not no_approvals or operator_pub is not None:
        from pcf_exchange.pcfx.settings import bootstrap_servers

        servers = bootstrap or bootstrap_servers()
    audit: AuditSource = (
        FileAuditSource(audit_log)
        if audit_log is not None
        else KafkaAuditSource(servers or "", topic_prefix)
    )
    queue: ApprovalQueue | None = (
        None if no_approvals else KafkaApprovalQueue(servers or "", topic_prefix)
    )
    authorize = None
    if operator_pub is not None:
        authorize = _registration_check(servers or "", topic_prefix, operator_pub)
    if self_signed:
        directory = Path(tempfile.mkdtemp(prefix="pcfx-console-tls-"))
        dev = create_self_signed_cert(directory, hostnames=list(dict.fromkeys([host, "localhost"])))
        tls_cert, tls_key = dev.cert_file, dev.key_file
        console.print(f"[yellow]Development certificate.[/] Browsers must trust: {dev.ca_file}")
    assert tls_cert is not None and tls_key is not None
    app = create_console_app(
        ConsoleSettings(
            audit=audit,
            keys=keys,
            users=officers,
            approvals=queue,
            authorize=authorize,
            rule_basis=rule_basis(policy),
        )
    )

    serving = threading.Event()

    def ready(url: str) -> None:
        serving.set()
        console.print(
            f"[green]compliance console[/] on [bold]{url}[/] ({len(officers.officers)} officers;"
            f" audit from {audit_log or 'the audit topics'};"
            f" approvals {'off' if queue is None else queue.topic})",
            soft_wrap=True,
        )

    ops = start_ops_server(
        "console",
        metrics_port,
        lambda: Readiness.yes() if serving.is_set() else Readiness.no("starting the HTTPS server"),
    )
    try:
        serve(
            app,
            host,
            port,
            tls_cert,
            tls_key,
            log_level=log_level_of(log_level(level)),
            on_ready=ready,
            root_logging=True,
        )
    finally:
        if ops is not None:
            ops.stop()


def _registration_check(
    servers: str, topic_prefix: str, operator_pub: Path
) -> Callable[[OfficerKey], str | None]:
    """At login: the key registered with role officer on ``pcf.keys`` (under the operator key)
    and usable now, read afresh each time (a revocation takes effect at the next login)."""
    from pcf_exchange.contracts import AvroSerde, KafkaSchemaRegistry, SignerRole
    from pcf_exchange.contracts.errors import TrustError
    from pcf_exchange.contracts.keyfiles import load_ed25519_public_key
    from pcf_exchange.gateway._topics import Topics
    from pcf_exchange.producers._keydir import KeyDirectory

    operator = load_ed25519_public_key(operator_pub)
    topic = Topics(topic_prefix).keys

    def check(key: OfficerKey) -> str | None:
        registry = KafkaSchemaRegistry(servers, prefix=topic_prefix)
        try:
            directory = KeyDirectory.read(
                servers, AvroSerde(registry), topic=topic, operator_key=operator
            )
        finally:
            registry.close()
        if directory.keyring is None:
            return f"no key registry on {topic}"
        found = directory.keyring.authorize(
            key.owner, key.key_id, role=SignerRole.OFFICER, at=datetime.now(UTC)
        )
        return found.message if isinstance(found, TrustError) else None

    return check
