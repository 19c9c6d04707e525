"""``pcfx gateway keys signing|recipient|secret``: the gateway's key files (the key formats and
writers are :mod:`gateway._keys`). Every command prints what it wrote, or one JSON
document with ``--json``, through one helper (:func:`_wrote`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pcf_exchange.gateway._keys import (
    write_gateway_key,
    write_recipient_key,
    write_secret,
)
from pcf_exchange.pcfx.console import console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    JsonOut,
    PassphraseEnv,
    PassphraseFile,
    passphrase,
)

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Key files: the gateway's signing key, recipients' keys.", no_args_is_help=True
)

# ----------------------------------------------------------------------------------------------
# pcfx gateway keys ...


def _wrote(written: dict[str, str], lines: list[str], json_out: bool) -> None:
    """What a key command wrote: one JSON document (*written*, camelCase keys), else *lines*."""
    if json_out:
        print_json(written)
        return
    for line in lines:
        console.print(line)


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
    _wrote(
        {"privateKey": str(out), "publicKey": str(public), "keyId": key_id},
        [
            f"OK: {out} (private, 0600), {public} (give to recipients and auditors)",
            f"key id: {key_id}",
        ],
        json_out,
    )


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
    _wrote(
        {"privateKey": str(out), "publicKey": str(public), "encryptionKey": text},
        [
            f"OK: {out} (private: the recipient keeps it), {public}",
            f'policy: encryption_key: "{text}"',
        ],
        json_out,
    )


@keys_app.command("secret")
@handle_errors
def keys_secret(
    out: Annotated[Path, typer.Option("--out", help="Secret file to create (0600).")] = Path(
        "gateway-pseudonym.key"
    ),
    json_out: JsonOut = False,
) -> None:
    """New 32-byte secret for per-recipient pseudonyms and the PI counters."""
    write_secret(out)
    _wrote({"secret": str(out)}, [f"OK: {out}"], json_out)
