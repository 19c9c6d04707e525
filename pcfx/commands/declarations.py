"""``pcfx declarations art7|cbam|study``: build a declaration the EU asks for from a product's
footprint and release it through the gateway.

Each command reads the footprint (PACT v3 JSON, or the ``pcf.products`` roll-up as JSON), an
input file (JSON or YAML: what the footprint does not say), and optionally the certificates to
cite from a registry snapshot (``pcfx certificates snapshot``, verified with the operator's key).
It builds the document with the pure builders of :mod:`gateway.declarations` and writes to
``--out``: the declaration's JSON, a printable HTML page, and for Art. 7 the battery passport's
carbon-footprint part (``*.passport.json``).

Then, unless ``--dry-run``, it releases the declaration to ``--recipient`` as an outbound transfer
like any other: :class:`gateway.Gateway` decides it under the policy for the purpose, seals it
to the recipient with the gateway key and appends one audit entry to the audit log
(``--audit-log``, a JSON-lines chain; checked intact under the gateway key before it is
extended, and checkpointed after each release). The sealed message is written as
``*.sealed.jsonl`` for the recipient (``pcfx outbound decrypt`` opens it). A declaration the
policy blocks or holds is audited too and nothing is sealed (exit code 1; a held one names the
approval it waits for).

**Held declarations.** A held declaration's exact record is written as ``*.held.json``
(:class:`gateway.declarations.HeldDeclaration`). With ``--kafka`` its approval request goes onto
``pcf.approvals`` in the same transaction as its ``transfer_held`` entry (source
:data:`~gateway.declarations.DECLARATION_SOURCE`, the declaration id as its product), so a
compliance officer sees it in ``pcfx approvals list`` and decides it with the signed path every
held transfer has (``pcfx approvals approve|deny ID --key OFFICER.key.pem``). ``pcfx declarations
release --approval ID`` then judges the decisions as the gateway runner does (only an officer key
the operator registered, for this very request; each refused decision is audited as
``approval_refused``) and commits, in one transaction, the approval's entry, the sealed
declaration (whose ``transfer`` entry names the approval) and the ``resolved`` event, so it is
never released twice. A file-mode release (no ``--kafka``) has no approvals queue: its hold is
audited and the command says to release onto the exchange to queue it.

With ``--kafka`` the same release goes onto the exchange's topics, as the gateway runner's do:
one :class:`~gateway.runtime.KafkaTransferSink` transaction holds the sealed message on
``pcf.outbound.<recipient>`` and the audit entry (batch-sealed) and checkpoint on the audit
topics, under the chain ``pcfx-declarations``; the chain is resumed with
:func:`gateway.audit.resume_chain` (only from the gateway key's own checkpoints and seals), so a
chain someone else wrote to is refused, never extended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.table import Table

from pcf_exchange.contracts import EmissionFactor, load_factors
from pcf_exchange.contracts._jsonio import loads
from pcf_exchange.contracts.certification import Snapshot
from pcf_exchange.contracts.errors import ContractError, TrustError
from pcf_exchange.contracts.keyfiles import key_id_of, load_ed25519_public_key
from pcf_exchange.gateway._keys import derive_secret, load_gateway_key, load_secret
from pcf_exchange.gateway._pipeline import (
    Gateway,
    GatewaySecrets,
    InMemoryTransferSink,
    PreparedTransfer,
)
from pcf_exchange.gateway._sealing import KeyRing
from pcf_exchange.gateway.audit import ChainHead, JsonLinesAuditStore, check_audit_log
from pcf_exchange.gateway.declarations import (
    DECLARATION_SOURCE,
    DEFAULT_PURPOSES,
    Art7Declaration,
    CertificateRef,
    Declaration,
    HeldDeclaration,
    ProductSource,
    Release,
    build_art7,
    build_cbam,
    build_study,
    certificate_refs,
    doc_id,
    dump_json,
    read_art7_input,
    read_cbam_input,
    read_source,
    read_study_input,
    release,
    render_html,
)
from pcf_exchange.gateway.policy import CounterState
from pcf_exchange.gateway.policy import load_policy as load_policy_file
from pcf_exchange.pcfx.console import ExitCode, console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    Bootstrap,
    JsonOut,
    PassphraseEnv,
    PassphraseFile,
    TopicPrefix,
    passphrase,
    with_options,
)
from pcf_exchange.producers.factors import SOURCED_FACTORS

__all__ = ["declarations_app"]

declarations_app = typer.Typer(
    help="Declarations the EU asks for (Battery Regulation Art. 7, CBAM, GB/T 24067 study"
    " report), built from a footprint and released only through the gateway.",
    no_args_is_help=True,
)

AUDIT_LOG_ID = "default"
"""The log id of the declarations' audit chain. A JSON-lines audit file
(:class:`gateway.audit.JsonLinesAuditStore`) holds one log, which ``pcfx audit verify --file``
reads as log ``default``; the chain's checkpoints are signed under that id so they verify."""
KAFKA_LOG_ID = "pcfx-declarations"
"""The declarations' audit chain on ``pcf.audit`` (``--kafka``): one transactional writer (its
transactional id fences an older one), resumed only from what the gateway key signed."""

Footprint = Annotated[
    Path,
    typer.Argument(
        help="The product's footprint: PACT v3 JSON, or its pcf.products roll-up as JSON.",
        show_default=False,
    ),
]
Out = Annotated[
    Path, typer.Option("--out", help="Directory to write the documents to.", show_default=False)
]
Recipient = Annotated[
    str | None,
    typer.Option("--recipient", help="The policy's recipient id (required unless --dry-run)."),
]
Purpose = Annotated[
    str | None,
    typer.Option("--purpose", help="The policy purpose (default: the declaration's own)."),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Build and write locally; release nothing.")
]
PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", help="Policy YAML (default: the shipped example).")
]
GatewayKeyOpt = Annotated[
    Path | None,
    typer.Option("--gateway-key", help="The gateway's Ed25519 key (PEM); required to release."),
]
PseudonymOpt = Annotated[
    Path | None,
    typer.Option(
        "--pseudonym-secret",
        help="Secret file for pseudonyms (default: derived from the gateway key).",
    ),
]
AuditLog = Annotated[
    Path,
    typer.Option(
        "--audit-log",
        envvar="PCFX_DECLARATIONS_AUDIT",
        help="The declarations' audit log (JSON lines; created if missing).",
    ),
]
Snap = Annotated[
    Path | None,
    typer.Option(
        "--snapshot",
        help="A certificate registry snapshot (pcfx certificates snapshot) to cite from.",
    ),
]
OperatorKey = Annotated[
    Path | None,
    typer.Option(
        "--operator-key",
        envvar="PCFX_OPERATOR_KEY",
        help="The operator's public key (PEM) that signed the snapshot.",
    ),
]
Certs = Annotated[
    list[str],
    typer.Option(
        "--certificate", help="A certificate id to cite (valid for this footprint); repeatable."
    ),
]
Kafka = Annotated[
    bool,
    typer.Option(
        "--kafka",
        help="Release onto the exchange's topics (pcf.outbound.<recipient>, audit chain"
        f" '{KAFKA_LOG_ID}' on pcf.audit, one transaction) instead of files.",
    ),
]
_DEFAULT_AUDIT = Path("~/.local/state/pcf-exchange/declarations-audit.jsonl")


def _unreadable(message: str) -> ContractError:
    error = ContractError(message)
    error.code = "unreadable_input"
    error.hint = "Check the path and the file's format (JSON, or YAML for input files)."
    return error


def _read(path: Path, *, yaml_ok: bool) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _unreadable(f"cannot read '{path}': {exc.strerror or exc}") from None
    try:
        if yaml_ok and path.suffix.lower() in {".yaml", ".yml"}:
            return yaml.safe_load(text)
        return loads(text, subject=str(path))
    except yaml.YAMLError as exc:
        raise _unreadable(f"'{path}' is not YAML: {exc}") from None


def _certificates(
    source: ProductSource, snapshot: Path | None, operator_key: Path | None, ids: list[str]
) -> tuple[CertificateRef, ...]:
    if not ids:
        return ()
    if snapshot is None or operator_key is None:
        raise typer.BadParameter(
            "citing certificates needs --snapshot and --operator-key (the registry they are"
            " checked against)",
            param_hint="--certificate",
        )
    public = load_ed25519_public_key(operator_key)
    _loaded, registry = Snapshot.verify(_read(snapshot, yaml_ok=False), {key_id_of(public): public})
    now = datetime.now(UTC)
    return certificate_refs(source, [registry.status(i, now) for i in ids])


def _write(doc: Declaration, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{doc.doc_type}-{doc_id(doc)}"
    files = {"json": f"{stem}.json", "html": f"{stem}.html"}
    Path(files["json"]).write_text(dump_json(doc.to_json()), encoding="utf-8")
    meta = [f"issued {doc.issued_at.isoformat()}", f"id {doc_id(doc)}"]
    Path(files["html"]).write_text(render_html(doc.title, doc.sections(), meta=meta), "utf-8")
    if isinstance(doc, Art7Declaration):
        files["passport"] = f"{stem}.passport.json"
        Path(files["passport"]).write_text(dump_json(doc.passport()), encoding="utf-8")
    return files


def _file_gateway(loaded: Any, secrets: GatewaySecrets, audit_log: Path, now: datetime) -> Gateway:
    """A gateway whose sink writes the audit chain to a JSON-lines file (checked intact under
    the gateway key before it is extended)."""
    path = audit_log.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    store = JsonLinesAuditStore(path)
    entries, checkpoints = store.entries(), store.checkpoints()
    check = check_audit_log(entries, checkpoints, KeyRing.of(secrets.signer.public_key))
    if not check.ok:
        raise TrustError(
            f"audit log {path}: {check.summary()}; refusing to extend it",
            reason="audit_log_tampered",
            hint="Review it with 'pcfx audit verify --file', then start a new log.",
        )
    return Gateway(
        loaded,
        replace(secrets, log_id=AUDIT_LOG_ID),
        InMemoryTransferSink(audit=store),
        counters=CounterState.empty(now.year, salt=derive_secret(secrets.signer, "counters")),
        head=ChainHead.of(entries),
    )


@dataclass(frozen=True)
class _ApprovalsQueue:
    """``pcf.approvals`` as the declarations see it: requests in, decisions read back."""

    servers: str
    topics: Any
    """:class:`contracts.topics.TopicNames` of the exchange."""
    serde: Any
    """The gateway's :class:`~gateway.runtime._avro.GatewaySerde`."""

    def event(self, datum: dict[str, Any]) -> Any:
        """An ``ApprovalEvent`` encoded for the sink's transaction (``Produced``)."""
        from pcf_exchange.gateway.runtime._sink import Produced

        topic = self.topics.approvals
        return Produced(
            topic, self.serde.encode(topic, "ApprovalEvent", datum), datum["approvalId"].encode()
        )

    def requested(self, prepared: PreparedTransfer, declaration_id: str) -> list[Any]:
        """The approval request of a held declaration: its source is the declarations' chain,
        the held entry's sequence number and the declaration id (the record waits in the
        ``*.held.json`` file)."""
        from pcf_exchange.gateway._codec import HeldSource, requested_event

        assert prepared.approval is not None
        source = HeldSource(
            KAFKA_LOG_ID, DECLARATION_SOURCE, 0, prepared.entries[0].seq, declaration_id
        )
        at = prepared.approval.requested_at.isoformat()
        return [self.event(requested_event(prepared.approval, source, at=at))]

    def book(self) -> Any:
        """Every approval on the topic (:class:`~gateway.runtime._approvals_log.ApprovalBook`),
        each decision with the broker's append time (the officer key's validity is judged
        then)."""
        from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

        from pcf_exchange.contracts.kafka_client import read_to_end
        from pcf_exchange.gateway._approvals_log import ApprovalBook

        book = ApprovalBook()
        for message in read_to_end(self.servers, self.topics.approvals):
            kind, millis = message.timestamp()
            appended = (
                datetime.fromtimestamp(millis / 1000, UTC)
                if kind == TIMESTAMP_LOG_APPEND_TIME
                else None
            )
            book.apply(
                self.serde.decode(message.value() or b"", "ApprovalEvent"),
                offset=message.offset(),
                appended_at=appended,
            )
        return book


@contextlib.contextmanager
def _kafka_gateway(
    loaded: Any,
    secrets: GatewaySecrets,
    recipient: str,
    bootstrap: str | None,
    prefix: str,
    now: datetime,
) -> Iterator[tuple[Gateway, _ApprovalsQueue]]:
    """A gateway on the exchange's topics: the audit chain ``pcfx-declarations`` resumed from
    ``pcf.audit`` (:func:`gateway.audit.resume_chain`), one transaction per release; and the
    approvals queue (``pcf.approvals``) a held declaration's request goes to."""
    from pcf_exchange.contracts import KafkaSchemaRegistry
    from pcf_exchange.contracts.topics import TOPICS, TopicNames, ensure_topics
    from pcf_exchange.gateway.audit import resume_chain
    from pcf_exchange.gateway.runtime import KafkaAuditStore, KafkaTransferSink
    from pcf_exchange.gateway.runtime._avro import GatewaySerde, kafka_registrar
    from pcf_exchange.pcfx.settings import bootstrap_servers

    servers = bootstrap_servers(bootstrap)
    topics = TopicNames(prefix)
    ensure_topics(
        servers,
        [
            (topics.audit, TOPICS["pcf.audit"], 1),
            (topics.checkpoints, TOPICS["pcf.audit.checkpoints"], 1),
            (topics.outbound(recipient), TOPICS["pcf.outbound."], 1),
            (topics.approvals, TOPICS["pcf.approvals"], 1),
        ],
    )
    registry = KafkaSchemaRegistry(servers, prefix=prefix)
    sink: KafkaTransferSink | None = None
    try:
        serde = GatewaySerde(registry, registrar=kafka_registrar(servers, prefix=prefix))
        serde.ensure(
            [
                (topics.audit, "AuditLogEntry"),
                (topics.checkpoints, "AuditLogCheckpoint"),
                (topics.outbound(recipient), "SealedMessage"),
                (topics.approvals, "ApprovalEvent"),
            ]
        )
        sink = KafkaTransferSink(
            servers,
            topics=topics,
            serde=serde,
            log_id=KAFKA_LOG_ID,
            transactional_id=f"{prefix}pcfx-declarations",
            signer=secrets.signer,
        )
        sink.open()  # fences an older writer of the chain before it is read back
        store = KafkaAuditStore(servers, topics=topics, serde=serde, log_id=KAFKA_LOG_ID)
        check = resume_chain(
            KAFKA_LOG_ID,
            store.entries(),
            store.checkpoints(),
            KeyRing.of(secrets.signer.public_key),
            topic=topics.audit,
        )
        assert check.head is not None
        gateway = Gateway(
            loaded,
            replace(secrets, log_id=KAFKA_LOG_ID),
            sink,
            counters=CounterState.empty(now.year, salt=derive_secret(secrets.signer, "counters")),
            head=check.head,
        )
        yield gateway, _ApprovalsQueue(servers, topics, serde)
    finally:
        if sink is not None:
            sink.close()
        registry.close()


def _release(
    doc: Declaration,
    *,
    out: Path,
    recipient: str,
    purpose: str,
    policy: Path | None,
    gateway_key: Path | None,
    secret_passphrase: bytes | None,
    pseudonym_secret: Path | None,
    audit_log: Path,
    kafka: bool,
    bootstrap: str | None,
    prefix: str,
) -> tuple[Release, str | None]:
    if gateway_key is None:
        raise typer.BadParameter("releasing needs the gateway key", param_hint="--gateway-key")
    signer = load_gateway_key(gateway_key, passphrase=secret_passphrase)
    secret = (
        load_secret(pseudonym_secret) if pseudonym_secret else derive_secret(signer, "pseudonym")
    )
    secrets = GatewaySecrets(signer=signer, pseudonym_secret=secret)
    # Imported here, not at the top: under an editable install a ``gateway`` folder in the working
    # directory (the README walkthrough makes one) shadows the package's ``__init__`` at start-up.
    from pcf_exchange.gateway.policy import default_policy_path

    loaded = load_policy_file(str(policy) if policy else default_policy_path())
    now = datetime.now(UTC)
    with contextlib.ExitStack() as stack:
        if kafka:
            gateway, queue = stack.enter_context(
                _kafka_gateway(loaded, secrets, recipient, bootstrap, prefix, now)
            )
            result = release(
                doc,
                gateway=gateway,
                recipient=recipient,
                purpose=purpose,
                now=now,
                on_hold=lambda prepared: queue.requested(prepared, doc_id(doc)),
            )
        else:
            gateway = _file_gateway(loaded, secrets, audit_log, now)
            result = release(doc, gateway=gateway, recipient=recipient, purpose=purpose, now=now)
        gateway.checkpoint(now=now)
    sealed = None
    if result.message is not None:
        sealed = str(out / f"{doc.doc_type}-{doc_id(doc)}.sealed.jsonl")
        Path(sealed).write_bytes(result.message.to_bytes() + b"\n")
    elif result.approval_id is not None:
        held = HeldDeclaration.of(doc, result)
        path = out / f"{doc.doc_type}-{doc_id(doc)}.held.json"
        path.write_text(dump_json(held.to_json()), encoding="utf-8")
    return result, sealed


@dataclass(frozen=True)
class _Release:
    """The options every declaration command (art7, cbam, study) shares: where the files go,
    which certificates are cited, and whether and how the declaration is released."""

    out: Path
    recipient: str | None
    purpose: str | None
    dry_run: bool
    snapshot: Path | None
    operator_key: Path | None
    certificate: list[str]
    policy: Path | None
    gateway_key: Path | None
    passphrase_file: Path | None
    passphrase_env: str | None
    pseudonym_secret: Path | None
    audit_log: Path
    kafka: bool
    bootstrap: str | None
    topic_prefix: str
    json_out: bool

    @classmethod
    def of(cls, parameters: Mapping[str, Any]) -> _Release:
        """The shared options from a command's parameters (its ``locals()``), by name."""
        return cls(**{f.name: parameters[f.name] for f in fields(cls)})


Input = TypeVar("Input")


def _declare(
    footprint: Path,
    read_input: Callable[[], Input],
    build: Callable[[ProductSource, Input, tuple[CertificateRef, ...]], Declaration],
    opts: _Release,
) -> None:
    """The one body of art7, cbam and study: read the footprint, then the command's own input,
    check the cited certificates, build the declaration, write it and (unless a dry run)
    release it (:func:`_finish`)."""
    source = read_source(_read(footprint, yaml_ok=False), subject=str(footprint))
    inp = read_input()
    certs = _certificates(source, opts.snapshot, opts.operator_key, opts.certificate)
    _finish(build(source, inp, certs), opts)


def _finish(doc: Declaration, opts: _Release) -> None:
    """Write *doc*'s files; release it unless a dry run; print the outcome (exit 1 if it was
    not released)."""
    out, dry_run, recipient, audit_log = opts.out, opts.dry_run, opts.recipient, opts.audit_log
    kafka, json_out = opts.kafka, opts.json_out
    if not dry_run and not recipient:
        raise typer.BadParameter("give the recipient, or --dry-run", param_hint="--recipient")
    files = _write(doc, out)
    result: Release | None = None
    sealed: str | None = None
    if not dry_run:
        assert recipient is not None
        result, sealed = _release(
            doc,
            out=out,
            recipient=recipient,
            purpose=opts.purpose or DEFAULT_PURPOSES[doc.doc_type],
            policy=opts.policy,
            gateway_key=opts.gateway_key,
            secret_passphrase=passphrase(opts.passphrase_file, opts.passphrase_env),
            pseudonym_secret=opts.pseudonym_secret,
            audit_log=audit_log,
            kafka=kafka,
            bootstrap=opts.bootstrap,
            prefix=opts.topic_prefix,
        )
    if json_out:
        print_json(
            {
                "declarationType": doc.doc_type,
                "declarationId": doc_id(doc),
                "files": files,
                "dryRun": dry_run,
                "release": None if result is None else {**result.to_dict(), "sealedFile": sealed},
            }
        )
    else:
        table = Table(title=doc.title, show_header=False)
        for kind, name in files.items():
            table.add_row(kind, name)
        console.print(table)
        log = KAFKA_LOG_ID if kafka else str(audit_log)
        if result is None:
            console.print("OK: written locally (dry run: nothing released)")
        elif result.released:
            console.print(
                f"OK: released to {result.recipient} for {result.purpose} (message"
                f" {result.message.message_id if result.message else ''}, audit entry"
                f" {log}:{result.entry.seq}); sealed message {sealed}"
            )
        else:
            why = "; ".join(result.reasons) or result.outcome.value
            console.print(
                f"FAIL: not released ({result.outcome.value}) to {result.recipient} for"
                f" {result.purpose}: {why} (audit entry {log}:{result.entry.seq})"
            )
            if result.approval_id and kafka:
                console.print(
                    f"→ held for approval {result.approval_id} (queued on pcf.approvals): a"
                    " compliance officer decides with 'pcfx approvals approve|deny"
                    f" {result.approval_id[:8]} --key OFFICER.key.pem', then 'pcfx declarations"
                    f" release --approval {result.approval_id[:8]} --out {out}' releases"
                    " it",
                    markup=False,
                )
            elif result.approval_id:
                console.print(
                    f"→ held for approval {result.approval_id}; only a release onto the exchange"
                    " (--kafka) queues the request for a compliance officer on pcf.approvals:"
                    " run this command again with --kafka",
                    markup=False,
                )
    if result is not None and not result.released:
        raise typer.Exit(int(ExitCode.REJECTED))


def _release_options(
    recipient: Recipient = None,
    purpose: Purpose = None,
    dry_run: DryRun = False,
    snapshot: Snap = None,
    operator_key: OperatorKey = None,
    certificate: Certs = [],  # noqa: B006 (typer reads the default)
    policy: PolicyOpt = None,
    gateway_key: GatewayKeyOpt = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    pseudonym_secret: PseudonymOpt = None,
    audit_log: AuditLog = _DEFAULT_AUDIT,
    kafka: Kafka = False,
    bootstrap: Bootstrap = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """The options art7, cbam and study share after their own (:func:`pcfx.options.with_options`;
    :class:`_Release` holds their values)."""


def _declaration_command(
    name: str,
    input_help: str,
    read_input: Callable[..., Any],
    build: Callable[..., Declaration],
    doc: str,
) -> None:
    """Register ``pcfx declarations <name>`` for a declaration made of a footprint and one input
    file (art7, cbam): one command body, differing by the input it reads, the builder it calls,
    and its help."""

    def command(footprint: Footprint, input_file: Path, out: Out, **release: Any) -> None:
        _declare(
            footprint,
            lambda: read_input(_read(input_file, yaml_ok=True), subject=str(input_file)),
            lambda source, inp, certs: build(
                source, inp, certificates=certs, issued_at=datetime.now(UTC)
            ),
            _Release.of({**release, "out": out}),
        )

    # the input's help differs per declaration: given as an object, not a string annotation
    command.__annotations__["input_file"] = Annotated[
        Path, typer.Option("--input", help=input_help, show_default=False)
    ]
    command.__doc__ = doc
    command.__name__ = name
    declarations_app.command(name)(handle_errors(with_options(_release_options)(command)))


_declaration_command(
    "art7",
    "Declaration input (JSON/YAML): manufacturer, batteryModel, batteryCategory,"
    " manufacturingPlant, euDeclarationOfConformityId, studyUrl, serviceLifeEnergyKWh,"
    " beyondGate.",
    read_art7_input,
    build_art7,
    """EU Battery Regulation Art. 7 carbon-footprint declaration (JSON, printable HTML, battery
    passport part) for a battery model at a plant, released under battery-regulation-art7.""",
)
_declaration_command(
    "cbam",
    "Installation input (JSON/YAML): installation {name, operator, address, city,"
    " country, unLocode, latitude, longitude}, cnCode, productionRoute, reportingPeriod.",
    read_cbam_input,
    build_cbam,
    """CBAM embedded-emissions communication (direct and indirect t CO2e per t) for an
    installation's good, released under cbam-reporting.""",
)


def _factor_table(path: Path | None) -> dict[tuple[str, str], EmissionFactor]:
    loaded = load_factors(path or SOURCED_FACTORS)
    bad = [r for r in loaded if r.error is not None]
    if bad and bad[0].error is not None:
        raise bad[0].error
    return {(r.value.factor_id, r.value.version): r.value for r in loaded if r.value is not None}


@declarations_app.command("study")
@handle_errors
@with_options(_release_options)
def study(
    footprint: Footprint,
    out: Out,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Optional study input (JSON/YAML): goal, intendedApplication, commissioner,"
            " practitioner.",
        ),
    ] = None,
    factors: Annotated[
        Path | None,
        typer.Option(
            "--factors",
            help="The background factor table the roll-up used (default: the shipped sourced set).",
        ),
    ] = None,
    **release: Any,
) -> None:
    """GB/T 24067 / ISO 14067 study report (printable HTML + JSON): boundary, data sources with
    the background factors' sources and versions, allocation, data quality, results per stage."""
    _declare(
        footprint,
        lambda: read_study_input(
            None if input_file is None else _read(input_file, yaml_ok=True),
            subject=str(input_file),
        ),
        lambda source, inp, certs: build_study(
            source,
            factors=_factor_table(factors),
            inp=inp,
            certificates=certs,
            issued_at=datetime.now(UTC),
        ),
        _Release.of({**release, "out": out}),
    )


# --- a held declaration, released once a compliance officer approved it ------------------------


def _approval_row(book: Any, approval_id: str, topic: str) -> Any:
    """The approval *approval_id* names on *topic*, or the one whose id starts with it."""
    from pcf_exchange.gateway._errors import ApprovalStateError

    row = book.rows.get(approval_id)
    if row is not None:
        return row
    found = [r for aid, r in book.rows.items() if approval_id and aid.startswith(approval_id)]
    if len(found) == 1:
        return found[0]
    raise ApprovalStateError(
        f"approval id {approval_id!r} must name one approval on {topic} (got"
        f" {'no match' if not found else f'{len(found)} matches'})",
        hint="Copy the id (or a longer prefix of it) from 'pcfx approvals list'.",
    )


def _held_file(out: Path, declaration_id: str, given: Path | None) -> HeldDeclaration:
    if given is None:
        found = sorted(out.glob(f"*-{declaration_id}.held.json"))
        if len(found) != 1:
            raise _unreadable(
                f"expected one held declaration '*-{declaration_id}.held.json' in '{out}'"
                f" (got {len(found)}); give it with --held"
            )
        given = found[0]
    return HeldDeclaration.from_json(_read(given, yaml_ok=False), subject=str(given))


@declarations_app.command("release")
@handle_errors
def release_held(
    approval: Annotated[
        str,
        typer.Option(
            "--approval",
            help="The held declaration's approval id, or a unique prefix (pcfx approvals list).",
            show_default=False,
        ),
    ],
    out: Out,
    operator_key: Annotated[
        Path | None,
        typer.Option(
            "--operator-key",
            envvar="PCFX_OPERATOR_KEY",
            help="The operator's public key (PEM): only officer keys it registered on pcf.keys"
            " can decide.",
        ),
    ] = None,
    held_file: Annotated[
        Path | None,
        typer.Option(
            "--held", help="The *.held.json file (default: the one for the approval in --out)."
        ),
    ] = None,
    policy: PolicyOpt = None,
    gateway_key: GatewayKeyOpt = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    pseudonym_secret: PseudonymOpt = None,
    bootstrap: Bootstrap = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Release a held declaration (held by a release with --kafka) once a compliance officer
    decided it (pcfx approvals approve|deny --key): the decision counts only if an officer key
    the operator registered signed it for this request; then the approval's audit entry and
    (approved) the sealed declaration, whose transfer entry names the approval, in one
    transaction. Exit 1 when it is denied, blocked or not decided yet."""
    from pcf_exchange.contracts import AvroSerde, KafkaSchemaRegistry
    from pcf_exchange.gateway._codec import refused_event, resolved_event
    from pcf_exchange.gateway._decision_signing import check_decision
    from pcf_exchange.gateway._errors import ApprovalStateError
    from pcf_exchange.gateway._trust_entries import refused_decision_entry
    from pcf_exchange.gateway.audit._entry import format_time
    from pcf_exchange.gateway.declarations import prepare_approved_release
    from pcf_exchange.producers._keydir import KeyDirectory

    if operator_key is None:
        raise typer.BadParameter(
            "the operator's public key is needed to trust the officer's key registration",
            param_hint="--operator-key",
        )
    if gateway_key is None:
        raise typer.BadParameter("releasing needs the gateway key", param_hint="--gateway-key")
    signer = load_gateway_key(gateway_key, passphrase=passphrase(passphrase_file, passphrase_env))
    secret = (
        load_secret(pseudonym_secret) if pseudonym_secret else derive_secret(signer, "pseudonym")
    )
    secrets = GatewaySecrets(signer=signer, pseudonym_secret=secret)
    from pcf_exchange.gateway.policy import default_policy_path  # (here: see _release)

    loaded = load_policy_file(str(policy) if policy else default_policy_path())
    operator = load_ed25519_public_key(operator_key)
    now = datetime.now(UTC)
    with contextlib.ExitStack() as stack:
        # the recipient's topic is known only from the request: read the book first
        from pcf_exchange.contracts.topics import TopicNames
        from pcf_exchange.pcfx.settings import bootstrap_servers

        servers = bootstrap or bootstrap_servers()
        topics = TopicNames(topic_prefix)
        registry = KafkaSchemaRegistry(servers, prefix=topic_prefix)
        stack.callback(registry.close)
        from pcf_exchange.gateway.runtime._avro import GatewaySerde

        book = _ApprovalsQueue(servers, topics, GatewaySerde(registry)).book()
        row = _approval_row(book, approval, topics.approvals)
        requested = row.approval
        if row.source.topic != DECLARATION_SOURCE or row.source.log_id != KAFKA_LOG_ID:
            raise ApprovalStateError(
                f"approval {requested.approval_id} holds a record of {row.source.topic}, not a"
                " declaration",
                hint="The gateway runner releases held products once approved.",
            )
        if row.resolution is not None:
            raise ApprovalStateError(
                f"approval {requested.approval_id} is already resolved"
                f" ({row.resolution.get('outcome')}): nothing to release again"
            )
        held = _held_file(out, str(row.source.product_id), held_file)
        if held.approval_id != requested.approval_id:
            raise ApprovalStateError(
                f"{held.declaration_id}'s held file waits for approval {held.approval_id},"
                f" not {requested.approval_id}"
            )
        keys = KeyDirectory.read(
            servers, AvroSerde(registry), topic=topics.keys, operator_key=operator
        )
        assert keys.keyring is not None
        decided = None
        refusals = []
        for candidate in row.untried():
            check = check_decision(
                keys.keyring,
                requested,
                candidate.verdict,
                at=candidate.at,
                appended_at=candidate.appended_at or now,
                what=f"decision at {topics.approvals}@{candidate.offset}",
            )
            if check.approval is not None:
                decided = check.approval
                break
            assert check.error is not None
            refusals.append((candidate, check.error))
        gateway, queue = stack.enter_context(
            _kafka_gateway(loaded, secrets, held.recipient, servers, topic_prefix, now)
        )
        head, entries, events = gateway.head, [], []
        for candidate, error in refusals:
            verdict = candidate.verdict
            who, kid = verdict.get("signerId"), verdict.get("keyId")
            entry, head = refused_decision_entry(
                head,
                requested,
                error,
                where=f"{topics.approvals}@{candidate.offset}",
                signer=who if isinstance(who, str) else None,
                key_id=kid if isinstance(kid, str) else None,
                now=now,
            )
            entries.append(entry)
            events.append(
                refused_event(
                    requested.approval_id,
                    log_id=KAFKA_LOG_ID,
                    entry_seq=entry.seq,
                    at=format_time(now),
                    decision_offset=candidate.offset,
                    detail=f"{error.reason}: {error.message}",
                )
            )
        outcome, detail, message, counters = "pending", None, None, gateway.counters
        if decided is not None:
            prepared = prepare_approved_release(
                held,
                decided,
                policy=loaded,
                secrets=replace(secrets, log_id=KAFKA_LOG_ID),
                head=head,
                counters=gateway.counters,
                now=now,
            )
            outcome, detail, message = prepared.outcome, prepared.detail, prepared.outbound
            entries.extend(prepared.entries)
            head, counters = prepared.head, prepared.counters
            events.append(
                resolved_event(
                    requested.approval_id,
                    outcome=outcome,
                    log_id=KAFKA_LOG_ID,
                    entry_seq=entries[-1].seq,
                    at=format_time(now),
                    message_id=None if message is None else message.message_id,
                    detail=detail,
                )
            )
        if entries:
            commit: Any = gateway.sink.commit
            commit(
                [message] if message else [],
                entries,
                extra=[queue.event(e) for e in events],
            )
            gateway.head, gateway.counters = head, counters
            gateway.checkpoint(now=now)
    sealed = None
    if message is not None:
        sealed = str(out / f"{held.declaration_type}-{held.declaration_id}.sealed.jsonl")
        Path(sealed).write_bytes(message.to_bytes() + b"\n")
    refused = [f"{e.reason}: {e.message}" for _, e in refusals]
    if json_out:
        print_json(
            {
                "approvalId": requested.approval_id,
                "declarationType": held.declaration_type,
                "declarationId": held.declaration_id,
                "recipient": held.recipient,
                "purpose": held.purpose,
                "outcome": outcome,
                "released": message is not None,
                "messageId": None if message is None else message.message_id,
                "approver": None if decided is None else decided.approver,
                "detail": detail,
                "refusedDecisions": refused,
                "auditEntries": [
                    {"seq": e.seq, "kind": e.kind, "hash": e.entry_hash} for e in entries
                ],
                "sealedFile": sealed,
            }
        )
    else:
        for line in refused:
            console.print(f"REFUSED decision: {line} (audited)", markup=False)
        seqs = ", ".join(f"{KAFKA_LOG_ID}:{e.seq} {e.kind}" for e in entries) or "none"
        if message is not None:
            console.print(
                f"OK: {held.declaration_type} {held.declaration_id} released to {held.recipient}"
                f" for {held.purpose} under approval {requested.approval_id} (approved by"
                f" {decided.approver if decided else '?'}); audit entries {seqs}; sealed"
                f" message {sealed}",
                markup=False,
            )
        elif decided is None:
            console.print(
                f"FAIL: approval {requested.approval_id} has no decision a registered officer"
                " signed yet: the declaration stays held (pcfx approvals approve ID --key"
                " OFFICER.key.pem)",
                markup=False,
            )
        else:
            console.print(
                f"FAIL: not released ({outcome}): {detail or ''} (audit entries {seqs})",
                markup=False,
            )
    if message is None:
        raise typer.Exit(int(ExitCode.REJECTED))
