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

With ``--kafka`` the same release goes onto the exchange's topics, as the gateway runner's do:
one :class:`~gateway.runtime.KafkaTransferSink` transaction holds the sealed message on
``pcf.outbound.<recipient>`` and the audit entry (batch-sealed) and checkpoint on the audit
topics, under the chain ``pcfx-declarations``; the chain is resumed with
:func:`gateway.audit.resume_chain` (only from the gateway key's own checkpoints and seals), so a
chain someone else wrote to is refused, never extended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from contracts import EmissionFactor, load_factors
from contracts._jsonio import loads
from contracts.certification import Snapshot
from contracts.errors import ContractError, TrustError
from contracts.keyfiles import key_id_of, load_ed25519_public_key
from gateway._pipeline import Gateway, GatewaySecrets, InMemoryTransferSink
from gateway._sealing import KeyRing
from gateway.audit import ChainHead, JsonLinesAuditStore, check_audit_log
from gateway.declarations import (
    DEFAULT_PURPOSES,
    Art7Declaration,
    CertificateRef,
    Declaration,
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
from gateway.policy import CounterState
from gateway.policy import load_policy as load_policy_file
from gateway.runtime._keys import derive_secret, load_gateway_key, load_secret
from pcfx.console import ExitCode, console, handle_errors, print_json
from pcfx.options import Bootstrap, JsonOut, PassphraseEnv, PassphraseFile, TopicPrefix, passphrase
from producers.factors import SOURCED_FACTORS

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


@contextlib.contextmanager
def _kafka_gateway(
    loaded: Any,
    secrets: GatewaySecrets,
    recipient: str,
    bootstrap: str | None,
    prefix: str,
    now: datetime,
) -> Iterator[Gateway]:
    """A gateway on the exchange's topics: the audit chain ``pcfx-declarations`` resumed from
    ``pcf.audit`` (:func:`gateway.audit.resume_chain`), one transaction per release."""
    from contracts import KafkaSchemaRegistry
    from contracts.topics import TOPICS, TopicNames, ensure_topics
    from gateway.audit import resume_chain
    from gateway.runtime import KafkaAuditStore, KafkaTransferSink
    from gateway.runtime._avro import GatewaySerde, kafka_registrar
    from pcfx.settings import bootstrap_servers

    servers = bootstrap_servers(bootstrap)
    topics = TopicNames(prefix)
    ensure_topics(
        servers,
        [
            (topics.audit, TOPICS["pcf.audit"], 1),
            (topics.checkpoints, TOPICS["pcf.audit.checkpoints"], 1),
            (topics.outbound(recipient), TOPICS["pcf.outbound."], 1),
        ],
    )
    registry = KafkaSchemaRegistry(servers)
    sink: KafkaTransferSink | None = None
    try:
        serde = GatewaySerde(registry, registrar=kafka_registrar(servers))
        serde.ensure(
            [
                (topics.audit, "AuditLogEntry"),
                (topics.checkpoints, "AuditLogCheckpoint"),
                (topics.outbound(recipient), "SealedMessage"),
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
        yield Gateway(
            loaded,
            replace(secrets, log_id=KAFKA_LOG_ID),
            sink,
            counters=CounterState.empty(now.year, salt=derive_secret(secrets.signer, "counters")),
            head=check.head,
        )
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
    from gateway import default_policy_path

    loaded = load_policy_file(str(policy) if policy else default_policy_path())
    now = datetime.now(UTC)
    with contextlib.ExitStack() as stack:
        if kafka:
            gateway = stack.enter_context(
                _kafka_gateway(loaded, secrets, recipient, bootstrap, prefix, now)
            )
        else:
            gateway = _file_gateway(loaded, secrets, audit_log, now)
        result = release(doc, gateway=gateway, recipient=recipient, purpose=purpose, now=now)
        gateway.checkpoint(now=now)
    sealed = None
    if result.message is not None:
        sealed = str(out / f"{doc.doc_type}-{doc_id(doc)}.sealed.jsonl")
        Path(sealed).write_bytes(result.message.to_bytes() + b"\n")
    return result, sealed


def _finish(
    doc: Declaration,
    *,
    out: Path,
    dry_run: bool,
    recipient: str | None,
    purpose: str | None,
    policy: Path | None,
    gateway_key: Path | None,
    secret_passphrase: bytes | None,
    pseudonym_secret: Path | None,
    audit_log: Path,
    json_out: bool,
    kafka: bool = False,
    bootstrap: str | None = None,
    prefix: str = "",
) -> None:
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
            purpose=purpose or DEFAULT_PURPOSES[doc.doc_type],
            policy=policy,
            gateway_key=gateway_key,
            secret_passphrase=secret_passphrase,
            pseudonym_secret=pseudonym_secret,
            audit_log=audit_log,
            kafka=kafka,
            bootstrap=bootstrap,
            prefix=prefix,
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
            if result.approval_id:
                console.print(
                    f"→ held for approval {result.approval_id}: a compliance officer decides"
                )
    if result is not None and not result.released:
        raise typer.Exit(int(ExitCode.REJECTED))


@declarations_app.command("art7")
@handle_errors
def art7(
    footprint: Footprint,
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            help="Declaration input (JSON/YAML): manufacturer, batteryModel, batteryCategory,"
            " manufacturingPlant, euDeclarationOfConformityId, studyUrl, serviceLifeEnergyKWh,"
            " beyondGate.",
            show_default=False,
        ),
    ],
    out: Out,
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
    """EU Battery Regulation Art. 7 carbon-footprint declaration (JSON, printable HTML, battery
    passport part) for a battery model at a plant, released under battery-regulation-art7."""
    source = read_source(_read(footprint, yaml_ok=False), subject=str(footprint))
    inp = read_art7_input(_read(input_file, yaml_ok=True), subject=str(input_file))
    certs = _certificates(source, snapshot, operator_key, certificate)
    doc = build_art7(source, inp, certificates=certs, issued_at=datetime.now(UTC))
    _finish(
        doc,
        out=out,
        dry_run=dry_run,
        recipient=recipient,
        purpose=purpose,
        policy=policy,
        gateway_key=gateway_key,
        secret_passphrase=passphrase(passphrase_file, passphrase_env),
        pseudonym_secret=pseudonym_secret,
        audit_log=audit_log,
        json_out=json_out,
        kafka=kafka,
        bootstrap=bootstrap,
        prefix=topic_prefix,
    )


@declarations_app.command("cbam")
@handle_errors
def cbam(
    footprint: Footprint,
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            help="Installation input (JSON/YAML): installation {name, operator, address, city,"
            " country, unLocode, latitude, longitude}, cnCode, productionRoute, reportingPeriod.",
            show_default=False,
        ),
    ],
    out: Out,
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
    """CBAM embedded-emissions communication (direct and indirect t CO2e per t) for an
    installation's good, released under cbam-reporting."""
    source = read_source(_read(footprint, yaml_ok=False), subject=str(footprint))
    inp = read_cbam_input(_read(input_file, yaml_ok=True), subject=str(input_file))
    certs = _certificates(source, snapshot, operator_key, certificate)
    doc = build_cbam(source, inp, certificates=certs, issued_at=datetime.now(UTC))
    _finish(
        doc,
        out=out,
        dry_run=dry_run,
        recipient=recipient,
        purpose=purpose,
        policy=policy,
        gateway_key=gateway_key,
        secret_passphrase=passphrase(passphrase_file, passphrase_env),
        pseudonym_secret=pseudonym_secret,
        audit_log=audit_log,
        json_out=json_out,
        kafka=kafka,
        bootstrap=bootstrap,
        prefix=topic_prefix,
    )


def _factor_table(path: Path | None) -> dict[tuple[str, str], EmissionFactor]:
    loaded = load_factors(path or SOURCED_FACTORS)
    bad = [r for r in loaded if r.error is not None]
    if bad and bad[0].error is not None:
        raise bad[0].error
    return {(r.value.factor_id, r.value.version): r.value for r in loaded if r.value is not None}


@declarations_app.command("study")
@handle_errors
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
    """GB/T 24067 / ISO 14067 study report (printable HTML + JSON): boundary, data sources with
    the background factors' sources and versions, allocation, data quality, results per stage."""
    source = read_source(_read(footprint, yaml_ok=False), subject=str(footprint))
    inp = read_study_input(
        None if input_file is None else _read(input_file, yaml_ok=True),
        subject=str(input_file),
    )
    certs = _certificates(source, snapshot, operator_key, certificate)
    doc = build_study(
        source,
        factors=_factor_table(factors),
        inp=inp,
        certificates=certs,
        issued_at=datetime.now(UTC),
    )
    _finish(
        doc,
        out=out,
        dry_run=dry_run,
        recipient=recipient,
        purpose=purpose,
        policy=policy,
        gateway_key=gateway_key,
        secret_passphrase=passphrase(passphrase_file, passphrase_env),
        pseudonym_secret=pseudonym_secret,
        audit_log=audit_log,
        json_out=json_out,
        kafka=kafka,
        bootstrap=bootstrap,
        prefix=topic_prefix,
    )
