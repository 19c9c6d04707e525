"""``pcfx audit verify|checkpoint|export|show|prove|report``: the gateway's audit log, read from
Kafka or from an export file (the chain, checkpoints and proofs are :mod:`gateway.audit`).
Verification exits with its own codes (:class:`VerifyExit`) so a script can tell a broken chain
from a rollback or a missing checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pcf_exchange.contracts.errors import KeyStoreError, TrustError
from pcf_exchange.gateway._keys import (
    load_gateway_public_key,
)
from pcf_exchange.gateway._sealing import KeyRing
from pcf_exchange.gateway._topics import Topics
from pcf_exchange.gateway.audit import (
    CHECKPOINT_TYPE,
    AuditEntry,
    AuditVerification,
    Checkpoint,
    Problem,
    check_audit_log,
    check_inclusion,
    prove_inclusion,
)
from pcf_exchange.gateway.audit._export import UnreadableInput, read_export, write_export
from pcf_exchange.gateway.audit._report import AUDIT_ENTRY_COLUMNS, audit_entry_cells, render_report
from pcf_exchange.pcfx.commands._gateway_shared import _bootstrap, _quiet, _serde
from pcf_exchange.pcfx.console import ExitCode, console, err_console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    Bootstrap,
    JsonOut,
    TopicPrefix,
)

__all__ = ["VerifyExit", "audit_app"]

audit_app = typer.Typer(
    help="The audit log: verify, checkpoint, show, prove, export, report.", no_args_is_help=True
)

PubOpt = Annotated[
    list[Path],
    typer.Option(
        "--gateway-pub", help="Trusted gateway public key (PEM); repeat for rotated keys."
    ),
]


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
    from pcf_exchange.gateway.runtime._sink import read_audit_logs

    servers = _bootstrap(bootstrap)
    topics = Topics(topic_prefix)
    with _serde(servers, topic_prefix) as serde:
        entries, checkpoints, problems = read_audit_logs(servers, topics, serde, offsets=offsets)
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
        table = Table(*AUDIT_ENTRY_COLUMNS, "fields", title=f"{len(rows)} audit entries")
        for log_id, e in rows:
            table.add_row(*audit_entry_cells(log_id, e), _summary(e))
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
    from pcf_exchange.contracts.errors import ValidationFailed
    from pcf_exchange.gateway.console._views import Filters

    try:
        period = Filters.parse({"since": since, "until": until})
    except ValidationFailed as exc:
        raise typer.BadParameter(
            "; ".join(str(v) for v in exc.violations), param_hint="--since/--until"
        ) from None
    keys = _keyring(gateway_pub)
    from pcf_exchange.gateway.console._sources import rule_basis

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
