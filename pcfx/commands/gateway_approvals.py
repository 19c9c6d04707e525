"""``pcfx approvals list|approve|deny``: held transfers waiting for a compliance officer. The
decision is signed with the officer's key and written by
:func:`gateway.runtime._officer.write_decision` (the console's approve and deny use the same
function); the gateway then checks the key's registration and releases or denies the transfer,
audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pcf_exchange.gateway._approvals_log import ApprovalBook, RowStatus
from pcf_exchange.gateway._topics import Topics
from pcf_exchange.gateway.runtime._avro import GatewaySerde
from pcf_exchange.gateway.runtime._officer import read_approval_book, write_decision
from pcf_exchange.pcfx.commands._gateway_shared import _bootstrap, _serde
from pcf_exchange.pcfx.console import console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    Bootstrap,
    JsonOut,
    PassphraseEnv,
    PassphraseFile,
    TopicPrefix,
    passphrase,
)
from pcf_exchange.pcfx.tables import approvals_table

__all__ = ["approvals_app"]

approvals_app = typer.Typer(
    help="Held transfers waiting for a compliance officer.", no_args_is_help=True
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
    with _serde(servers, topic_prefix) as serde:
        book = _book(servers, Topics(topic_prefix), serde)
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
    from pcf_exchange.producers.keys import load_signer

    officer = load_signer(key, secret)
    servers = _bootstrap(bootstrap)
    with _serde(servers, topic_prefix, writes=True) as serde:
        # the id or a unique prefix: write_decision refuses an ambiguous prefix listing the
        # candidates (code ambiguous_id: exit 2, a usage error as everywhere) and an id that
        # names no approval (exit 1)
        written = write_decision(
            servers,
            Topics(topic_prefix).approvals,
            serde,
            approval_id,
            approved=approved,
            officer=officer,
            reason=reason,
            now=datetime.now(UTC),
            mechanism_ref=mechanism_ref,
            conditions=conditions,
        )
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
