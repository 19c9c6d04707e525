"""The gateway's command line: ``pcfx gateway run|policy-check|decide`` here, and the gateway's
other command groups gathered from their own modules (``pcfx/cli.py`` registers them from here):

============================  ==========================================================
``pcfx gateway keys …``       :mod:`pcfx.commands.gateway_keys`
``pcfx audit …``              :mod:`pcfx.commands.gateway_audit`
``pcfx approvals …``          :mod:`pcfx.commands.gateway_approvals`
``pcfx outbound …``           :mod:`pcfx.commands.gateway_outbound`
============================  ==========================================================

Thin: every command calls ``gateway`` / ``gateway.runtime`` and prints; what the modules share
(the broker address, the schema registry) is :mod:`pcfx.commands._gateway_shared`. Errors leave
through ``pcfx.console.handle_errors`` (exit 1 rejected/not intact, 3 infrastructure, 4
unreadable).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pcf_exchange.contracts._registry import SERVICE_STARTUP_S
from pcf_exchange.contracts.keyfiles import load_x25519_public_key
from pcf_exchange.gateway._keys import (
    derive_secret,
    load_gateway_key,
    load_gateway_public_key,
    load_secret,
)
from pcf_exchange.gateway._pipeline import GatewaySecrets
from pcf_exchange.gateway._subscriptions import (
    default_subscriptions_path,
    load_subscriptions,
)
from pcf_exchange.gateway._topics import Topics
from pcf_exchange.gateway.audit._export import UnreadableInput
from pcf_exchange.gateway.policy import CounterState, Policy, evaluate, load_policy
from pcf_exchange.gateway.runtime._avro import kafka_registrar
from pcf_exchange.pcfx.commands._gateway_shared import _bootstrap, _registry
from pcf_exchange.pcfx.commands.gateway_approvals import approvals_app
from pcf_exchange.pcfx.commands.gateway_audit import audit_app
from pcf_exchange.pcfx.commands.gateway_keys import keys_app
from pcf_exchange.pcfx.commands.gateway_outbound import outbound_app
from pcf_exchange.pcfx.console import ExitCode, console, err_console, handle_errors, print_json
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
    log_level,
    passphrase,
)

__all__ = ["approvals_app", "audit_app", "gateway_app", "outbound_app"]

gateway_app = typer.Typer(
    help="The outbound gateway: run the pipeline, check policies, manage keys.",
    no_args_is_help=True,
)
gateway_app.add_typer(keys_app, name="keys")


# ----------------------------------------------------------------------------------------------
# pcfx gateway run | policy-check | decide


def _load(policy: Path, subscriptions: Path | None) -> tuple[Policy, Any]:
    loaded = load_policy(policy)
    subs = load_subscriptions(subscriptions or Path(default_subscriptions_path()), loaded)
    return loaded, subs


@gateway_app.command("policy-check")
@handle_errors
def policy_check(
    policy: Annotated[Path, typer.Option("--policy", help="Policy YAML.")],
    subscriptions: Annotated[
        Path | None, typer.Option("--subscriptions", help="Subscriptions YAML.")
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """Load and check a policy and its subscriptions; nothing is sent."""
    loaded, subs = _load(policy, subscriptions)
    summary = {
        "policy": {"id": loaded.id, "version": loaded.version, "digest": loaded.digest},
        "recipients": sorted(loaded.recipients),
        "rules": len(loaded.rules),
        "subscriptions": [
            {
                "recipient": s.recipient,
                "purpose": s.purpose,
                "products": list(s.products),
                "categories": None if s.categories is None else list(s.categories),
            }
            for s in subs.items
        ],
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"OK: policy {loaded.id} {loaded.version} (digest {loaded.digest[:16]}…),"
        f" {len(loaded.recipients)} recipients, {len(loaded.rules)} rules"
    )
    for s in subs.items:
        console.print(
            f"OK: subscription {s.recipient} / {s.purpose}: products {', '.join(s.products)}"
            + (f", categories {', '.join(s.categories)}" if s.categories else "")
        )


@gateway_app.command("decide")
@handle_errors
def decide(
    record: Annotated[
        Path, typer.Argument(help="PACT v3 JSON of the record (gateway input layout).")
    ],
    recipient: Annotated[str, typer.Option("--recipient")],
    purpose: Annotated[str, typer.Option("--purpose")],
    policy: Annotated[Path, typer.Option("--policy", help="Policy YAML.")],
    as_json: JsonOut = False,
) -> None:
    """Dry run: what the policy decides for one record and recipient (per field, with rules)."""
    loaded = load_policy(policy)
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError) as exc:
        raise UnreadableInput(f"cannot read {record}: {exc}") from exc
    now = datetime.now(UTC)
    d = evaluate(loaded, data, recipient, purpose, CounterState.empty(now.year), now)
    if as_json:
        print_json(
            {
                "outcome": d.outcome.value,
                "reasons": [str(r) for r in d.reasons],
                "fields": [
                    {"path": p, "action": v.action.value, "rule": v.rule_id} for p, v in d.fields
                ],
            }
        )
    else:
        console.print(d.explain())
        table = Table("field", "action", "rule")
        for path, verdict in d.fields:
            table.add_row(path, verdict.action.value, verdict.rule_id)
        console.print(table)
    if d.outcome.value == "blocked":
        raise typer.Exit(int(ExitCode.REJECTED))


@gateway_app.command("run")
@handle_errors
def run(
    policy: Annotated[Path, typer.Option("--policy", help="Policy YAML.")],
    gateway_key: Annotated[
        Path, typer.Option("--gateway-key", help="The gateway's Ed25519 key (PEM).")
    ],
    operator_key: Annotated[
        list[Path],
        typer.Option(
            "--operator-key",
            help="The platform operator's public key (PEM), repeat for several: key"
            " registrations on pcf.keys signed by it say which service keys may sign"
            " pcf.products and which officer keys may decide approvals.",
        ),
    ],
    subscriptions: Annotated[
        Path | None,
        typer.Option("--subscriptions", help="Subscriptions YAML (default: the shipped example)."),
    ] = None,
    pseudonym_secret: Annotated[
        Path | None,
        typer.Option(
            help="Secret file for pseudonyms and PI counters (default: derived from the key)."
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Consumer group: instances with the same group share the partitions "
            "(default: <topic prefix>pcfx-gateway).",
        ),
    ] = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Most records per transaction.")] = 1000,
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Sign a checkpoint every N entries...")
    ] = 10_000,
    checkpoint_interval: Annotated[
        float, typer.Option(min=0, help="...or every S seconds with unsealed entries.")
    ] = 5.0,
    approval_ttl_hours: Annotated[
        float, typer.Option(min=0.001, help="How long a held transfer waits.")
    ] = 168.0,
    audit_partitions: Annotated[
        int, typer.Option(min=1, help="Partitions of pcf.audit when created.")
    ] = 1,
    trusted_gateway_pub: Annotated[
        list[Path],
        typer.Option(
            "--trusted-gateway-pub",
            help="An earlier gateway public key (PEM) whose checkpoints and batch seals a chain"
            " may resume from, after a key rotation. Repeatable.",
        ),
    ] = [],  # noqa: B006 (typer reads the default)
    api_key: Annotated[
        Path | None,
        typer.Option(
            "--api-key",
            help="The PACT API service's X25519 public key (PEM): also release each footprint,"
            " sealed to it, on pcf.api.releases for 'pcfx api serve' (same transaction).",
        ),
    ] = None,
    api_recipient: Annotated[
        list[str],
        typer.Option(
            "--api-recipient",
            help="With --api-key: a recipient served through the API (repeat; default: all).",
        ),
    ] = [],  # noqa: B006 (typer reads the default)
    max_records: Annotated[int | None, typer.Option(help="Stop after N input records.")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after S seconds.")] = None,
    idle_seconds: Annotated[
        float | None,
        typer.Option(
            help="Stop after S seconds without work, counted only while this instance holds"
            " partitions (after a restart it first waits for them; bound that with"
            " --max-seconds)."
        ),
    ] = None,
    as_json: JsonOut = False,
    registry_url: RegistryUrl = None,
    level: LogLevel = "info",
    log_format: LogFormat = LogFormatName.text,
    metrics_port: MetricsPort = 0,
) -> None:
    """Consume pcf.products; per subscriber decide, seal and send, audited in one transaction."""
    from pcf_exchange.contracts.observability import configure_logging, start_ops_server
    from pcf_exchange.gateway.runtime._runner import SERVICE, GatewayRunner, RunnerSettings

    configure_logging(SERVICE, log_level(level), log_format.value)
    from pcf_exchange.producers.keys import key_id_of, load_public_key

    loaded, subs = _load(policy, subscriptions)
    signer = load_gateway_key(gateway_key, passphrase=passphrase(passphrase_file, passphrase_env))
    operators = {key_id_of(k): k for k in (load_public_key(p) for p in operator_key)}
    secret = (
        load_secret(pseudonym_secret) if pseudonym_secret else derive_secret(signer, "pseudonym")
    )
    unknown = sorted(set(api_recipient) - set(subs.recipients))
    if api_key is None and api_recipient:
        raise typer.BadParameter("give --api-key with --api-recipient", param_hint="--api-key")
    if unknown:
        raise typer.BadParameter(
            f"{unknown} subscribe to nothing (subscribed: {sorted(subs.recipients)})",
            param_hint="--api-recipient",
        )
    servers = _bootstrap(bootstrap)
    group = group or f"{topic_prefix}pcfx-gateway"
    settings = RunnerSettings(
        servers,
        topics=Topics(topic_prefix),
        group_id=group,
        batch_size=batch_size,
        checkpoint_every=checkpoint_every,
        checkpoint_interval_s=checkpoint_interval,
        approval_ttl=timedelta(hours=approval_ttl_hours),
        audit_partitions=audit_partitions,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    registry = _registry(servers, registry_url, topic_prefix, SERVICE_STARTUP_S)
    logging.getLogger("pcfx.gateway").info(
        "gateway: policy %s %s, key %s, %d subscriptions, group %s",
        loaded.id,
        loaded.version,
        signer.key_id,
        len(subs.items),
        group,
    )
    ops = None
    try:
        with GatewayRunner(
            settings,
            policy=loaded,
            subscriptions=subs,
            secrets=GatewaySecrets(signer=signer, pseudonym_secret=secret),
            registry=registry,
            operator_keys=operators,
            # (an HTTP registry registers what is missing itself; the topic has one writer)
            registrar=None if registry_url else kafka_registrar(servers, prefix=topic_prefix),
            trusted_keys=[load_gateway_public_key(p) for p in trusted_gateway_pub],
            api_key=load_x25519_public_key(api_key) if api_key is not None else None,
            api_recipients=api_recipient or None,
        ) as runner:
            ops = start_ops_server(SERVICE, metrics_port, runner.readiness)
            stats = runner.run(
                max_records=max_records,
                max_seconds=max_seconds,
                idle_seconds=idle_seconds,
                stop=stop,
            )
            stopped = dict(runner.stopped)
    finally:
        if ops is not None:
            ops.stop()
        registry.close()
    for partition, error in sorted(stopped.items()):
        err_console.print(f"FAIL: partition {partition} stopped: {error.message}", markup=False)
    if as_json:
        print_json({**stats.to_dict(), "stopped": {str(p): e.message for p, e in stopped.items()}})
    else:
        console.print(
            f"OK: {stats.records} records, {stats.decisions} decisions: {stats.sent} sent,"
            f" {stats.blocked} blocked ({stats.untrusted} untrusted), {stats.held} held,"
            f" {stats.unrouted} unrouted,"
            f" {stats.rejected} rejected; {stats.transactions} transactions"
            f" ({stats.aborted} aborted and retried), {stats.checkpoints} checkpoints"
        )
    if stopped:
        raise typer.Exit(int(ExitCode.REJECTED))
