"""``pcfx pcr`` (product category rule packs: list, show, check a file) and ``pcfx review``
(records held for a figure far outside their category's range: list, show, release, reject).

The packs and the check are :mod:`contracts.pcr`; the review events and the officer's signed
decision are :mod:`contracts.pcr._review`. ``review release|reject`` signs with the compliance
officer's key (registered by the operator with ``--role officer``, as for ``pcfx approvals``)
and writes the decision to ``pcf.review.decisions``; the streams check the key's registration,
then ingest the released record again (its range waived) or send the rejected one to the DLQ
naming the officer and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pcf_exchange.contracts.errors import BrokerError, ContractError
from pcf_exchange.contracts.pcr import (
    DecisionState,
    PcrCheck,
    PcrOutcome,
    ReviewEvent,
    ReviewSerde,
    RulePack,
    check_bom,
    check_footprint,
    decide,
    default_packs,
    pending,
)
from pcf_exchange.contracts.topics import TopicNames
from pcf_exchange.pcfx.console import ExitCode, console, handle_errors, print_json
from pcf_exchange.pcfx.options import (
    Bootstrap,
    JsonOut,
    PassphraseEnv,
    PassphraseFile,
    TopicPrefix,
    passphrase,
)
from pcf_exchange.pcfx.tables import ends_with_part, resolve_id

__all__ = ["pcr_app", "review_app"]

pcr_app = typer.Typer(
    help="Product category rule packs (one per catalogue entry of the carbon-label pilots):"
    " declared unit, boundary, mandatory stages, data quality and plausible ranges.",
    no_args_is_help=True,
)
review_app = typer.Typer(
    help="Records held for review (a figure far outside its category's plausible range):"
    " list them, and release or reject them with a compliance officer's signed decision.",
    no_args_is_help=True,
)


class UnknownPack(ContractError):
    code = "unknown_pack"
    hint = "List the packs with 'pcfx pcr list'."


class ReviewStateError(ContractError):
    code = "review_state"
    hint = "List the held records with 'pcfx review list --all'."


# --- pcfx pcr -------------------------------------------------------------------------------------


def _units(pack: RulePack, chain: bool = False) -> str:
    rules = pack.supply_chain if chain else pack.declared_units
    return "; ".join(f"{r.unit} {r.range.low}..{r.range.high}" for r in rules)


def _pack_dict(pack: RulePack) -> dict[str, Any]:
    def unit(r: Any) -> dict[str, Any]:
        return {
            "unit": r.unit,
            "dimension": r.dimension.value,
            "appliesTo": r.applies_to,
            "range": {
                "low": str(r.range.low),
                "high": str(r.range.high),
                "basis": r.range.basis.value,
                "source": r.range.source,
            },
        }

    s = pack.source
    return {
        "id": pack.id,
        "version": pack.version,
        "title": pack.title,
        "catalogueEntry": pack.catalogue_entry,
        "pilotCategory": pack.pilot_category.value,
        "source": {
            "title": s.title,
            "number": s.number,
            "issuer": s.issuer,
            "date": s.date,
            "url": s.url,
            "publicText": s.public_text,
            "note": s.note,
        },
        "boundary": pack.boundary.value,
        "declaredUnits": [unit(r) for r in pack.declared_units],
        "mandatoryStages": list(pack.mandatory_stages),
        "requiredFigures": list(pack.required_figures),
        "maxDqr": None if pack.max_dqr is None else str(pack.max_dqr),
        "maxDqrSource": pack.max_dqr_source,
        "supplyChain": [unit(r) for r in pack.supply_chain],
        "file": pack.file,
    }


@pcr_app.command("list")
@handle_errors
def pcr_list(json_out: JsonOut = False) -> None:
    """Every rule pack: id, version, catalogue entry, units with their plausible ranges."""
    packs = default_packs()
    if json_out:
        print_json([_pack_dict(p) for p in packs])
        return
    table = Table(
        "pack", "version", "entry", "category", "boundary", "units (kgCO2e per unit)",
        title=f"{len(packs)} rule packs",
    )  # fmt: skip
    for p in packs:
        table.add_row(
            p.id, p.version, f"{p.title} ({p.catalogue_entry})", p.pilot_category.value,
            p.boundary.value, _units(p),
        )  # fmt: skip
    console.print(table)


@pcr_app.command("show")
@handle_errors
def pcr_show(
    pack_id: Annotated[str, typer.Argument(help="Pack id, e.g. CN-CCL-PCR-CEMENT.")],
    json_out: JsonOut = False,
) -> None:
    """One pack in full: its source, units and ranges (with where each range comes from)."""
    pack = default_packs().get(pack_id)
    if pack is None:
        known = ", ".join(p.id for p in default_packs())
        raise UnknownPack(f"pack id must be one of {known} (got {pack_id!r})")
    data = _pack_dict(pack)
    if json_out:
        print_json(data)
        return
    s = pack.source
    console.print(f"[bold]{pack.ref}[/] {pack.title} ({pack.catalogue_entry}), {pack.file}")
    console.print(f"source: {s.title}; {s.issuer}; {s.date}; {s.number or 'no number'}")
    console.print(f"        {s.url or 'no URL'}; rule text public: {s.public_text}")
    if s.note:
        console.print(f"        {s.note}", markup=False)
    console.print(f"boundary: {pack.boundary.value}; mandatory stages:"
                  f" {', '.join(pack.mandatory_stages)}")  # fmt: skip
    console.print(f"required figures: {', '.join(pack.required_figures) or 'none'}")
    if pack.max_dqr is not None:
        console.print(f"data quality: each DQR at most {pack.max_dqr} ({pack.max_dqr_source})")
    table = Table("for", "unit", "kgCO2e per unit", "basis", "source of the range")
    for role, rules in (("product", pack.declared_units), ("supply chain", pack.supply_chain)):
        for r in rules:
            table.add_row(
                f"{role}: {r.applies_to}", f"{r.unit} ({r.dimension.value})",
                f"{r.range.low}..{r.range.high}", r.range.basis.value, r.range.source,
            )  # fmt: skip
    console.print(table)


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _Unreadable(f"cannot read {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".jsonl":
            data: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Unreadable(f"{path} is not JSON: {exc}") from exc
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(i, dict) for i in items):
        raise _Unreadable(f"{path} must hold a JSON object or a list of objects")
    return items


class _Unreadable(ContractError):
    code = "unreadable_input"
    hint = "Give a JSON file (an object or a list) or JSON Lines (.jsonl) of footprints or BOMs."


def _check(record: dict[str, Any]) -> tuple[str, PcrCheck]:
    if "pcf" in record:
        return str(record.get("id", "")), check_footprint(record)
    return str(record.get("productId", "")), check_bom(record)


@pcr_app.command("check")
@handle_errors
def pcr_check(
    file: Annotated[Path, typer.Argument(help="Footprints (PACT v3 JSON) or BOMs: JSON/JSONL.")],
    json_out: JsonOut = False,
) -> None:
    """Check each footprint or BOM of FILE against the rule pack of the category it names.

    Exit 1 when a record breaks a rule or is far outside its range (the streams would refuse or
    hold it)."""
    results = [_check(r) for r in _records(file)]
    refused = [r for _, r in results if not r.accepted]
    if json_out:
        print_json([{"record": rid, **r.to_dict()} for rid, r in results])
    else:
        for rid, r in results:
            pack = r.pack.ref if r.pack else "-"
            if r.accepted:
                figure = f", {r.figure.normalize():f} kgCO2e/{r.unit}" if r.figure else ""
                why = f" ({pack}{figure})" if r.pack else f": {r.note}"
                console.print(f"OK: {rid} {r.outcome.value}{why}", markup=False)
            else:
                verdict = "HELD" if r.outcome is PcrOutcome.OUT_OF_RANGE else "FAIL"
                console.print(f"{verdict}: {rid} ({pack})", markup=False)
                for f in r.findings:
                    console.print(f"  {f.violation()}", markup=False)
    if refused:
        raise typer.Exit(int(ExitCode.REJECTED))


# --- pcfx review ----------------------------------------------------------------------------------


def _read(servers: str, topic: str, serde: ReviewSerde) -> Iterator[ReviewEvent]:
    from pcf_exchange.gateway.runtime import partition_count, read_to_end

    parts = [(topic, p) for p in range(partition_count(servers, topic))]
    for message in read_to_end(servers, parts):
        yield serde.decode(message.value() or b"")


def _book(servers: str, names: TopicNames) -> tuple[list[ReviewEvent], list[ReviewEvent]]:
    from pcf_exchange.contracts import KafkaSchemaRegistry

    registry = KafkaSchemaRegistry(servers, prefix=names.prefix)
    try:
        serde = ReviewSerde(registry)
        held = list(_read(servers, names.review, serde))
        decided = list(_read(servers, names.review_decisions, serde))
    finally:
        registry.close()
    return held, decided


def _servers(bootstrap: str | None) -> str:
    from pcf_exchange.pcfx.settings import bootstrap_servers

    return bootstrap_servers(bootstrap)


def _find(held: list[ReviewEvent], held_id: str) -> ReviewEvent:
    """The held record *held_id* names: its whole id (``topic/partition/offset``), a unique
    prefix, or its unique last parts (``partition/offset``, or the offset alone);
    :func:`pcfx.tables.resolve_id` refuses an ambiguous one (exit 2), an unknown one is
    refused here (exit 1)."""
    wanted = resolve_id(held_id, (e.held_id for e in held), "held record", also=(_tail,))
    found = [e for e in held if e.held_id == wanted]
    if len(found) != 1:
        raise ReviewStateError(
            f"held id must name one held record (got {held_id!r}: no match among {len(held)} held)"
        )
    return found[0]


_tail = ends_with_part("/")
HeldId = Annotated[
    str,
    typer.Argument(
        help="topic/partition/offset from 'pcfx review list', a unique prefix, or its unique"
        " end (partition/offset, or the offset)."
    ),
]


@review_app.command("list")
@handle_errors
def review_list(
    show_all: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
    json_out: JsonOut = False,
    bootstrap: Bootstrap = None,
    topic_prefix: TopicPrefix = "",
) -> None:
    """Records held for review (pending unless --all), oldest first."""
    held, decided = _book(_servers(bootstrap), TopicNames(topic_prefix))
    by_id = {e.held_id: e for e in decided}
    rows = held if show_all else pending(held, decided)
    if json_out:
        print_json(
            [
                {
                    **e.to_dict(),
                    "state": _state(by_id.get(e.held_id)),
                    "decidedBy": _by(by_id.get(e.held_id)),
                }
                for e in rows
            ]
        )
        return
    table = Table("held id", "state", "subject", "pack", "rule", "why", title=f"{len(rows)} held")
    for e in rows:
        table.add_row(e.held_id, _state(by_id.get(e.held_id)), e.subject, e.pack, e.rule, e.reason)
    console.print(table)


def _state(decision: ReviewEvent | None) -> str:
    return (
        "pending"
        if decision is None or decision.decision is None
        else decision.decision.state.value
    )


def _by(decision: ReviewEvent | None) -> str | None:
    return None if decision is None or decision.decision is None else decision.decision.signer_id


@review_app.command("show")
@handle_errors
def review_show(
    held_id: HeldId,
    json_out: JsonOut = False,
    bootstrap: Bootstrap = None,
    topic_prefix: TopicPrefix = "",
) -> None:
    """One held record: why it is held, and any decision on it."""
    held, decided = _book(_servers(bootstrap), TopicNames(topic_prefix))
    event = _find(held, held_id)
    decision = next((e for e in decided if e.held_id == event.held_id), None)
    if json_out:
        print_json(
            {**event.to_dict(), "decision": None if decision is None else decision.to_dict()}
        )
        return
    console.print(f"[bold]{event.held_id}[/] {event.subject}", highlight=False)
    console.print(
        f"held at {event.at.isoformat()} by rule {event.rule} of pack {event.pack}:"
        f" '{event.field_path}' {event.reason}",
        markup=False,
    )
    console.print(f"content hash {event.content_hash}, {len(event.original)} bytes", markup=False)
    if decision is None or decision.decision is None:
        console.print("pending: pcfx review release|reject ID --key OFFICER.pem --reason TEXT")
    else:
        d = decision.decision
        console.print(
            f"{d.state.value} by {d.signer_id} (key {d.key_id}) at {decision.at.isoformat()}:"
            f" {decision.reason}",
            markup=False,
        )


def _decide(
    held_id: str,
    state: DecisionState,
    key: Path,
    secret: bytes | None,
    reason: str,
    bootstrap: str | None,
    topic_prefix: str,
    json_out: bool,
) -> None:
    from confluent_kafka import KafkaException, Producer

    from pcf_exchange.contracts import KafkaSchemaRegistry
    from pcf_exchange.contracts.kafka_client import librdkafka_config
    from pcf_exchange.producers.keys import load_signer

    officer = load_signer(key, secret)
    servers = _servers(bootstrap)
    names = TopicNames(topic_prefix)
    held, decided = _book(servers, names)
    event = _find(held, held_id)
    held_id = event.held_id
    if any(e.held_id == held_id for e in decided):
        raise ReviewStateError(f"held record {held_id} was decided already")
    try:
        signed = decide(
            event,
            state,
            reason=reason,
            private_key=officer.private_key,
            signer_id=officer.owner,
            key_id=officer.key_id,
            now=datetime.now(UTC),
        )
    except ValueError as exc:
        raise ReviewStateError(str(exc)) from exc
    registry = KafkaSchemaRegistry(servers, prefix=topic_prefix)
    try:
        value = ReviewSerde(registry).encode(names.review_decisions, signed)
    finally:
        registry.close()
    # no compression: the streams read it with aiokafka, which has no lz4 codec installed
    config = {**librdkafka_config(), "bootstrap.servers": servers, "acks": "all"}
    producer = Producer({**config, "enable.idempotence": True})
    try:
        producer.produce(
            names.review_decisions,
            key=event.subject.encode(),
            value=value,
            partition=event.source_partition,
        )
        if producer.flush(30) != 0:
            raise BrokerError(f"the decision on {held_id} was not acknowledged by the broker")
    except KafkaException as exc:
        raise BrokerError(f"cannot write the decision on {held_id}: {exc}") from exc
    if json_out:
        print_json(signed.to_dict())
        return
    then = (
        "ingest it again with its range waived"
        if state is DecisionState.RELEASED
        else "send it to pcf.rejected naming you and the reason"
    )
    console.print(
        f"OK: {held_id} {state.value} by {officer.owner} (key {officer.key_id}); the streams"
        f" check the key's registration (role officer), then {then}",
        markup=False,
    )


KeyFile = Annotated[Path, typer.Option("--key", help="The compliance officer's private key file.")]
Reason = Annotated[str, typer.Option("--reason", help="Why (kept with the decision).")]


@review_app.command("release")
@handle_errors
def review_release(
    held_id: HeldId,
    key: KeyFile,
    reason: Reason,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    json_out: JsonOut = False,
    bootstrap: Bootstrap = None,
    topic_prefix: TopicPrefix = "",
) -> None:
    """Release a held record: the figure is right; it is ingested again and accepted."""
    secret = passphrase(passphrase_file, passphrase_env)
    _decide(held_id, DecisionState.RELEASED, key, secret, reason, bootstrap, topic_prefix, json_out)


@review_app.command("reject")
@handle_errors
def review_reject(
    held_id: HeldId,
    key: KeyFile,
    reason: Reason,
    passphrase_file: PassphraseFile = None,
    passphrase_env: PassphraseEnv = None,
    json_out: JsonOut = False,
    bootstrap: Bootstrap = None,
    topic_prefix: TopicPrefix = "",
) -> None:
    """Reject a held record: it goes to pcf.rejected naming you and the reason."""
    secret = passphrase(passphrase_file, passphrase_env)
    _decide(held_id, DecisionState.REJECTED, key, secret, reason, bootstrap, topic_prefix, json_out)
