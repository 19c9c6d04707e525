"""The gateway's command line: ``pcfx gateway|audit|approvals|outbound ...`` (typer apps).

Thin: every command calls ``gateway`` / ``gateway.runtime`` and prints. Errors leave through
``pcfx.console.handle_errors`` (exit 1 rejected/not intact, 3 infrastructure, 4 unreadable).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from contracts.errors import KeyStoreError, TrustError
from contracts.keyfiles import load_x25519_public_key
from gateway._pipeline import GatewaySecrets
from gateway._sealing import KeyRing, SealedMessage, hpke_open, open_message
from gateway.audit import (
    CHECKPOINT_TYPE,
    AuditEntry,
    AuditVerification,
    Checkpoint,
    Problem,
    check_audit_log,
    check_inclusion,
    prove_inclusion,
)
from gateway.policy import CounterState, Policy, evaluate, load_policy, vault_context
from gateway.runtime._approvals_log import ApprovalBook, RowStatus
from gateway.runtime._avro import GatewaySerde, kafka_registrar
from gateway.runtime._codec import sealed_from_datum
from gateway.runtime._export import UnreadableInput, read_export, write_export
from gateway.runtime._keys import (
    derive_secret,
    load_gateway_key,
    load_gateway_public_key,
    load_recipient_private_key,
    load_secret,
    write_gateway_key,
    write_recipient_key,
    write_secret,
)
from gateway.runtime._officer import read_approval_book, write_decision
from gateway.runtime._report import render_report
from gateway.runtime._subscriptions import default_subscriptions_path, load_subscriptions
from gateway.runtime._topics import Topics
from pcfx.console import ExitCode, console, err_console, handle_errors, print_json
from pcfx.options import (
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
from pcfx.tables import approvals_table

__all__ = ["approvals_app", "audit_app", "gateway_app", "outbound_app"]

gateway_app = typer.Typer(
    help="The outbound gateway: run the pipeline, check policies, manage keys.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="Key files: the gateway's signing key, recipients' keys.", no_args_is_help=True
)
gateway_app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(
    help="The audit log: verify, checkpoint, show, prove, export, report.", no_args_is_help=True
)
approvals_app = typer.Typer(
    help="Held transfers waiting for a compliance officer.", no_args_is_help=True
)
outbound_app = typer.Typer(
    help="What recipients receive: verify and decrypt.", no_args_is_help=True
)

OfficerKeyOpt = Annotated[
    Path,
    typer.Option(
        "--key",
        help="Your compliance-officer private key (PEM, mode 600), registered by the operator"
        " with --role officer: it signs the decision, and its registration names you.",
        show_default=False,
    ),
]
PubOpt = Annotated[
    list[Path],
    typer.Option(
        "--gateway-pub", help="Trusted gateway public key (PEM); repeat for rotated keys."
    ),
]


def _bootstrap(explicit: str | None) -> str:
    from pcfx.settings import bootstrap_servers

    return bootstrap_servers(explicit)


def _quiet(*_: Any, **__: Any) -> None:
    """``console.print``'s stand-in under ``--json``: the JSON document is the only output."""


def _registry(bootstrap: str, url: str | None = None, prefix: str = "") -> Any:
    """The schema registry: the Confluent-compatible one at *url*, else the topic on Kafka of
    the deployment *prefix*."""
    from contracts import HttpSchemaRegistry, KafkaSchemaRegistry

    return HttpSchemaRegistry(url) if url else KafkaSchemaRegistry(bootstrap, prefix=prefix)


# ----------------------------------------------------------------------------------------------
# pcfx gateway keys ...


@keys_app.command("signing")
@handle_errors
def keys_signing(
    out: Annotated[Path, typer.Option("--out", help="Private key file to create (0600).")] = Path(
        "gateway.pem"
    ),
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    json_out: JsonOut = False,
) -> None:
    """New Ed25519 signing key for the gateway (outbound messages, audit checkpoints)."""
    key_id, public = write_gateway_key(out, passphrase=passphrase(passphrase_file, passphrase_env))
    if json_out:
        print_json({"privateKey": str(out), "publicKey": str(public), "keyId": key_id})
        return
    console.print(f"OK: {out} (private, 0600), {public} (give to recipients and auditors)")
    console.print(f"key id: {key_id}")


@keys_app.command("recipient")
@handle_errors
def keys_recipient(
    out: Annotated[Path, typer.Option("--out", help="The recipient's private key file (0600).")],
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    json_out: JsonOut = False,
) -> None:
    """New X25519 key pair for a recipient; prints the line for the policy's encryption_key."""
    text, public = write_recipient_key(out, passphrase=passphrase(passphrase_file, passphrase_env))
    if json_out:
        print_json({"privateKey": str(out), "publicKey": str(public), "encryptionKey": text})
        return
    console.print(f"OK: {out} (private: the recipient keeps it), {public}")
    console.print(f'policy: encryption_key: "{text}"')


@keys_app.command("secret")
@handle_errors
def keys_secret(
    out: Annotated[Path, typer.Option("--out", help="Secret file to create (0600).")] = Path(
        "gateway-pseudonym.key"
    ),
) -> None:
    """New 32-byte secret for per-recipient pseudonyms and the PI counters."""
    write_secret(out)
    console.print(f"OK: {out}")


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
    from contracts.observability import configure_logging, start_ops_server
    from gateway.runtime._runner import SERVICE, GatewayRunner, RunnerSettings

    configure_logging(SERVICE, log_level(level), log_format.value)
    from producers.keys import key_id_of, load_public_key

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
    registry = _registry(servers, registry_url, topic_prefix)
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


# ----------------------------------------------------------------------------------------------
# pcfx audit ...


def _audit_logs(
    file: Path | None,
    topic_prefix: str,
    bootstrap: str | None,
    offsets: dict[str, list[int]] | None = None,
) -> tuple[dict[str, list[AuditEntry]], dict[str, list[Checkpoint]], list[str], str]:
    if file is not None:
        entries, checkpoints, problems = read_export(file)
        return entries, checkpoints, problems, str(file)
    from gateway.runtime._sink import read_audit_logs

    servers = _bootstrap(bootstrap)
    topics = Topics(topic_prefix)
    registry = _registry(servers, prefix=topic_prefix)
    try:
        entries, checkpoints, problems = read_audit_logs(
            servers, topics, GatewaySerde(registry), offsets=offsets
        )
    finally:
        registry.close()
    return entries, checkpoints, problems, f"{topics.audit} + {topics.checkpoints} at {servers}"


def _keyring(pubs: list[Path]) -> KeyRing:
    if not pubs:
        raise KeyStoreError(
            "no trusted gateway key: pass --gateway-pub GATEWAY.pub.pem (repeat for rotated keys)"
        )
    return KeyRing.of(*(load_gateway_public_key(p) for p in pubs))


class VerifyExit(IntEnum):
    """Exit codes of ``pcfx audit verify`` (the most severe finding decides; 1 comes first)."""

    OK = 0
    NOT_INTACT = 1
    """Entries altered, removed, reordered, truncated; forged checkpoints or seals; entries no
    gateway signature vouches for (appended by another writer); unreadable records."""
    FORK = 10
    """The log disagrees with the pinned checkpoint at its size (another history)."""
    TAIL_CUT = 11
    """Entries the pinned checkpoint covers are gone (an unsealed tail was cut)."""
    ROLLBACK = 12
    """The log's newest checkpoint is older than the pinned one."""
    CHECKPOINT_MISSING = 13
    """The log has no checkpoint any more, or not the pinned one."""
    UNSEALED = 14
    """No pin, and a log has entries but no checkpoint at all (--allow-unsealed accepts it)."""


_EXIT_OF = {
    Problem.PIN_FORK: VerifyExit.FORK,
    Problem.PIN_TAIL_CUT: VerifyExit.TAIL_CUT,
    Problem.PIN_ROLLBACK: VerifyExit.ROLLBACK,
    Problem.PIN_MISSING: VerifyExit.CHECKPOINT_MISSING,
    Problem.UNSEALED: VerifyExit.UNSEALED,
}


def _exit_for(results: dict[str, AuditVerification], problems: list[str]) -> VerifyExit:
    codes = {
        _EXIT_OF.get(f.problem, VerifyExit.NOT_INTACT) for v in results.values() for f in v.findings
    }
    if problems or not results:
        codes.add(VerifyExit.NOT_INTACT)
    return min(codes, default=VerifyExit.OK)


def _verify_all(
    entries: dict[str, list[AuditEntry]],
    checkpoints: dict[str, list[Checkpoint]],
    keys: KeyRing,
    *,
    pins: Sequence[Checkpoint] = (),
    strict: bool = False,
    allow_unsealed: bool = True,
    offsets: dict[str, list[int]] | None = None,
) -> dict[str, AuditVerification]:
    logs = set(entries) | set(checkpoints) | {p.log_id for p in pins}
    return {
        log_id: check_audit_log(
            entries.get(log_id, []),
            checkpoints.get(log_id, []),
            keys,
            log_id=log_id if strict else None,
            pinned=[p for p in pins if p.log_id == log_id],
            require_vouched=strict,
            require_checkpoint=not allow_unsealed,
            offsets=(offsets or {}).get(log_id),
        )
        for log_id in sorted(logs)
    }


def _load_pins(values: Sequence[str], keys: KeyRing) -> list[Checkpoint]:
    """Checkpoints from ``--trusted-checkpoint`` values: inline JSON, or a file holding a
    checkpoint, a list of them, ``{"checkpoints": [...]}`` (``pcfx audit checkpoint``) or the
    document of ``pcfx audit verify --json``. Each must be signed by a trusted key."""
    pins: list[Checkpoint] = []

    def collect(data: Any, where: str) -> None:
        if isinstance(data, list):
            for item in data:
                collect(item, where)
        elif isinstance(data, dict) and "treeSize" in data:
            try:
                pins.append(Checkpoint.from_json(data))
            except TrustError as exc:
                raise UnreadableInput(f"--trusted-checkpoint {where}: {exc.message}") from exc
        elif isinstance(data, dict) and "checkpoints" in data:
            collect(data["checkpoints"], where)
        elif isinstance(data, dict) and isinstance(data.get("logs"), dict):
            collect([v["checkpoint"] for v in data["logs"].values() if v.get("checkpoint")], where)
        else:
            raise UnreadableInput(
                f"--trusted-checkpoint {where}: expected a checkpoint (logId, treeSize, rootHash,"
                " ...), a list of them, or the JSON of 'pcfx audit checkpoint' / 'audit verify"
                f" --json' (got {type(data).__name__})"
            )

    for value in values:
        inline = value.lstrip().startswith(("{", "["))
        where = "(inline)" if inline else value
        try:
            text = value if inline else Path(value).read_text()
            collect(json.loads(text), where)
        except (OSError, ValueError) as exc:
            raise UnreadableInput(f"--trusted-checkpoint {where}: cannot read it ({exc})") from exc
    for pin in pins:
        problem = keys.verify(pin.key_id, CHECKPOINT_TYPE, pin.signed_bytes(), pin.signature)
        if problem is not None:
            raise TrustError(
                f"the pinned checkpoint of log {pin.log_id} (size {pin.tree_size}) is not signed"
                f" by a trusted --gateway-pub key ({pin.key_id}: {problem})",
                reason=problem,
                hint="Pin only a checkpoint taken from a verified log ('pcfx audit checkpoint').",
            )
    return pins


FileOpt = Annotated[
    Path | None, typer.Option("--file", help="Read an exported JSON-lines file instead of Kafka.")
]


@audit_app.command("verify")
@handle_errors
def audit_verify(
    gateway_pub: PubOpt,
    file: FileOpt = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    trusted_checkpoint: Annotated[
        list[str],
        typer.Option(
            "--trusted-checkpoint",
            help="A checkpoint you trust from an earlier check: a file written by 'pcfx audit"
            " checkpoint --out' or 'audit verify --json', or the JSON inline. Repeatable.",
        ),
    ] = [],  # noqa: B006 (typer reads the default)
    allow_unsealed: Annotated[
        bool,
        typer.Option(
            "--allow-unsealed",
            help="Accept a log with entries but no checkpoint at all (a gateway that has not"
            " sealed yet) when no checkpoint is pinned.",
        ),
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Prove every chain and checkpoint; name the first entry altered, removed or reordered.

    Exit codes (the most severe applies: 1 first, then 10 to 14):
    0 intact;
    1 not intact: an entry altered, removed, reordered or cut off, a forged
    checkpoint or batch seal, entries no gateway signature vouches for,
    unreadable records;
    10 fork: the log disagrees with the pinned checkpoint at its size;
    11 tail cut: entries the pinned checkpoint covers are gone;
    12 rollback: the log's newest checkpoint is older than the pinned one;
    13 checkpoint missing: none left in the log, or not the pinned one;
    14 unsealed: no pin, and a log has entries but no checkpoint at all
    (--allow-unsealed accepts that);
    3 broker unavailable; 4 input unreadable.
    """
    keys = _keyring(gateway_pub)
    pins = _load_pins(trusted_checkpoint, keys)
    offsets: dict[str, list[int]] = {}
    entries, checkpoints, problems, source = _audit_logs(file, topic_prefix, bootstrap, offsets)
    results = _verify_all(
        entries,
        checkpoints,
        keys,
        pins=pins,
        strict=True,
        allow_unsealed=allow_unsealed,
        offsets=offsets,
    )
    code = _exit_for(results, problems)
    if as_json:
        print_json(
            {
                "source": source,
                "intact": code is VerifyExit.OK,
                "exitCode": int(code),
                "verdict": code.name.lower(),
                "unreadable": problems,
                "logs": {
                    log_id: {
                        "ok": v.ok,
                        "entries": v.entries,
                        "checkpoints": v.checkpoints,
                        "sealedSize": v.sealed_size,
                        "vouchedSize": v.vouched_size,
                        "firstBadEntry": v.first_bad_entry,
                        "checkpoint": None if v.anchor is None else v.anchor.to_json(),
                        "pinned": [p.tree_size for p in pins if p.log_id == log_id],
                        "findings": [
                            {
                                "problem": f.problem.value,
                                "entry": f.entry,
                                "checkpoint": f.checkpoint,
                                "message": f.message,
                            }
                            for f in v.findings
                        ],
                    }
                    for log_id, v in results.items()
                },
            }
        )
    else:
        for line in problems:
            console.print(f"FAIL: unreadable record {line}", markup=False)
        for log_id, v in results.items():
            console.print(f"{log_id}: {v.summary()}", markup=False)
            for finding in v.findings[1:5]:
                console.print(f"  - {finding}", markup=False)
        if not results:
            console.print(f"FAIL: no audit log found in {source}", markup=False)
        if code is not VerifyExit.OK:
            console.print(f"exit {int(code)}: {code.name.lower()}", markup=False)
    if code is not VerifyExit.OK:
        raise typer.Exit(int(code))


@audit_app.command("checkpoint")
@handle_errors
def audit_checkpoint(
    out: Annotated[Path, typer.Option("--out", help="JSON file to write the checkpoints to.")],
    gateway_pub: PubOpt,
    file: FileOpt = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    json_out: JsonOut = False,
) -> None:
    """Save each log's newest valid checkpoint, to pin later with 'audit verify
    --trusted-checkpoint FILE'. Writes nothing (exit 1) unless every log verifies."""
    say = _quiet if json_out else console.print
    keys = _keyring(gateway_pub)
    entries, checkpoints, problems, source = _audit_logs(file, topic_prefix, bootstrap)
    results = _verify_all(entries, checkpoints, keys, strict=True)
    bad = {log_id: v for log_id, v in results.items() if not v.ok}
    for line in problems:
        say(f"FAIL: unreadable record {line}", markup=False)
    for log_id, v in bad.items():
        say(f"{log_id}: {v.summary()}", markup=False)
    if bad or problems or not results:
        if not results:
            say(f"FAIL: no audit log found in {source}", markup=False)
        say(f"FAIL: nothing written to {out}: pin only a verified log", markup=False)
        if json_out:
            print_json(
                {"written": None, "source": source, "unreadable": problems,
                 "failed": {log_id: v.summary() for log_id, v in bad.items()}}
            )  # fmt: skip
        raise typer.Exit(int(ExitCode.REJECTED))
    anchors = [v.anchor for v in results.values() if v.anchor is not None]
    for log_id, v in results.items():
        if v.anchor is None:
            say(f"WARN: {log_id} has no checkpoint yet: not pinned", markup=False)
    out.write_text(json.dumps({"checkpoints": [a.to_json() for a in anchors]}, indent=2) + "\n")
    for a in anchors:
        say(
            f"OK: {a.log_id} size {a.tree_size} root {a.root_hash[:16]}… ({a.issued_at})",
            markup=False,
        )
    say(f"OK: {len(anchors)} checkpoint(s) from {source} → {out}", markup=False)
    if json_out:
        print_json(
            {"written": str(out), "source": source,
             "checkpoints": [a.to_json() for a in anchors],
             "unpinned": [log_id for log_id, v in results.items() if v.anchor is None]}
        )  # fmt: skip


@audit_app.command("export")
@handle_errors
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="JSON-lines file to write.")],
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    json_out: JsonOut = False,
) -> None:
    """Copy every audit log (entries and checkpoints) from Kafka to a JSON-lines file."""
    entries, checkpoints, problems, source = _audit_logs(None, topic_prefix, bootstrap)
    lines = write_export(out, entries, checkpoints)
    if json_out:
        print_json({"lines": lines, "source": source, "out": str(out), "unreadable": problems})
    else:
        console.print(f"OK: {lines} lines from {source} → {out}", markup=False)
        for line in problems:
            console.print(f"FAIL: unreadable record {line}", markup=False)
    if problems:
        raise typer.Exit(int(ExitCode.REJECTED))


def _summary(entry: AuditEntry) -> str:
    counts: dict[str, int] = {}
    for action, _, paths in entry.field_actions:
        counts[action] = counts.get(action, 0) + len(paths)
    return ", ".join(f"{a} {n}" for a, n in sorted(counts.items()))


@audit_app.command("show")
@handle_errors
def audit_show(
    recipient: Annotated[str | None, typer.Option(help="Only this recipient.")] = None,
    product: Annotated[
        str | None, typer.Option(help="Only this footprint id (pfId, or its prefix).")
    ] = None,
    outcome: Annotated[
        str | None,
        typer.Option(
            help="Only this outcome (allowed, transformed, blocked, held, approved, ...)."
        ),
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only this entry kind (transfer, transfer_blocked, ...).")
    ] = None,
    log: Annotated[
        str | None, typer.Option("--log", help="Only this log (gateway-p0, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most N entries (the newest).")] = 200,
    file: FileOpt = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    as_json: JsonOut = False,
) -> None:
    """List audit entries (newest last), filtered."""
    entries, _, problems, _ = _audit_logs(file, topic_prefix, bootstrap)
    rows = [
        (log_id, e)
        for log_id in sorted(entries)
        for e in entries[log_id]
        if (log is None or log_id == log)
        and (recipient is None or e.recipient_id == recipient)
        and (product is None or (e.record_pf_id or "").startswith(product))
        and (outcome is None or e.outcome == outcome)
        and (kind is None or e.kind == kind)
    ]
    rows.sort(key=lambda r: (r[1].recorded_at, r[0], r[1].seq))
    rows = rows[-limit:]
    if as_json:
        print_json([{"logId": log_id, **e.to_json()} for log_id, e in rows])
    else:
        table = Table(
            "log",
            "seq",
            "recorded",
            "kind",
            "outcome",
            "recipient",
            "purpose",
            "footprint",
            "policy",
            "fields",
            title=f"{len(rows)} audit entries",
        )
        for log_id, e in rows:
            table.add_row(
                log_id,
                str(e.seq),
                e.recorded_at,
                e.kind,
                e.outcome or "",
                e.recipient_id or "",
                e.purpose or "",
                e.record_pf_id or "",
                e.policy_version or "",
                _summary(e),
            )
        console.print(table)
    for line in problems:
        err_console.print(f"unreadable record {line}", markup=False)


@audit_app.command("prove")
@handle_errors
def audit_prove(
    entry: Annotated[
        str, typer.Argument(help="LOG:SEQ (e.g. gateway-p0:12), or SEQ when there is one log.")
    ],
    gateway_pub: PubOpt,
    file: FileOpt = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    as_json: JsonOut = False,
) -> None:
    """RFC 6962 inclusion proof of one entry against the newest checkpoint that covers it."""
    keys = _keyring(gateway_pub)
    entries, checkpoints, _, _ = _audit_logs(file, topic_prefix, bootstrap)
    log_id, _, seq_text = entry.rpartition(":")
    if not log_id:
        if len(entries) != 1:
            raise UnreadableInput(f"name the log: LOG:SEQ (logs: {', '.join(sorted(entries))})")
        log_id = next(iter(entries))
    try:
        seq = int(seq_text)
    except ValueError:
        raise UnreadableInput(f"'{entry}' is not LOG:SEQ") from None
    chain = entries.get(log_id, [])
    if not 0 <= seq < len(chain):
        raise UnreadableInput(f"log {log_id} has no entry {seq} ({len(chain)} entries)")
    target = chain[seq]
    valid = [
        cp
        for cp in checkpoints.get(log_id, [])
        if cp.tree_size > seq
        and cp.tree_size <= len(chain)
        and keys.verify(
            cp.key_id,
            "application/vnd.pcfx.audit.checkpoint+json;v=1",
            cp.signed_bytes(),
            cp.signature,
        )
        is None
    ]
    if not valid:
        raise TrustError(
            f"entry {log_id}:{seq} is not sealed yet: no valid checkpoint covers it",
            reason="not_included",
        )
    checkpoint = max(valid, key=lambda cp: cp.tree_size)
    proof = prove_inclusion(chain, seq, checkpoint.tree_size)
    problem = check_inclusion(target, proof, checkpoint, keys)
    result = {
        "logId": log_id,
        "entry": target.to_json(),
        "proof": proof.to_json(),
        "checkpoint": checkpoint.to_json(),
        "verified": problem is None,
        "problem": problem,
    }
    if as_json:
        print_json(result)
    else:
        status = "OK" if problem is None else "FAIL"
        console.print(
            f"{status}: entry {log_id}:{seq} ({target.kind}, {target.recipient_id}) is"
            f"{'' if problem is None else ' NOT'} included in the tree of {checkpoint.tree_size}"
            f" signed at {checkpoint.issued_at} by {checkpoint.key_id}"
            + ("" if problem is None else f": {problem}"),
            markup=False,
        )
        console.print(f"leaf {proof.leaf_hash}", markup=False)
        for i, node in enumerate(proof.path):
            console.print(f"path[{i}] {node}", markup=False)
        console.print(f"root {checkpoint.root_hash}", markup=False)
    if problem is not None:
        raise typer.Exit(int(ExitCode.REJECTED))


@audit_app.command("report")
@handle_errors
def audit_report(
    gateway_pub: PubOpt,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    since: Annotated[
        str | None, typer.Option("--since", help="First day (YYYY-MM-DD, UTC) to report on.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Last day (YYYY-MM-DD, UTC) to report on.")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy file naming each rule's legal basis (default: the shipped policy).",
        ),
    ] = None,
    file: FileOpt = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    json_out: JsonOut = False,
) -> None:
    """A self-contained HTML compliance report (exit 1 if a log does not verify).

    Entries that fail verification are marked and counted in no total; a transfer released
    after approval reads 'released (approved by X)' with the reason."""
    from contracts.errors import ValidationFailed
    from gateway.console._views import Filters

    try:
        period = Filters.parse({"since": since, "until": until})
    except ValidationFailed as exc:
        raise typer.BadParameter(
            "; ".join(str(v) for v in exc.violations), param_hint="--since/--until"
        ) from None
    keys = _keyring(gateway_pub)
    from gateway.console._sources import rule_basis

    basis = rule_basis(policy)
    entries, checkpoints, problems, source = _audit_logs(file, topic_prefix, bootstrap)
    results = _verify_all(entries, checkpoints, keys, strict=True)
    out.write_text(
        render_report(
            entries,
            results,
            source=source,
            unreadable=problems,
            since=period.since,
            until=period.until,
            rule_basis=basis,
        ),
        encoding="utf-8",
    )
    intact = bool(results) and all(v.ok for v in results.values()) and not problems
    if json_out:
        print_json(
            {"intact": intact, "out": str(out), "source": source, "unreadable": problems,
             "logs": {log_id: v.summary() for log_id, v in results.items()}}
        )  # fmt: skip
    else:
        console.print(f"{'OK' if intact else 'FAIL'}: report → {out}", markup=False)
    if not intact:
        raise typer.Exit(int(ExitCode.REJECTED))


# ----------------------------------------------------------------------------------------------
# pcfx approvals ...


def _book(servers: str, topics: Topics, serde: GatewaySerde) -> ApprovalBook:
    return read_approval_book(servers, topics.approvals, serde)


@approvals_app.command("list")
@handle_errors
def approvals_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include resolved approvals.")] = False,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    as_json: JsonOut = False,
) -> None:
    """Held transfers and their state (pending, approved, denied, overdue, resolved)."""
    servers = _bootstrap(bootstrap)
    registry = _registry(servers, prefix=topic_prefix)
    try:
        book = _book(servers, Topics(topic_prefix), GatewaySerde(registry))
    finally:
        registry.close()
    now = datetime.now(UTC)
    open_states = {RowStatus.PENDING, RowStatus.APPROVED, RowStatus.DENIED, RowStatus.OVERDUE}
    rows = [r for r in book.rows.values() if show_all or r.status(now) in open_states]
    if as_json:
        print_json(
            [
                {
                    "approvalId": r.approval.approval_id,
                    "status": r.status(now).value,
                    "recipient": r.approval.recipient_id,
                    "purpose": r.approval.purpose,
                    "footprint": r.approval.record_ref.pf_id,
                    "product": r.source.product_id,
                    "held": [{"path": p, "rule": rule} for p, rule in r.approval.held],
                    "requestedAt": r.approval.requested_at.isoformat(),
                    "expiresAt": r.approval.expires_at.isoformat(),
                    "decisions": [
                        {
                            "offset": c.offset,
                            "at": c.at,
                            "state": c.verdict.get("state"),
                            "signerId": c.verdict.get("signerId"),
                            "keyId": c.verdict.get("keyId"),
                            "reason": c.verdict.get("reason"),
                            "refused": r.refused.get(c.offset),
                        }
                        for c in r.candidates
                    ],
                    "resolution": dict(r.resolution) if r.resolution else None,
                }
                for r in rows
            ]
        )
        return
    table = approvals_table(rows, now, console.width)
    console.print(table)


def _decide(
    approval_id: str,
    approved: bool,
    key: Path,
    secret: bytes | None,
    reason: str,
    topic_prefix: str,
    bootstrap: str | None,
    mechanism_ref: str | None,
    conditions: list[str],
    json_out: bool,
) -> None:
    from producers.keys import load_signer

    officer = load_signer(key, secret)
    servers = _bootstrap(bootstrap)
    registry = _registry(servers, prefix=topic_prefix)
    try:
        written = write_decision(
            servers,
            Topics(topic_prefix).approvals,
            GatewaySerde(registry, registrar=kafka_registrar(servers, prefix=topic_prefix)),
            approval_id,
            approved=approved,
            officer=officer,
            reason=reason,
            now=datetime.now(UTC),
            mechanism_ref=mechanism_ref,
            conditions=conditions,
        )
    finally:
        registry.close()
    if json_out:
        print_json(
            {
                "approvalId": written.approval_id,
                "decision": "approved" if written.approved else "denied",
                "approver": written.approver,
                "keyId": written.key_id,
                "at": written.at,
            }
        )
        return
    console.print(
        f"OK: approval {written.approval_id} {'approved' if approved else 'denied'} by"
        f" {written.approver} (key {written.key_id}); the gateway checks the officer key's"
        " registration, then"
        f" {'releases the transfer' if approved else 'records the denial'} and audits it",
        markup=False,
    )


@approvals_app.command("approve")
@handle_errors
def approvals_approve(
    approval_id: Annotated[
        str, typer.Argument(help="The approval id, or a unique prefix (pcfx approvals list).")
    ],
    key: OfficerKeyOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why (goes into the audit log).")],
    mechanism_ref: Annotated[
        str | None, typer.Option(help="E.g. the security-assessment number relied on.")
    ] = None,
    condition: Annotated[
        list[str], typer.Option("--condition", help="A condition of the approval (repeat).")
    ] = [],  # noqa: B006
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    json_out: JsonOut = False,
) -> None:
    """Approve a held transfer, signed with your officer key: the gateway checks the key's
    registration (role officer), then releases the transfer (and audits both) in one
    transaction. The approver on record is the key's registered owner."""
    _decide(
        approval_id,
        True,
        key,
        passphrase(passphrase_file, passphrase_env),
        reason,
        topic_prefix,
        bootstrap,
        mechanism_ref,
        condition,
        json_out,
    )


@approvals_app.command("deny")
@handle_errors
def approvals_deny(
    approval_id: Annotated[
        str, typer.Argument(help="The approval id, or a unique prefix (pcfx approvals list).")
    ],
    key: OfficerKeyOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why (goes into the audit log).")],
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    json_out: JsonOut = False,
) -> None:
    """Deny a held transfer, signed with your officer key: it never goes; the denial is
    audited with the key's registered owner as the approver."""
    _decide(
        approval_id,
        False,
        key,
        passphrase(passphrase_file, passphrase_env),
        reason,
        topic_prefix,
        bootstrap,
        None,
        [],
        json_out,
    )


# ----------------------------------------------------------------------------------------------
# pcfx outbound ...


def _sealed_from_file(path: Path) -> Iterator[SealedMessage]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UnreadableInput(f"cannot read {path}: {exc}") from exc
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError as exc:
            raise UnreadableInput(f"{path} is not JSON: {exc}") from exc
        for item in items:
            yield SealedMessage.from_json(item)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield SealedMessage.from_bytes(line.encode())
            except TrustError as exc:
                raise TrustError(f"{path}:{number}: {exc.message}", reason="malformed") from exc


def _sealed_from_topic(servers: str, topic: str, prefix: str) -> Iterator[SealedMessage]:
    from gateway.runtime import partition_count, read_to_end

    registry = _registry(servers, prefix=prefix)
    try:
        serde = GatewaySerde(registry)
        count = partition_count(servers, topic)
        if count == 0:
            raise UnreadableInput(f"topic {topic} does not exist")
        for message in read_to_end(servers, [(topic, p) for p in range(count)]):
            yield sealed_from_datum(serde.decode(message.value() or b"", "SealedMessage"))
    finally:
        registry.close()


@outbound_app.command("dump")
@handle_errors
def outbound_dump(
    recipient: Annotated[str, typer.Option("--recipient", help="Recipient id.")],
    out: Annotated[Path, typer.Option("--out", help="JSON-lines file of sealed messages.")],
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    json_out: JsonOut = False,
) -> None:
    """Copy a recipient's sealed messages to a file (no key needed: they stay encrypted)."""
    servers = _bootstrap(bootstrap)
    topic = Topics(topic_prefix).outbound(recipient)
    lines = [m.to_bytes() for m in _sealed_from_topic(servers, topic, topic_prefix)]
    out.write_bytes(b"".join(line + b"\n" for line in lines))
    if json_out:
        print_json({"messages": len(lines), "topic": topic, "out": str(out)})
    else:
        console.print(f"OK: {len(lines)} sealed messages from {topic} → {out}", markup=False)


RecipientOpt = Annotated[str, typer.Option("--recipient", help="Your recipient id.")]
RecipientKeyOpt = Annotated[Path, typer.Option("--key", help="Your X25519 private key (PEM).")]
GatewayPubOpt = Annotated[
    Path, typer.Option("--gateway-pub", help="The gateway's public key (PEM).")
]
SourceArg = Annotated[
    Path | None, typer.Argument(help="A JSON-lines file of sealed messages (else the topic).")
]
TopicOpt = Annotated[
    str | None,
    typer.Option("--topic", help="Read this topic (default pcf.outbound.<recipient>)."),
]


def _outbound_messages(
    recipient: str, source: Path | None, topic: str | None, topic_prefix: str, bootstrap: str | None
) -> Iterator[SealedMessage]:
    if source is not None:
        return _sealed_from_file(source)
    return _sealed_from_topic(
        _bootstrap(bootstrap), topic or Topics(topic_prefix).outbound(recipient), topic_prefix
    )


def _format_of(message: SealedMessage) -> str:
    """How the message was sealed, for OK lines: a batch leaf or a single-shot record."""
    if message.version == 2 and message.proof is not None and len(message.proof) >= 16:
        index, size = int.from_bytes(message.proof[:8]), int.from_bytes(message.proof[8:16])
        return f"v2, leaf {index} of a batch of {size}"
    return f"v{message.version}, signed alone"


@outbound_app.command("verify")
@handle_errors
def outbound_verify(
    recipient: RecipientOpt,
    key: RecipientKeyOpt,
    gateway_pub: GatewayPubOpt,
    source: SourceArg = None,
    topic: TopicOpt = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
    json_out: JsonOut = False,
) -> None:
    """Check each message on its own: decrypt it and verify the gateway's signature (version 2:
    its inclusion proof up to the batch root the gateway signed; version 1: its own signature).
    Prints OK or FAIL (with the reason) per message, and no content."""
    private = load_recipient_private_key(
        key, passphrase=passphrase(passphrase_file, passphrase_env)
    )
    trusted = KeyRing.of(load_gateway_public_key(gateway_pub))
    say = _quiet if json_out else console.print
    count = failed = 0
    verdicts: list[dict[str, Any]] = []
    for message in _outbound_messages(recipient, source, topic, topic_prefix, bootstrap):
        try:
            open_message(message, recipient_id=recipient, private_key=private, trusted=trusted)
        except TrustError as exc:
            failed += 1
            verdicts.append({"messageId": message.message_id, "ok": False,
                             "reason": exc.reason, "message": exc.message})  # fmt: skip
            say(f"FAIL: {exc.reason}: {exc.message}", markup=False)
            continue
        count += 1
        verdicts.append(
            {"messageId": message.message_id, "ok": True, "format": _format_of(message)}
        )
        say(f"OK: {message.message_id} ({_format_of(message)})", markup=False)
    if json_out:
        print_json({"verified": count, "refused": failed, "messages": verdicts})
    say(
        f"{'OK' if not failed else 'FAIL'}: {count} messages verified, {failed} refused",
        markup=False,
    )
    if failed:
        raise typer.Exit(int(ExitCode.REJECTED))


@outbound_app.command("decrypt")
@handle_errors
def outbound_decrypt(
    recipient: RecipientOpt,
    key: RecipientKeyOpt,
    gateway_pub: GatewayPubOpt,
    source: SourceArg = None,
    topic: TopicOpt = None,
    field_key: Annotated[
        Path | None, typer.Option(help="Need-to-know key for encrypted fields (default: --key).")
    ] = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    footprint_only: Annotated[
        bool, typer.Option("--footprint-only", help="Print only the PACT footprint.")
    ] = False,
    topic_prefix: TopicPrefix = "",
    bootstrap: Bootstrap = None,
) -> None:
    """Verify the gateway signature and decrypt each message on its own (version 2, sealed per
    batch, and version 1, sealed alone); print PACT JSON, one per line."""
    private = load_recipient_private_key(
        key, passphrase=passphrase(passphrase_file, passphrase_env)
    )
    vault_key = (
        load_recipient_private_key(
            field_key, passphrase=passphrase(passphrase_file, passphrase_env)
        )
        if field_key
        else private
    )
    trusted = KeyRing.of(load_gateway_public_key(gateway_pub))
    count = failed = 0
    for message in _outbound_messages(recipient, source, topic, topic_prefix, bootstrap):
        try:
            opened = open_message(
                message, recipient_id=recipient, private_key=private, trusted=trusted
            )
        except TrustError as exc:
            failed += 1
            err_console.print(f"FAIL: {exc.reason}: {exc.message}", markup=False)
            continue
        count += 1
        envelope = dict(opened.envelope)
        vault = envelope.get("fieldVault")
        if isinstance(vault, str):
            import base64

            try:
                plain = hpke_open(
                    vault_key,
                    base64.b64decode(vault),
                    vault_context(recipient, str(envelope.get("decisionId"))),
                )
                envelope["decryptedFields"] = json.loads(plain)
            except (TrustError, ValueError):
                envelope["decryptedFields"] = None
        doc = envelope.get("footprint") if footprint_only else envelope
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")
    err_console.print(
        f"{'OK' if not failed else 'FAIL'}: {count} messages verified and decrypted,"
        f" {failed} refused",
        markup=False,
    )
    if failed:
        raise typer.Exit(int(ExitCode.REJECTED))
