"""``pcfx bodies``, ``pcfx certificates``, ``pcfx label``: certification bodies, certificates and
verifiable carbon labels (the design is in :mod:`contracts.certification` and
:mod:`contracts.labels`; Kafka I/O in :mod:`producers.certification`).

Every command that trusts what it reads takes the operator's public key (``--operator-key``, or
``$PCFX_OPERATOR_KEY``): bodies are only what that key registered. Exit codes as everywhere
(:mod:`pcfx.console`): ``0`` done / valid, ``1`` refused or not valid, ``2`` usage, ``3``
infrastructure, ``4`` unreadable input.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from rich.table import Table

from pcf_exchange.contracts import (
    AvroSerde,
    HttpSchemaRegistry,
    KafkaSchemaRegistry,
    SchemaRegistry,
    register_schemas,
)
from pcf_exchange.contracts.certification import (
    CATALOGUE,
    OPERATOR,
    BodyKey,
    BodyListing,
    BodyRegistration,
    CertOutcome,
    CertRegistry,
    CertStatus,
    ListingAction,
    Revocation,
    SignedStatement,
    Snapshot,
    Statement,
    StatementSerde,
    sign_statement,
)
from pcf_exchange.contracts.errors import CertificationError, ContractError
from pcf_exchange.contracts.keyfiles import (
    key_id_of,
    load_ed25519_public_key,
    read_ed25519_private_key,
)
from pcf_exchange.contracts.labels import (
    check_label,
    encode_label,
    label_for,
    label_from_scan,
    label_url,
)
from pcf_exchange.pcfx.commands.publish import parse_when
from pcf_exchange.pcfx.console import ExitCode, console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    Bootstrap,
    JsonOut,
    PassphraseEnv,
    PassphraseFile,
    RegistryUrl,
    TopicPrefix,
    passphrase,
    with_options,
)
from pcf_exchange.pcfx.settings import bootstrap_servers
from pcf_exchange.pcfx.tables import resolve_id
from pcf_exchange.producers.certification import (
    CertTopics,
    certificate_from_footprint,
    ensure_cert_topics,
    publish,
    read_exchange,
    watch_once,
)
from pcf_exchange.producers.labels import label_svg, write_qr

__all__ = ["bodies_app", "certificates_app", "label_app"]

bodies_app = typer.Typer(
    help="Certification bodies (operator): register, list, show, blacklist, unlist, export a"
    " signed registry snapshot for offline label checks.",
    no_args_is_help=True,
)
certificates_app = typer.Typer(
    help="Certificates a registered body signs for a footprint: issue, list, show, status,"
    " verify, revoke; watch for stale ones (operator).",
    no_args_is_help=True,
)
label_app = typer.Typer(
    help="Verifiable carbon labels: issue (text, QR code PNG/SVG, label image), verify offline"
    " or live.",
    no_args_is_help=True,
)

# --- shared options -------------------------------------------------------------------------

SigningKey = Annotated[
    Path, typer.Option("--key", help="Private key file (PEM) that signs.", show_default=False)
]
OperatorKey = Annotated[
    Path | None,
    typer.Option(
        "--operator-key",
        envvar="PCFX_OPERATOR_KEY",
        help="The operator's public key (PEM): only bodies it registered are trusted"
        " (default: $PCFX_OPERATOR_KEY).",
    ),
]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _operator_keys(path: Path | None) -> dict[str, Ed25519PublicKey]:
    if path is None:
        raise typer.BadParameter(
            "give the operator's public key (the trust anchor of the body registry)",
            param_hint="--operator-key",
        )
    public = load_ed25519_public_key(path)
    return {key_id_of(public): public}


def _signing_key(path: Path, secret: bytes | None) -> Ed25519PrivateKey:
    return read_ed25519_private_key(path, secret)[0]


def _operator_signer(
    path: Path, secret: bytes | None
) -> tuple[Ed25519PrivateKey, dict[str, Ed25519PublicKey]]:
    """The operator's private key, and the trust anchor it makes (its own public key): a
    command signed by the operator trusts only the bodies that key registered."""
    operator = _signing_key(path, secret)
    public = operator.public_key()
    return operator, {key_id_of(public): public}


@dataclass
class _Session:
    bootstrap: str
    statements: StatementSerde
    footprints: AvroSerde
    topics: CertTopics


@contextlib.contextmanager
def _session(
    bootstrap: str | None, registry_url: str | None, prefix: str, *, writes: bool = False
) -> Iterator[_Session]:
    """Kafka, the schema registry and the topics for one command; *writes*: create the
    certification topics if missing and register the statement schema if it is not."""
    servers = bootstrap_servers(bootstrap)
    registry: SchemaRegistry = (
        HttpSchemaRegistry(registry_url)
        if registry_url
        else KafkaSchemaRegistry(servers, prefix=prefix)
    )
    topics = CertTopics(prefix)
    try:
        if writes:
            ensure_cert_topics(servers, topics)

        def registrar(pairs: list[tuple[str, str]]) -> None:
            register_schemas(servers, pairs, prefix=prefix)

        yield _Session(
            servers,
            StatementSerde(registry, registrar=registrar if writes and not registry_url else None),
            AvroSerde(registry),
            topics,
        )
    finally:
        close = getattr(registry, "close", None)
        if close is not None:
            close()


def _read(
    session: _Session, keys: dict[str, Ed25519PublicKey], *, footprints: bool
) -> CertRegistry:
    return read_exchange(
        session.bootstrap,
        session.statements,
        keys,
        topics=session.topics,
        footprints=session.footprints if footprints else None,
    ).registry


def _send(
    session: _Session,
    keys: dict[str, Ed25519PublicKey],
    signer: Ed25519PrivateKey,
    statement: Statement,
    *,
    signer_id: str,
    topic: str,
    key: str,
    precheck: CertRegistry | None = None,
) -> CertRegistry:
    """Sign *statement* and send it (the one path of every statement command: bodies register,
    blacklist, unlist; certificates issue, revoke). With *precheck* (the registry as read), a
    statement the exchange would refuse now is refused before sending (:func:`_precheck`)."""
    signed = sign_statement(signer, statement, signer_id=signer_id)
    if precheck is not None:
        _precheck(precheck, signed)
    return _publish_and_confirm(session, keys, topic, key, signed)


def _publish_and_confirm(
    session: _Session,
    keys: dict[str, Ed25519PublicKey],
    topic: str,
    key: str,
    signed: SignedStatement,
) -> CertRegistry:
    """Send one statement, read the topics back and raise the fold's reason if the exchange
    refused it (judged at its real append time, as every reader judges it)."""
    publish(session.bootstrap, session.statements, [(topic, key, signed)])
    exchange = read_exchange(session.bootstrap, session.statements, keys, topics=session.topics)
    for refused, update in exchange.refused:
        if refused.digest == signed.digest and update.error is not None:
            raise update.error
    return exchange.registry


def _precheck(registry: CertRegistry, signed: SignedStatement) -> None:
    """Refuse before sending what the exchange would refuse now (nothing is half-applied)."""
    update = registry.apply(signed, datetime.now(UTC))
    if update.outcome is CertOutcome.REJECTED and update.error is not None:
        raise CertificationError(
            f"{update.error.message} (checked before sending, at this machine's time: nothing"
            " was sent)",
            reason=update.error.reason,
            hint=update.error.hint,
        )


def _known_certificate(registry: CertRegistry, wanted: str, topics: CertTopics) -> str:
    """The certificate *wanted* names (its id or a unique prefix, :func:`pcfx.tables.resolve_id`:
    an ambiguous prefix exits 2 listing the candidates); one that names nothing is refused
    (``unknown_certificate``, exit 1) before anything is sent."""
    certificate_id = resolve_id(wanted, registry.certificates, "certificate")
    if certificate_id not in registry.certificates:
        raise CertificationError(
            f"certificate {certificate_id!r} is not on {topics.certificates}",
            reason="unknown_certificate",
            hint="List them: pcfx certificates list",
        )
    return certificate_id


def _body_row(registry: CertRegistry, body_id: str) -> dict[str, Any]:
    state = registry.bodies[body_id]
    reg = state.registration
    return {
        "bodyId": reg.body_id,
        "name": reg.name,
        "accreditationNo": reg.accreditation_no,
        "scopes": list(reg.scopes),
        "validFrom": _iso(reg.valid_from),
        "validUntil": _iso(reg.valid_until),
        "keyIds": [k.key_id for k in reg.keys],
        "registeredAt": _iso(state.registered_at),
        "blacklisted": state.blacklisted,
        "blacklistings": [
            {"from": _iso(start), "until": _iso(end), "reason": reason}
            for start, end, reason in state.blacklistings
        ],
        "certificates": sum(
            1 for c in registry.certificates.values() if c.certificate.body_id == body_id
        ),
    }


def _cert_row(registry: CertRegistry, cert_id: str, at: datetime) -> dict[str, Any]:
    report = registry.status(cert_id, at)
    state = report.state
    assert state is not None
    cert = state.certificate
    return {
        **cert.to_json(),
        "status": report.status.value,
        "reasons": list(report.reasons),
        "issuedAt": _iso(state.issued_at),
        "revokedAt": _iso(state.revoked_at),
    }


# --- pcfx bodies ----------------------------------------------------------------------------


@bodies_app.command("register")
@handle_errors
def bodies_register(
    key: SigningKey,
    body_id: Annotated[str, typer.Option("--body-id", help="The body's id.", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="The body's name.", show_default=False)],
    accreditation_no: Annotated[
        str,
        typer.Option(
            "--accreditation-no", help="Filing or accreditation number.", show_default=False
        ),
    ],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help=f"A catalogue entry it may certify (repeatable): {', '.join(CATALOGUE)}.",
            show_default=False,
        ),
    ],
    body_key: Annotated[
        list[Path],
        typer.Option(
            "--body-key",
            help="A public key (PEM) the body signs with (repeatable).",
            show_default=False,
        ),
    ],
    valid_from: Annotated[
        str | None, typer.Option("--valid-from", help="ISO 8601 (default: now).")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option("--valid-until", help="ISO 8601 (default: 3 years on).")
    ] = None,
    operator_id: Annotated[str, typer.Option("--operator-id", help="Who registers.")] = OPERATOR,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Register (or re-register: new scopes, keys, validity) a certification body, signed with
    the operator key, on pcf.bodies."""
    operator, keys = _operator_signer(key, passphrase(passphrase_file, passphrase_env))
    start = parse_when(valid_from, "--valid-from") or datetime.now(UTC)
    end = parse_when(valid_until, "--valid-until") or start + timedelta(days=3 * 365)
    with _session(bootstrap, registry_url, topic_prefix, writes=True) as session:
        current = _read(session, keys, footprints=False)
        registration = BodyRegistration.from_json(
            BodyRegistration(
                body_id,
                name,
                accreditation_no,
                tuple(scope),
                start,
                end,
                tuple(BodyKey.of(load_ed25519_public_key(p)) for p in body_key),
                operator_id,
                current.next_sequence(body_id),
            ).to_json()
        )
        registry = _send(
            session,
            keys,
            operator,
            registration,
            signer_id=operator_id,
            topic=session.topics.bodies,
            key=body_id,
        )
    row = _body_row(registry, body_id)
    if json_out:
        print_json({"registered": row})
        return
    console.print(f"OK: body {body_id!r} registered for {', '.join(scope)} until {_iso(end)}")


def _listing(
    action: ListingAction,
    body_id: str,
    key: Path,
    reason: str,
    operator_id: str,
    secret: bytes | None,
    bootstrap: str | None,
    registry_url: str | None,
    topic_prefix: str,
    json_out: bool,
) -> None:
    operator, keys = _operator_signer(key, secret)
    with _session(bootstrap, registry_url, topic_prefix, writes=True) as session:
        current = _read(session, keys, footprints=False)
        if body_id not in current.bodies:
            raise CertificationError(
                f"no body {body_id!r} is registered on {session.topics.bodies} by this operator"
                " key",
                reason="unknown_body",
                hint="List the bodies: pcfx bodies list --operator-key OPERATOR_PUB",
            )
        listing = BodyListing(body_id, action, reason, operator_id, current.next_sequence(body_id))
        registry = _send(
            session,
            keys,
            operator,
            listing,
            signer_id=operator_id,
            topic=session.topics.bodies,
            key=body_id,
        )
    row = _body_row(registry, body_id)
    if json_out:
        print_json({action.value: row})
        return
    when = row["blacklistings"][-1] if row["blacklistings"] else {}
    console.print(
        f"OK: body {body_id!r} {action.value}ed"
        + (
            f" from {when.get('from')} (the broker's time)"
            if action is ListingAction.BLACKLIST
            else ""
        )
    )


Reason = Annotated[
    str, typer.Option("--reason", help="Why (recorded, signed).", show_default=False)
]
OperatorId = Annotated[str, typer.Option("--operator-id", help="Who decides.")]


def _operator_options(
    operator_id: OperatorId = OPERATOR,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """The options of the commands the operator signs with its key (blacklist, unlist, export,
    watch), after their own (:func:`pcfx.options.with_options`; :class:`_Operator` holds them)."""


@dataclass(frozen=True, slots=True)
class _Operator:
    """The values of :func:`_operator_options`."""

    operator_id: str
    passphrase_file: Path | None
    passphrase_env: str | None
    bootstrap: str | None
    registry_url: str | None
    topic_prefix: str
    json_out: bool

    def secret(self) -> bytes | None:
        """The key's passphrase the options name (:func:`pcfx.options.passphrase`)."""
        return passphrase(self.passphrase_file, self.passphrase_env)


def _listing_command(action: ListingAction, body_help: str, doc: str) -> None:
    """Register ``pcfx bodies <action>``: blacklist and unlist are one command body that
    differs by the action it signs (and its help)."""

    def command(body_id: str, key: SigningKey, reason: Reason, **options: Any) -> None:
        o = _Operator(**options)
        _listing(
            action,
            body_id,
            key,
            reason,
            o.operator_id,
            o.secret(),
            o.bootstrap,
            o.registry_url,
            o.topic_prefix,
            o.json_out,
        )

    # the argument's help differs per action: given as an object, not as a string annotation
    command.__annotations__["body_id"] = Annotated[str, typer.Argument(help=body_help)]
    command.__doc__ = doc
    command.__name__ = f"bodies_{action.value}"
    bodies_app.command(action.value)(handle_errors(with_options(_operator_options)(command)))


_listing_command(
    ListingAction.BLACKLIST,
    "The body to blacklist.",
    """Blacklist a body (operator key): its certificates are refused from the moment the broker
    appends this, and its earlier ones are flagged.""",
)
_listing_command(
    ListingAction.UNLIST,
    "The body to take off the blacklist.",
    "Take a body off the blacklist (operator key), from the moment the broker appends this.",
)


@bodies_app.command("list")
@handle_errors
def bodies_list(
    operator_key: OperatorKey = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """The registered bodies: scopes, validity, keys, blacklisting."""
    keys = _operator_keys(operator_key)
    with _session(bootstrap, registry_url, topic_prefix) as session:
        registry = _read(session, keys, footprints=False)
    rows = [_body_row(registry, b) for b in sorted(registry.bodies)]
    if json_out:
        print_json({"bodies": rows})
        return
    table = Table("body", "name", "number", "scopes", "valid until", "blacklisted", "certificates")
    for row in rows:
        table.add_row(
            row["bodyId"],
            row["name"],
            row["accreditationNo"],
            "\n".join(row["scopes"]),
            row["validUntil"],
            "yes" if row["blacklisted"] else "",
            str(row["certificates"]),
        )
    console.print(table)


@bodies_app.command("show")
@handle_errors
def bodies_show(
    body_id: Annotated[str, typer.Argument(help="The body.")],
    operator_key: OperatorKey = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """One body: its registration, keys, blacklistings and certificates."""
    keys = _operator_keys(operator_key)
    with _session(bootstrap, registry_url, topic_prefix) as session:
        registry = _read(session, keys, footprints=False)
    if body_id not in registry.bodies:
        raise CertificationError(
            f"no body {body_id!r} is registered on {CertTopics(topic_prefix).bodies}",
            reason="unknown_body",
            hint="List the bodies: pcfx bodies list",
        )
    row = _body_row(registry, body_id)
    if json_out:
        print_json(row)
        return
    for name, value in row.items():
        console.print(f"[bold]{name}[/]: {value}")


@bodies_app.command("export")
@handle_errors
@with_options(_operator_options)
def bodies_export(
    key: SigningKey,
    out: Annotated[
        Path, typer.Option("--out", help="The snapshot file (JSON).", show_default=False)
    ],
    **options: Any,
) -> None:
    """Export a registry snapshot signed by the operator key: every accepted body and
    certificate statement with its broker time, and every product's current footprint hash;
    what 'pcfx label verify --snapshot' checks labels against offline."""
    o = _Operator(**options)
    operator, keys = _operator_signer(key, o.secret())
    with _session(o.bootstrap, o.registry_url, o.topic_prefix) as session:
        registry = _read(session, keys, footprints=True)
    now = datetime.now(UTC)
    data = Snapshot.of(registry, exported_by=o.operator_id, at=now).sign(operator)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {
        "out": str(out),
        "exportedAt": _iso(now),
        "bodies": len(registry.bodies),
        "certificates": len(registry.certificates),
        "footprints": len(registry.footprints),
    }
    if o.json_out:
        print_json(summary)
        return
    console.print(
        f"OK: snapshot of {summary['bodies']} bodies, {summary['certificates']} certificates,"
        f" {summary['footprints']} current footprints written to {out}"
    )


# --- pcfx certificates ----------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        error = ContractError(f"cannot read '{path}' as JSON: {exc}")
        error.code = "unreadable_input"
        raise error from None


@certificates_app.command("issue")
@handle_errors
def certificates_issue(
    key: SigningKey,
    body_id: Annotated[str, typer.Option("--body-id", help="Your body id.", show_default=False)],
    holder: Annotated[
        str, typer.Option("--holder", help="The company certified.", show_default=False)
    ],
    pcr_pack: Annotated[
        str, typer.Option("--pcr-pack", help="PCR pack id verified against.", show_default=False)
    ],
    pcr_version: Annotated[
        str, typer.Option("--pcr-version", help="Its version.", show_default=False)
    ],
    footprint: Annotated[
        Path | None,
        typer.Argument(
            help="The PACT v3 footprint (JSON) verified; default: the product's current"
            " footprint on the exchange (--product)."
        ),
    ] = None,
    certificate_id: Annotated[
        str | None, typer.Option("--certificate-id", help="Default: BODY-<random>.")
    ] = None,
    scope: Annotated[
        str | None, typer.Option("--scope", help="Catalogue entry (default: the footprint's).")
    ] = None,
    product: Annotated[
        str | None, typer.Option("--product", help="Product id (default: its first).")
    ] = None,
    valid_from: Annotated[str | None, typer.Option("--valid-from", help="Default: now.")] = None,
    valid_until: Annotated[
        str | None, typer.Option("--valid-until", help="Default: one year on.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check against the exchange and sign; send nothing.")
    ] = False,
    operator_key: OperatorKey = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Sign a certificate for a footprint you verified (bound to its content hash, id, product,
    PCR pack and catalogue entry) and publish it on pcf.certificates; the exchange's verdict
    (registered, in scope, not blacklisted, at the broker's time) is read back."""
    body = _signing_key(key, passphrase(passphrase_file, passphrase_env))
    start = parse_when(valid_from, "--valid-from") or datetime.now(UTC)
    end = parse_when(valid_until, "--valid-until") or start + timedelta(days=365)
    keys = _operator_keys(operator_key)
    if footprint is None and product is None:
        raise typer.BadParameter(
            "give the footprint file you verified, or --product to certify the product's current"
            " footprint on the exchange",
            param_hint="FOOTPRINT / --product",
        )
    with _session(bootstrap, registry_url, topic_prefix, writes=not dry_run) as session:
        current = _read(session, keys, footprints=True)
        published = current.footprints.get(product) if product is not None else None
        if footprint is None:
            if published is None or published.pact is None:
                raise CertificationError(
                    f"product {product!r} has no current footprint on"
                    f" {session.topics.declared} or {session.topics.products}",
                    reason="unknown_footprint",
                    hint="Give the footprint file you verified instead.",
                )
            pact = dict(published.pact)
        else:
            pact = _read_json(footprint)
        cert = certificate_from_footprint(
            pact,
            certificate_id=certificate_id or f"{body_id}-{uuid.uuid4().hex[:12]}",
            body_id=body_id,
            body_key=body,
            holder=holder,
            pcr_pack_id=pcr_pack,
            pcr_pack_version=pcr_version,
            valid_from=start,
            valid_until=end,
            scope=scope,
            product_id=product,
        )
        on_exchange = current.footprints.get(cert.product_id)
        if on_exchange is not None and on_exchange.content_hash != cert.content_hash:
            raise CertificationError(
                f"the footprint certified ({cert.footprint_id}, content hash"
                f" {cert.content_hash[:16]}…) is not product {cert.product_id!r}'s current"
                f" footprint on {on_exchange.source} ({on_exchange.footprint_id}, content hash"
                f" {on_exchange.content_hash[:16]}…): the certificate would be stale at once",
                reason="stale",
                hint="Certify what was published: --product ID without a file takes it from the"
                " exchange.",
            )
        if dry_run:
            _precheck(current, sign_statement(body, cert, signer_id=body_id))
        else:
            _send(
                session,
                keys,
                body,
                cert,
                signer_id=body_id,
                topic=session.topics.certificates,
                key=cert.certificate_id,
                precheck=current,
            )
    out = {**cert.to_json(), "published": not dry_run}
    if json_out:
        print_json(out)
        return
    console.print(
        f"OK: certificate {cert.certificate_id} for {cert.product_id} ({cert.figure} {cert.unit},"
        f" {cert.scope}, PCR {cert.pcr_pack_id} {cert.pcr_pack_version})"
        + (
            " signed (dry run: not sent)"
            if dry_run
            else f" published; check it with 'pcfx certificates verify {cert.certificate_id}'"
        )
    )


@certificates_app.command("revoke")
@handle_errors
def certificates_revoke(
    certificate_id: Annotated[str, typer.Argument(help="The certificate id, or a unique prefix.")],
    key: SigningKey,
    reason: Reason,
    signer: Annotated[
        str,
        typer.Option(
            "--as", help="Who revokes: the certificate's body id, or 'operator' (with its key)."
        ),
    ],
    operator_key: OperatorKey = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Revoke a certificate (its id or a unique prefix; by its body, or the operator) from the
    moment the broker appends the revocation."""
    private = _signing_key(key, passphrase(passphrase_file, passphrase_env))
    keys = _operator_keys(operator_key)
    with _session(bootstrap, registry_url, topic_prefix, writes=True) as session:
        current = _read(session, keys, footprints=False)
        certificate_id = _known_certificate(current, certificate_id, session.topics)
        registry = _send(
            session,
            keys,
            private,
            Revocation(certificate_id, signer, reason),
            signer_id=signer,
            topic=session.topics.certificates,
            key=certificate_id,
            precheck=current,
        )
    row = _cert_row(registry, certificate_id, datetime.now(UTC))
    if json_out:
        print_json(row)
        return
    console.print(f"OK: certificate {certificate_id} revoked at {row['revokedAt']}")


def _certificates(
    operator_key: Path | None, bootstrap: str | None, registry_url: str | None, prefix: str
) -> CertRegistry:
    keys = _operator_keys(operator_key)
    with _session(bootstrap, registry_url, prefix) as session:
        return _read(session, keys, footprints=True)


def _status_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("certificate", "body", "product", "figure", "status", "why")
    colours = {"valid": "green", "stale": "yellow", "flagged": "magenta"}
    for row in rows:
        colour = colours.get(row["status"], "red")
        table.add_row(
            row["certificateId"],
            row["bodyId"],
            row["productId"],
            f"{row['figure']} {row['unit']}",
            f"[{colour}]{row['status']}[/]",
            "\n".join(row["reasons"]),
        )
    return table


@certificates_app.command("list")
@handle_errors
def certificates_list(
    body: Annotated[str | None, typer.Option("--body", help="Only this body's.")] = None,
    holder: Annotated[str | None, typer.Option("--holder", help="Only this holder's.")] = None,
    operator_key: OperatorKey = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """The certificates on the exchange, with their status now."""
    registry = _certificates(operator_key, bootstrap, registry_url, topic_prefix)
    now = datetime.now(UTC)
    rows = [
        _cert_row(registry, c, now)
        for c, s in sorted(registry.certificates.items())
        if (body is None or s.certificate.body_id == body)
        and (holder is None or s.certificate.holder == holder)
    ]
    if json_out:
        print_json({"certificates": rows})
        return
    console.print(_status_table(rows))


@certificates_app.command("show")
@handle_errors
def certificates_show(
    certificate_id: Annotated[str, typer.Argument(help="The certificate id, or a unique prefix.")],
    operator_key: OperatorKey = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """One certificate (its id or a unique prefix): what it binds, when the broker appended it,
    its status now."""
    registry = _certificates(operator_key, bootstrap, registry_url, topic_prefix)
    certificate_id = _known_certificate(registry, certificate_id, CertTopics(topic_prefix))
    row = _cert_row(registry, certificate_id, datetime.now(UTC))
    if json_out:
        print_json(row)
        return
    for name, value in row.items():
        console.print(f"[bold]{name}[/]: {value}")


@certificates_app.command("status")
@handle_errors
def certificates_status(
    certificate_ids: Annotated[
        list[str] | None, typer.Argument(help="Certificates (default: all).")
    ] = None,
    operator_key: OperatorKey = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """valid / stale / revoked / flagged / expired per certificate; exit 1 if any is not valid."""
    registry = _certificates(operator_key, bootstrap, registry_url, topic_prefix)
    now = datetime.now(UTC)
    wanted = [
        resolve_id(c, registry.certificates, "certificate")
        for c in certificate_ids or sorted(registry.certificates)
    ]
    missing = [c for c in wanted if c not in registry.certificates]
    rows = [_cert_row(registry, c, now) for c in wanted if c in registry.certificates]
    if json_out:
        print_json({"certificates": rows, "unknown": missing})
    else:
        console.print(_status_table(rows))
        for c in missing:
            console.print(f"FAIL: certificate {c!r} is not on pcf.certificates")
    if missing or any(r["status"] != CertStatus.VALID.value for r in rows):
        raise typer.Exit(int(ExitCode.REJECTED))


@certificates_app.command("verify")
@handle_errors
def certificates_verify(
    certificate_id: Annotated[str, typer.Argument(help="The certificate.")],
    operator_key: OperatorKey = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Whether a certificate is valid now (exit 0) or not (exit 1, with every reason)."""
    certificates_status(
        [certificate_id], operator_key, bootstrap, registry_url, topic_prefix, json_out
    )


@certificates_app.command("watch")
@handle_errors
@with_options(_operator_options)
def certificates_watch(
    key: SigningKey,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between passes.")] = 30.0,
    **options: Any,
) -> None:
    """The staleness watcher (operator): publish a signed stale notice to pcf.certificates for
    every certificate whose product's current footprint is no longer the certified one."""
    o = _Operator(**options)
    operator = _signing_key(key, o.secret())
    with _session(o.bootstrap, o.registry_url, o.topic_prefix, writes=True) as session:
        while True:
            result = watch_once(
                session.bootstrap,
                session.statements,
                session.footprints,
                operator,
                operator_id=o.operator_id,
                topics=session.topics,
            )
            notices = [n.to_json() for n in result.notices]
            if o.json_out:
                print_json({"certificates": result.certificates, "staleNotices": notices})
            else:
                for n in result.notices:
                    console.print(
                        f"STALE: certificate {n.certificate_id} ({n.product_id}): told"
                        f" {n.holder} and {n.body_id}"
                    )
                console.print(
                    f"OK: {result.certificates} certificates checked,"
                    f" {len(notices)} new stale notice(s)"
                )
            if once:
                return
            time.sleep(interval)


# --- pcfx label -----------------------------------------------------------------------------

_STATUS_REASONS = {
    CertStatus.VALID: "",
    CertStatus.STALE: "stale",
    CertStatus.REVOKED: "revoked_certificate",
    CertStatus.EXPIRED: "expired_certificate",
    CertStatus.NOT_YET_VALID: "certificate_not_yet_valid",
    CertStatus.FLAGGED: "blacklisted_body",
    CertStatus.UNKNOWN: "unknown_certificate",
}
"""The reason code a label is refused with, per certificate status (as ``check_label``'s)."""


@label_app.command("issue")
@handle_errors
def label_issue(
    certificate_id: Annotated[str, typer.Argument(help="The certificate the label shows.")],
    key: SigningKey,
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Where to write the label files.")
    ] = Path("."),
    product_name: Annotated[str, typer.Option("--product-name", help="Printed name.")] = "",
    verify_url: Annotated[
        str | None,
        typer.Option(
            "--verify-url",
            help="The exchange API's verification page (https://HOST/labels/verify): the QR"
            " codes then carry its address with the label, so a phone that scans one opens"
            " the verdict (default: the label text alone).",
        ),
    ] = None,
    operator_key: OperatorKey = None,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Sign a carbon label for a valid certificate of yours and write it as text
    (<id>.label.txt), QR code (<id>.qr.png, <id>.qr.svg) and label image (<id>.label.svg)."""
    private = _signing_key(key, passphrase(passphrase_file, passphrase_env))
    registry = _certificates(operator_key, bootstrap, registry_url, topic_prefix)
    certificate_id = resolve_id(certificate_id, registry.certificates, "certificate")
    report = registry.status(certificate_id, datetime.now(UTC))
    if report.state is None or report.status is not CertStatus.VALID:
        raise CertificationError(
            f"certificate {certificate_id!r} is {report.status.value}: "
            + "; ".join(report.reasons),
            reason=_STATUS_REASONS[report.status],
            hint="Only a valid certificate gets a label: re-certify the current footprint.",
        )
    cert = report.state.certificate
    text = encode_label(label_for(cert), private)
    body = registry.bodies[cert.body_id].registration
    stem = out_dir / "".join(c if c.isalnum() or c in "-_." else "_" for c in certificate_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        scanned = label_url(verify_url, text) if verify_url else text
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--verify-url") from None
    files = {
        "text": stem.with_suffix(".label.txt"),
        "qrPng": write_qr(scanned, stem.with_suffix(".qr.png")),
        "qrSvg": write_qr(scanned, stem.with_suffix(".qr.svg")),
        "labelSvg": stem.with_suffix(".label.svg"),
    }
    files["text"].write_text(text + "\n", encoding="ascii")
    label = label_for(cert)
    files["labelSvg"].write_text(
        label_svg(label, scanned, product_name=product_name, body_name=body.name),
        encoding="utf-8",
    )
    if json_out:
        print_json(
            {
                "label": text,
                "length": len(text),
                "qrContent": scanned,
                **{k: str(v) for k, v in files.items()},
            }
        )
        return
    console.print(
        f"OK: label for {certificate_id} ({len(text)} characters) written to"
        f" {', '.join(str(p) for p in files.values())}"
    )


@label_app.command("verify")
@handle_errors
def label_verify(
    payload: Annotated[
        str,
        typer.Argument(
            help="The label text (PCFX1.…), the address its QR code carries, or a file holding"
            " either."
        ),
    ],
    snapshot: Annotated[
        Path | None,
        typer.Option(
            "--snapshot",
            help="Verify offline against this registry snapshot"
            " (pcfx bodies export); default: live from Kafka.",
        ),
    ] = None,
    operator_key: OperatorKey = None,
    bootstrap: Bootstrap = None,
    registry_url: RegistryUrl = None,
    topic_prefix: TopicPrefix = "",
    json_out: JsonOut = False,
) -> None:
    """Verify a carbon label: signature, body registered and not blacklisted, certificate on the
    exchange and not revoked, valid now, footprint not superseded. Exit 0 valid, 1 not."""
    text = label_from_scan(payload)
    if not text.startswith("PCFX1."):
        path = Path(payload)
        try:
            text = label_from_scan(path.read_text(encoding="utf-8"))
        except OSError as exc:
            error = ContractError(
                f"'{payload}' is neither a label (PCFX1.…), nor a label's address, nor a"
                f" readable file: {exc.strerror or exc}"
            )
            error.code = "unreadable_input"
            raise error from None
    keys = _operator_keys(operator_key)
    exported: str | None = None
    if snapshot is not None:
        loaded, registry = Snapshot.verify(_read_json(snapshot), keys)
        exported = _iso(loaded.exported_at)
    else:
        with _session(bootstrap, registry_url, topic_prefix) as session:
            registry = _read(session, keys, footprints=True)
    verdict = check_label(text, registry, at=datetime.now(UTC))
    if json_out:
        print_json(
            {
                **verdict.to_json(),
                "source": str(snapshot) if snapshot else "kafka",
                "snapshotExportedAt": exported,
            }
        )
    else:
        if exported is not None:
            console.print(
                f"(against the snapshot exported at {exported}: anything later is not"
                " in it; verify live when a broker is reachable)"
            )
        for check in verdict.checks:
            mark = "OK:  " if check.ok else "FAIL:"
            detail = f" - {check.message}" if check.message else ""
            console.print(f"{mark} ({check.step}) {check.name}{detail}")
        console.print(
            "VALID"
            if verdict.valid
            else "NOT VALID: " + ", ".join(c.reason for c in verdict.failures)
        )
    if not verdict.valid:
        raise typer.Exit(int(ExitCode.REJECTED))
