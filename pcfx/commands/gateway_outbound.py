"""``pcfx outbound dump|verify|decrypt``: what a recipient receives from the gateway, read from
its outbound topic or a file: the batch signature checked against the gateway's public key,
then the envelope opened with the recipient's own key (:mod:`gateway._sealing`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway._codec import sealed_from_datum
from pcf_exchange.gateway._keys import (
    load_gateway_public_key,
    load_recipient_private_key,
)
from pcf_exchange.gateway._sealing import KeyRing, SealedMessage, hpke_open, open_message
from pcf_exchange.gateway._topics import Topics
from pcf_exchange.gateway.audit._export import UnreadableInput
from pcf_exchange.gateway.policy import vault_context
from pcf_exchange.pcfx.commands._gateway_shared import _bootstrap, _quiet, _serde
from pcf_exchange.pcfx.console import ExitCode, console, err_console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    Bootstrap,
    JsonOut,
    PassphraseEnv,
    PassphraseFile,
    TopicPrefix,
    passphrase,
)

__all__ = ["outbound_app"]

outbound_app = typer.Typer(
    help="What recipients receive: verify and decrypt.", no_args_is_help=True
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
    from pcf_exchange.gateway.runtime import partition_count, read_to_end

    with _serde(servers, prefix) as serde:
        count = partition_count(servers, topic)
        if count == 0:
            raise UnreadableInput(f"topic {topic} does not exist")
        for message in read_to_end(servers, [(topic, p) for p in range(count)]):
            yield sealed_from_datum(serde.decode(message.value() or b"", "SealedMessage"))


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
    json_out: JsonOut = False,
) -> None:
    """Verify the gateway signature and decrypt each message on its own (version 2, sealed per
    batch, and version 1, sealed alone); print PACT JSON, one per line (with --json: one
    document, the messages and the refusals in it)."""
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
    documents: list[Any] = []
    refused: list[dict[str, Any]] = []
    for message in _outbound_messages(recipient, source, topic, topic_prefix, bootstrap):
        try:
            opened = open_message(
                message, recipient_id=recipient, private_key=private, trusted=trusted
            )
        except TrustError as exc:
            failed += 1
            refused.append(
                {"messageId": message.message_id, "reason": exc.reason, "message": exc.message}
            )
            if not json_out:
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
        if json_out:
            documents.append(doc)
        else:
            sys.stdout.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")
    if json_out:
        print_json({"decrypted": count, "refused": failed, "messages": documents,
                    "refusals": refused})  # fmt: skip
    else:
        err_console.print(
            f"{'OK' if not failed else 'FAIL'}: {count} messages verified and decrypted,"
            f" {failed} refused",
            markup=False,
        )
    if failed:
        raise typer.Exit(int(ExitCode.REJECTED))
