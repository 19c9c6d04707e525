"""``pcfx keys`` and ``pcfx publish``: thin commands over the SDK (``producers.Publisher``).

Every command prints ``OK``/``FAIL`` lines and a summary, or one JSON document with ``--json``,
and takes its exit code from the result (``pcfx.console.ExitCode``): 0 everything acknowledged,
1 something rejected or not acknowledged (or the key's passphrase is wrong), 3 broker or
registry unavailable (nothing claimed as sent), 4 an input or key file could not be read at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pcf_exchange.contracts import SignerRole
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.pcfx.console import (
    ExitCode,
    console,
    err_console,
    handle_errors,
    print_json,
    progress,
)
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
from pcf_exchange.pcfx.tables import keys_table
from pcf_exchange.producers._input import Item, Kind
from pcf_exchange.producers._keydir import KeyDirectory, KeyState
from pcf_exchange.producers._keyops import registration, revocation
from pcf_exchange.producers._lifecycle import supersede
from pcf_exchange.producers._parallel import load_items_jobs
from pcf_exchange.producers._publisher import DEFAULT_BATCH_SIZE, Publisher, Topics
from pcf_exchange.producers._sequence import Ledger
from pcf_exchange.producers._summary import PublishSummary, Status
from pcf_exchange.producers.keys import (
    DEFAULT_OPERATOR_ID,
    KeyRole,
    Signer,
    default_key_dir,
    key_id_of,
    load_public_key,
    load_signer,
    new_key_pair,
    read_key_info,
)

__all__ = ["keys_app", "publish_app"]

keys_app = typer.Typer(
    help="Ed25519 signing keys: create them, register suppliers' keys (operator), revoke them.",
    no_args_is_help=True,
)
publish_app = typer.Typer(
    help="Validate, sign and publish footprints, bills of materials and emission factors.",
    no_args_is_help=True,
)

# --------------------------------------------------------------------------------------------
# Shared options

KeysTopic = Annotated[str, typer.Option("--keys-topic", help="The key registry topic.")]
Files = Annotated[
    list[Path], typer.Argument(help="Input files.", show_default=False, metavar="FILE...")
]
PrivateKey = Annotated[
    Path, typer.Option("--key", help="Private key file (PEM) that signs.", show_default=False)
]
SupplierId = Annotated[
    str,
    typer.Option(
        "--supplier",
        help="Your supplier id: the company URN your records name (a footprint's companyIds, "
        "a BOM's owner), the owner of --key.",
        show_default=False,
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Validate, sign and encode; send nothing.")]
Strict = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse a figure far outside its product category's plausible range (pcfx pcr"
        " show PACK); without it, a warning (the streams hold such a record for review).",
    ),
]
LedgerPath = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        help="Sequence ledger (default: $PCFX_LEDGER, else ~/.local/state/pcf-exchange/"
        "ledger.json).",
    ),
]
NoLedger = Annotated[
    bool,
    typer.Option("--no-ledger", help="Keep no ledger (unchanged records get newer sequences)."),
]
Jobs = Annotated[
    int,
    typer.Option(
        "--jobs",
        min=0,
        help="Processes for a JSON Lines file: N-1 read and check lines while this one signs "
        "and sends; 1 checks here; 0 (default): 2 for a file of 5,000 lines or more, else 1.",
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        min=1,
        help="Records per batch signature (one Ed25519 signature over a Merkle root); "
        "1 signs every record on its own.",
    ),
]
Topic = Annotated[str | None, typer.Option("--topic", help="Publish to this topic instead.")]
OperatorPublicKey = Annotated[
    Path | None,
    typer.Option(
        "--operator-public-key",
        help="Trust only key registrations signed by this operator key (PEM).",
    ),
]


def parse_when(value: str | None, option: str) -> datetime | None:
    """An option's ISO 8601 date-time (with a time zone) in UTC; ``None`` when not given."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"must be an ISO 8601 date-time such as 2026-01-01T00:00:00Z (got {value!r})",
            param_hint=option,
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(
            f"must carry a time zone, e.g. ...Z or +08:00 (got {value!r})", param_hint=option
        )
    return moment.astimezone(UTC)


def _ledger(path: Path | None, disabled: bool) -> Ledger:
    if disabled:
        return Ledger.in_memory()
    return Ledger(path) if path is not None else Ledger.default()


# --------------------------------------------------------------------------------------------
# pcfx keys


@keys_app.command("new")
@handle_errors
def keys_new(
    supplier: Annotated[
        str | None, typer.Option("--supplier", help="Create a key for this supplier id.")
    ] = None,
    operator: Annotated[
        bool, typer.Option("--operator", help="Create the platform operator's key.")
    ] = False,
    operator_id: Annotated[
        str, typer.Option("--operator-id", help="The operator's id on the exchange.")
    ] = DEFAULT_OPERATOR_ID,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir", help="Folder for the key files (default: ~/.config/pcf-exchange/keys)."
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    json_out: JsonOut = False,
) -> None:
    """Create an Ed25519 key pair: the private key (mode 0600) and the public key to register."""
    if (supplier is None) == (not operator):
        raise typer.BadParameter("give exactly one of --supplier ID or --operator")
    owner, role = (
        (operator_id, KeyRole.OPERATOR) if operator else (supplier or "", KeyRole.SUPPLIER)
    )
    secret = passphrase(passphrase_file, passphrase_env)
    files = new_key_pair(owner, out_dir or default_key_dir(), passphrase=secret, role=role)
    if json_out:
        print_json(
            {
                "owner": files.owner,
                "role": files.role.value,
                "keyId": files.key_id,
                "privateKey": str(files.private_key),
                "publicKey": str(files.public_key),
                "encrypted": bool(secret),
            }
        )
        return
    console.print(f"[green]OK[/]: {role.value} key [bold]{files.key_id}[/] for '{owner}'")
    console.print(f"  private key: {files.private_key} (mode 600, keep it secret)")
    console.print(f"  public key:  {files.public_key}")
    if not secret:
        console.print(
            "[yellow]The private key is not encrypted[/]: consider --passphrase-file or "
            "PCFX_KEY_PASSPHRASE."
        )
    if role is KeyRole.SUPPLIER:
        console.print(
            "Next: send the public key to the platform operator, who runs "
            f"'pcfx keys register --public-key {files.public_key.name} ...'."
        )
    else:
        console.print(
            "Configure the streams with the operator public key; only records it signs on "
            "pcf.keys and pcf.factors are trusted."
        )


@keys_app.command("show")
@handle_errors
def keys_show(
    path: Annotated[Path, typer.Argument(help="A key file.")], json_out: JsonOut = False
) -> None:
    """Say whose key a file holds (owner, role, key id)."""
    info = read_key_info(path)
    key_id = info.key_id
    with contextlib.suppress(Exception):
        key_id = key_id_of(load_public_key(path))
    data = {
        "file": str(path),
        "owner": info.owner,
        "role": info.role.value if info.role else None,
        "keyId": key_id,
    }
    if json_out:
        print_json(data)
        return
    for name, value in data.items():
        console.print(f"{name:>6}: {value if value is not None else '(not stated)'}")


def _operator_publisher(
    key: Path,
    *,
    secret: bytes | None,
    bootstrap: str | None,
    registry_url: str | None,
    topics: Topics,
    dry_run: bool = False,
) -> Publisher:
    signer = load_signer(key, secret, role=KeyRole.OPERATOR)
    return Publisher(
        None if dry_run else bootstrap_servers(bootstrap),
        signer=signer,
        registry=registry_url,
        topics=topics,
        ledger=Ledger.default(),
        dry_run=dry_run,
    )


@keys_app.command("register")
@handle_errors
def keys_register(
    key: PrivateKey,
    public_key: Annotated[
        Path,
        typer.Option("--public-key", help="The supplier's public key file.", show_default=False),
    ],
    supplier: Annotated[
        str | None,
        typer.Option(
            "--supplier", help="Supplier id (default: the one the public key file names)."
        ),
    ] = None,
    valid_from: Annotated[
        str | None, typer.Option("--valid-from", help="ISO 8601 (default: now).")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option("--valid-until", help="ISO 8601 (default: open-ended).")
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            help=(
                "A product-id URN prefix the supplier may declare, e.g. urn:pact:acme.cn"
                " (covers urn:pact:acme.cn:... and urn:pact:acme.cn/...); repeatable,"
                " required for company keys."
            ),
            show_default=False,
        ),
    ] = None,
    role: Annotated[
        SignerRole,
        typer.Option(
            "--role",
            help="What the key may sign: company (footprints, BOMs), officer (approvals of held"
            " transfers), service (the streams' results on pcf.products).",
        ),
    ] = SignerRole.COMPANY,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    keys_topic: KeysTopic = "pcf.keys",
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Publish a supplier's public key to the key registry, signed with the operator key:
    with the product-id namespaces it may declare (a newer registration replaces them)."""
    keys_topic = topic_prefix + keys_topic
    namespaces = list(namespace or ())
    if role is SignerRole.COMPANY and not namespaces:
        raise typer.BadParameter(
            "a company key must be registered with the product ids it may declare: give"
            " --namespace URN (repeatable), e.g. --namespace urn:pact:acme.cn; the streams"
            " refuse (not_owner) footprints and BOMs outside them",
            param_hint="--namespace",
        )
    start, end = parse_when(valid_from, "--valid-from"), parse_when(valid_until, "--valid-until")
    declared = read_key_info(public_key).owner
    supplier_id = supplier or declared
    if supplier_id is None:
        raise typer.BadParameter(
            "the public key file does not name its supplier: give --supplier",
            param_hint="--supplier",
        )
    if declared is not None and supplier is not None and declared != supplier:
        raise TrustError(
            f"public key file '{public_key}' belongs to '{declared}', not to '{supplier}'",
            reason="key_supplier_mismatch",
        )
    pub = load_public_key(public_key)
    with _operator_publisher(
        key,
        secret=passphrase(passphrase_file, passphrase_env),
        bootstrap=bootstrap,
        registry_url=registry_url,
        topics=Topics(keys=keys_topic, schemas=Topics.prefixed(topic_prefix).schemas),
    ) as publisher:
        record = registration(
            supplier_id,
            pub,
            registered_by=publisher.signer.owner,
            valid_from=start,
            valid_until=end,
            namespaces=namespaces,
            role=role,
        )
        directory = KeyDirectory.read(
            publisher.bootstrap or "",
            publisher.serde,
            topic=keys_topic,
            operator_key=publisher.signer.public_key,
        )
        clash = directory.status(supplier_id, record.key_id)
        if clash.state is KeyState.OTHER_SUPPLIER:
            raise TrustError(clash.detail, reason="key_supplier_mismatch")
        known = directory.lookup(supplier_id, record.key_id)
        summary = publisher.publish_key(record, after_sequence=known.sequence if known else -1)
    _finish(
        summary,
        json_out,
        what=f"key {record.key_id} of '{supplier_id}' registered with role {role.value}",
        single=True,
    )


@keys_app.command("revoke")
@handle_errors
def keys_revoke(
    key: PrivateKey,
    supplier: SupplierId,
    key_id: Annotated[
        str, typer.Option("--key-id", help="The key id to revoke.", show_default=False)
    ],
    at: Annotated[
        str | None,
        typer.Option("--at", help="Revoked from this ISO 8601 time on (default: now)."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="The supplier's public key, if its registration is not on the key topic.",
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    keys_topic: KeysTopic = "pcf.keys",
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Revoke a supplier key from a given time on (a newer record with revokedAt)."""
    keys_topic = topic_prefix + keys_topic
    moment = parse_when(at, "--at") or datetime.now(UTC)
    with _operator_publisher(
        key,
        secret=passphrase(passphrase_file, passphrase_env),
        bootstrap=bootstrap,
        registry_url=registry_url,
        topics=Topics(keys=keys_topic, schemas=Topics.prefixed(topic_prefix).schemas),
    ) as publisher:
        directory = KeyDirectory.read(
            publisher.bootstrap or "",
            publisher.serde,
            topic=keys_topic,
            operator_key=publisher.signer.public_key,
        )
        current = directory.lookup(supplier, key_id)
        if current is not None:
            record = revocation(current, at=moment, revoked_by=publisher.signer.owner)
            after = current.sequence
        elif public_key is not None:
            pub = load_public_key(public_key)
            if key_id_of(pub) != key_id:
                raise TrustError(
                    f"--public-key has key id {key_id_of(pub)}, not {key_id}", reason="bad_key"
                )
            base = registration(
                supplier, pub, registered_by=publisher.signer.owner, valid_from=moment
            )
            record = revocation(base, at=moment, revoked_by=publisher.signer.owner)
            after = -1
        else:
            raise TrustError(
                f"no registration of key {key_id} for '{supplier}' signed by this operator key "
                f"is on '{keys_topic}'",
                reason="unknown_key",
                hint="Give --public-key to revoke a key that was never registered here.",
            )
        summary = publisher.publish_key(record, after_sequence=after)
    _finish(
        summary,
        json_out,
        what=f"key {key_id} of '{supplier}' revoked from {moment.isoformat()}",
        single=True,
    )


@keys_app.command("list")
@handle_errors
def keys_list(
    supplier: Annotated[str | None, typer.Option("--supplier", help="Only this supplier.")] = None,
    operator_public_key: OperatorPublicKey = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    keys_topic: KeysTopic = "pcf.keys",
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """List the key registrations on the key topic (latest record per key)."""
    keys_topic = topic_prefix + keys_topic
    from pcf_exchange.contracts import (
        AvroSerde,
        HttpSchemaRegistry,
        KafkaSchemaRegistry,
        SchemaRegistry,
    )

    servers = bootstrap_servers(bootstrap)
    operator = load_public_key(operator_public_key) if operator_public_key else None
    registry: SchemaRegistry = (
        HttpSchemaRegistry(registry_url)
        if registry_url
        else KafkaSchemaRegistry(servers, prefix=topic_prefix)
    )
    try:
        directory = KeyDirectory.read(
            servers, AvroSerde(registry), topic=keys_topic, operator_key=operator
        )
    finally:
        close = getattr(registry, "close", None)
        if close is not None:
            close()
    rows: list[dict[str, Any]] = []
    for (owner, kid), record in sorted(directory.registrations.items()):
        if supplier is not None and owner != supplier:
            continue
        status = directory.status(owner, kid)
        k = record.key
        rows.append(
            {
                "supplierId": owner,
                "keyId": kid,
                "state": status.state.value,
                "validFrom": k.valid_from.isoformat(),
                "validUntil": k.valid_until.isoformat() if k.valid_until else None,
                "revokedAt": k.revoked_at.isoformat() if k.revoked_at else None,
                "role": k.role.value,
                "namespaces": list(k.namespaces),
                "registeredBy": k.registered_by,
                "signedBy": f"{record.supplier_id}/{record.key_id}",
                "sequence": record.sequence,
            }
        )
    if json_out:
        print_json({"keys": rows, "skipped": directory.skipped})
        return
    table = keys_table(rows, console.width)
    console.print(table)
    if directory.skipped:
        console.print(
            f"[yellow]{directory.skipped} record(s) skipped[/] (not decodable, or not signed by "
            "the operator key given)."
        )


# --------------------------------------------------------------------------------------------
# pcfx publish


def _load(kind: Kind, files: Iterable[Path], jobs: int = 1, strict: bool = False) -> Iterator[Item]:
    for path in files:
        yield from load_items_jobs(kind, path, jobs=jobs, strict=strict)


def _check_key(publisher: Publisher, keys_topic: str, operator_key: Path | None) -> str | None:
    """Refuse a key the registry topic gives to someone else, or revoked/expired; return a
    warning for a key that is not registered (yet)."""
    status = publisher.key_status(
        keys_topic=keys_topic,
        operator_key=load_public_key(operator_key) if operator_key else None,
    )
    if status.state is KeyState.OTHER_SUPPLIER:
        raise TrustError(
            status.detail + "; nothing was sent",
            reason="key_supplier_mismatch",
            hint="Sign with your own key, or ask the operator to register it for your id.",
        )
    if status.state in (KeyState.REVOKED, KeyState.EXPIRED, KeyState.NOT_YET_VALID):
        raise TrustError(
            status.detail + "; the streams would reject every record, nothing was sent",
            reason="revoked_key",
            hint="Create a new key (pcfx keys new) and have the operator register it.",
        )
    if status.state is KeyState.UNKNOWN:
        return (
            status.detail
            + ": the streams will reject these records until the operator registers it"
        )
    return None


def _progress(enabled: bool, label: str) -> contextlib.AbstractContextManager[Any]:
    """A bar on stderr while records are checked or sent (:func:`pcfx.console.progress`)."""
    return progress(enabled, label)


@dataclass(frozen=True)
class _Options:
    """The options the publish commands (footprints, bom, factors) share; factors have no key
    check on pcf.keys, no --strict and no --supersedes, so those keep their defaults."""

    dry_run: bool
    json_out: bool
    bootstrap: str | None
    registry_url: str | None
    ledger: Path | None
    no_ledger: bool
    batch_size: int
    topic: str | None
    topic_prefix: str
    keys_topic: str | None = None
    operator_public_key: Path | None = None
    strict: bool = False
    supersedes: list[Path] | None = None
    jobs: int = 1

    @classmethod
    def of(cls, parameters: Mapping[str, Any]) -> _Options:
        """The shared options from a command's parameters (its ``locals()``), by name."""
        return cls(**{f.name: parameters[f.name] for f in fields(cls) if f.name in parameters})


_TOPIC_FIELD = {"footprints": "declared", "boms": "bom", "factors": "factors"}
"""Which :class:`producers.Topics` field each kind is sent to."""


def _publish(kind: Kind, files: list[Path], signer: Signer, opts: _Options) -> None:
    """The one body of ``publish footprints|bom|factors``: check the signer's key on pcf.keys,
    load the files, validate, sign and send them with a progress bar, print the summary."""
    topic, supersedes, dry_run, json_out = opts.topic, opts.supersedes, opts.dry_run, opts.json_out
    topic_prefix, keys_topic = opts.topic_prefix, opts.keys_topic
    topics = Topics.prefixed(topic_prefix)
    if keys_topic is not None:
        keys_topic = topic_prefix + keys_topic
    if topic is not None:
        topics = Topics(**{**topics.__dict__, _TOPIC_FIELD[kind]: topic})
    with Publisher(
        None if dry_run else bootstrap_servers(opts.bootstrap),
        signer=signer,
        registry=opts.registry_url,
        topics=topics,
        ledger=_ledger(opts.ledger, opts.no_ledger),
        batch_size=opts.batch_size,
        dry_run=dry_run,
        strict_pcr=opts.strict,
    ) as publisher:
        warning = None
        if not dry_run and keys_topic is not None:
            warning = _check_key(publisher, keys_topic, opts.operator_public_key)
        if warning and not json_out:
            err_console.print(f"[yellow]WARN[/]: {warning}")
        # (--supersedes edits the new footprints as models after reading, and the PCR gate
        # runs on what it made: the files are read in this process then)
        jobs = 1 if supersedes else opts.jobs
        items: Iterable[Item] = _load(kind, files, jobs, opts.strict)
        if supersedes:
            items = supersede(list(_load(kind, supersedes)), list(items))
        show = not json_out and err_console.is_terminal
        with _progress(show, f"{'checking' if dry_run else 'publishing'} {kind}") as tick:
            summary = publisher.publish_many(items, progress=tick)
    target = getattr(topics, _TOPIC_FIELD[kind])
    _finish(
        summary,
        json_out,
        what=f"{kind} {'valid' if dry_run else 'acknowledged on ' + target}",
        warning=warning,
    )


_SHOWN = 50


def _finish(
    summary: PublishSummary,
    json_out: bool,
    *,
    what: str,
    warning: str | None = None,
    single: bool = False,
) -> None:
    if json_out:
        data: dict[str, Any] = summary.to_dict()
        if warning:
            data["warning"] = warning
        print_json(data)
    elif single and summary.ok and len(summary.outcomes) == 1:
        (outcome,) = summary.outcomes
        console.print(
            f"[green]OK[/]: {what} (sequence {outcome.sequence}, "
            f"{outcome.topic}[{outcome.partition}]@{outcome.offset})",
            highlight=False,
        )
    else:
        _print_summary(summary, what)
    if summary.unreadable_files:
        raise typer.Exit(int(ExitCode.UNREADABLE_INPUT))
    if not summary.ok:
        raise typer.Exit(int(ExitCode.REJECTED))


def _print_summary(summary: PublishSummary, what: str) -> None:
    bad = [o for o in summary.outcomes if not o.ok]
    for outcome in bad[:_SHOWN]:
        label = "FAIL" if outcome.status is Status.REJECTED else "NOT ACKNOWLEDGED"
        console.print(f"[red]{label}[/] {outcome.ref}", markup=True, highlight=False)
        if outcome.violations:
            for v in outcome.violations:
                text = str(v) if v.path else v.message + (f" (got {v.got})" if v.got else "")
                console.print(f"    {text}", markup=False, highlight=False)
        elif outcome.message:
            console.print(f"    {outcome.message}", markup=False, highlight=False)
    if len(bad) > _SHOWN:
        console.print(f"... and {len(bad) - _SHOWN} more (use --json for all)")
    notes = [o for o in summary.outcomes if o.ok and o.note]
    for outcome in notes[:_SHOWN]:
        console.print(f"[cyan]NOTE[/] {outcome.ref}: {outcome.note}", highlight=False)
    warned = sum(1 for o in summary.outcomes if o.warnings)
    table = Table(title="summary", show_header=True)
    table.add_column("outcome")
    table.add_column("records", justify="right")
    if summary.dry_run:
        table.add_row("valid (dry run, not sent)", str(summary.valid))
    else:
        table.add_row("sent (acknowledged)", str(summary.sent))
    if summary.skipped:
        table.add_row("already published (skipped)", str(summary.skipped))
    table.add_row("rejected", str(summary.rejected))
    if not summary.dry_run:
        table.add_row("not acknowledged", str(summary.failed))
    if warned:
        table.add_row("with warnings (sent anyway)", str(warned))
    for kind, count in summary.by_error().items():
        table.add_row(f"  error: {kind}", str(count))
    console.print(table)
    if summary.unreadable_files:
        console.print(f"[red]FAIL[/]: unreadable: {', '.join(summary.unreadable_files)}")
    ok_count = summary.valid if summary.dry_run else summary.sent
    if summary.ok:
        console.print(f"[green]OK[/]: {ok_count} {what}")
    else:
        verdict = "invalid" if summary.dry_run else "not sent"
        console.print(
            f"[red]FAIL[/]: {len(bad)} of {len(summary.outcomes)} records {verdict}; "
            f"{ok_count} {what}"
        )


@publish_app.command("footprints")
@handle_errors
def publish_footprints(
    files: Files,
    key: PrivateKey,
    supplier: SupplierId,
    supersedes: Annotated[
        list[Path] | None,
        typer.Option(
            "--supersedes",
            help="Footprints (files) the new ones replace, paired by product id: each is "
            "republished as Deprecated and its id added to the new one's precedingPfIds.",
        ),
    ] = None,
    dry_run: DryRun = False,
    strict: Strict = False,
    json_out: JsonOut = False,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    ledger: LedgerPath = None,
    no_ledger: NoLedger = False,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    topic: Topic = None,
    keys_topic: KeysTopic = "pcf.keys",
    operator_public_key: OperatorPublicKey = None,
    topic_prefix: TopicPrefix = "",
    jobs: Jobs = 0,
) -> None:
    """Publish PACT v3 footprints (JSON, JSON Lines, CSV) to pcf.declared, keyed by product id."""
    signer = load_signer(key, passphrase(passphrase_file, passphrase_env), owner=supplier)
    _publish("footprints", files, signer, _Options.of(locals()))


@publish_app.command("bom")
@handle_errors
def publish_bom(
    files: Files,
    key: PrivateKey,
    supplier: SupplierId,
    dry_run: DryRun = False,
    strict: Strict = False,
    json_out: JsonOut = False,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    ledger: LedgerPath = None,
    no_ledger: NoLedger = False,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    topic: Topic = None,
    keys_topic: KeysTopic = "pcf.keys",
    operator_public_key: OperatorPublicKey = None,
    topic_prefix: TopicPrefix = "",
) -> None:
    """Publish bills of materials (JSON) to pcf.bom, signed by the product's owner."""
    signer = load_signer(key, passphrase(passphrase_file, passphrase_env), owner=supplier)
    _publish("boms", files, signer, _Options.of(locals()))


@publish_app.command("factors")
@handle_errors
def publish_factors(
    files: Files,
    key: PrivateKey,
    dry_run: DryRun = False,
    json_out: JsonOut = False,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    ledger: LedgerPath = None,
    no_ledger: NoLedger = False,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    topic: Topic = None,
    topic_prefix: TopicPrefix = "",
) -> None:
    """Publish background emission factors (JSON, CSV) to pcf.factors (operator key)."""
    signer = load_signer(key, passphrase(passphrase_file, passphrase_env), role=KeyRole.OPERATOR)
    _publish("factors", files, signer, _Options.of(locals()))
