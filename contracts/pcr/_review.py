"""Review of held records: the events on ``pcf.review`` / ``pcf.review.decisions``, their Avro,
and the officer's signed decision.

A record whose figure is far outside its category's plausible range (:mod:`contracts.pcr._check`)
is neither accepted nor dropped. The streams write a ``held`` :class:`ReviewEvent` to
``pcf.review`` (the record's bytes as received, the pack, rule, field and why); a compliance
officer lists them (``pcfx review list|show``) and decides: ``pcfx review release|reject ID
--key officer.key.pem --reason TEXT`` writes a ``decided`` event to ``pcf.review.decisions``,
signed with the officer's Ed25519 key (registered on ``pcf.keys`` with role ``officer``, as for
the gateway's approvals). The streams act on it (:func:`check_decision`, then
:func:`streams._ingest_step.screen` with the range waived for a release, or the DLQ for a
rejection, naming the officer and the reason).

What is signed (:func:`decision_statement`): ``pae(PAYLOAD_REVIEW_DECISION, canonical_json({
"at", "contentHash", "heldId", "keyId", "pack", "reason", "rule", "signerId", "state"}))``: the
decision names the held record by its coordinates *and* its content hash, so it cannot be copied
onto another record.

:func:`check_decision` judges one ``decided`` event, in order:

1. it carries a decision (``unsigned`` otherwise);
2. the key is registered for that signer (``unknown_key``);
3. the registration has role ``officer`` (``wrong_role``);
4. the key was usable when the broker appended the decision (``revoked_key`` /
   ``expired_key`` / ``key_not_yet_valid``);
5. the signature verifies over the statement rebuilt from the event (``bad_signature``).

The streams then also check that the record's bytes re-check to the signed content hash.
Pure, apart from :class:`ReviewSerde`'s schema registry.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pcf_exchange.contracts._records import SignerRole
from pcf_exchange.contracts._registry import SchemaRegistry
from pcf_exchange.contracts._serde import frame, subject_for, unframe
from pcf_exchange.contracts.canonical import canonical_json, pae
from pcf_exchange.contracts.errors import SerdeError, TrustError
from pcf_exchange.contracts.keyring import Keyring

__all__ = [
    "PAYLOAD_REVIEW_DECISION",
    "REVIEW_SCHEMA",
    "REVIEW_TOPICS",
    "DecisionState",
    "ReviewDecision",
    "ReviewEvent",
    "ReviewSerde",
    "check_decision",
    "decide",
    "decision_statement",
    "held_id",
    "pending",
    "review_schemas",
]

PAYLOAD_REVIEW_DECISION: Final = "application/vnd.pcfx.review-decision+json"
REVIEW_SCHEMA: Final = "ReviewEvent"
REVIEW_TOPICS: Final = ("pcf.review", "pcf.review.decisions")
"""The topics of :class:`ReviewEvent` (held records; officers' decisions), without a prefix:
their schema is registered with every topic's (:func:`contracts.topic_schemas`)."""


class DecisionState(StrEnum):
    RELEASED = "released"
    """The figure is right: the record re-enters ingestion and is accepted (range waived)."""
    REJECTED = "rejected"
    """The figure is wrong: the record goes to the DLQ, naming the officer and the reason."""


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    state: DecisionState
    signer_id: str
    key_id: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class ReviewEvent:
    """A ``held`` or ``decided`` event (see the module docstring and ``ReviewEvent.avsc``)."""

    event: str
    held_id: str
    at: datetime
    subject: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_appended_at: datetime
    content_hash: str
    pack: str
    rule: str
    field_path: str
    reason: str
    original: bytes
    decision: ReviewDecision | None = None

    def to_datum(self) -> dict[str, Any]:
        d = self.decision
        return {
            "event": self.event,
            "heldId": self.held_id,
            "at": self.at.astimezone(UTC).isoformat(),
            "subject": self.subject,
            "sourceTopic": self.source_topic,
            "sourcePartition": self.source_partition,
            "sourceOffset": self.source_offset,
            "sourceAppendedAt": self.source_appended_at.astimezone(UTC).isoformat(),
            "contentHash": self.content_hash,
            "pack": self.pack,
            "rule": self.rule,
            "fieldPath": self.field_path,
            "reason": self.reason,
            "original": self.original,
            "decision": None
            if d is None
            else {
                "state": d.state.value,
                "signerId": d.signer_id,
                "keyId": d.key_id,
                "signature": d.signature,
            },
        }

    @classmethod
    def from_datum(cls, datum: dict[str, Any]) -> ReviewEvent:
        d = datum.get("decision")
        try:
            decision = (
                None
                if d is None
                else ReviewDecision(
                    DecisionState(d["state"]), d["signerId"], d["keyId"], bytes(d["signature"])
                )
            )
            at = datetime.fromisoformat(datum["at"])
            appended = datetime.fromisoformat(datum["sourceAppendedAt"])
        except ValueError as exc:
            raise SerdeError(f"review event {datum.get('heldId')!r}: {exc}") from exc
        return cls(
            event=datum["event"],
            held_id=datum["heldId"],
            at=at,
            subject=datum["subject"],
            source_topic=datum["sourceTopic"],
            source_partition=datum["sourcePartition"],
            source_offset=datum["sourceOffset"],
            source_appended_at=appended,
            content_hash=datum["contentHash"],
            pack=datum["pack"],
            rule=datum["rule"],
            field_path=datum["fieldPath"],
            reason=datum["reason"],
            original=bytes(datum["original"]),
            decision=decision,
        )

    def to_dict(self) -> dict[str, Any]:
        """camelCase, for ``--json`` (the original as its size, not its bytes)."""
        out = self.to_datum()
        out["original"] = len(self.original)
        if self.decision is not None:
            out["decision"] = {
                "state": self.decision.state.value,
                "signerId": self.decision.signer_id,
                "keyId": self.decision.key_id,
            }
        return out


def held_id(topic: str, partition: int, offset: int) -> str:
    """How a held record is named: its coordinates on its data topic."""
    return f"{topic}/{partition}/{offset}"


def decision_statement(
    event: ReviewEvent, state: DecisionState, signer_id: str, key_id: str
) -> bytes:
    """The exact bytes an officer's signature covers (see the module docstring)."""
    body = {
        "at": event.at.astimezone(UTC).isoformat(),
        "contentHash": event.content_hash,
        "heldId": event.held_id,
        "keyId": key_id,
        "pack": event.pack,
        "reason": event.reason,
        "rule": event.rule,
        "signerId": signer_id,
        "state": state.value,
    }
    return pae(PAYLOAD_REVIEW_DECISION, canonical_json(body))


def decide(
    held: ReviewEvent,
    state: DecisionState,
    *,
    reason: str,
    private_key: Ed25519PrivateKey,
    signer_id: str,
    key_id: str,
    now: datetime,
) -> ReviewEvent:
    """The signed ``decided`` event for a ``held`` one; refuses anything else, or no reason."""
    if held.event != "held":
        raise ValueError(f"{held.held_id}: only a held record can be decided (got {held.event})")
    if not reason.strip():
        raise ValueError(f"{held.held_id}: a decision needs a reason (got an empty one)")
    if now.tzinfo is None:
        raise ValueError("'now' must be timezone-aware (got a naive datetime)")
    event = replace(held, event="decided", at=now, reason=reason.strip(), decision=None)
    signature = private_key.sign(decision_statement(event, state, signer_id, key_id))
    return replace(event, decision=ReviewDecision(state, signer_id, key_id, signature))


def check_decision(
    event: ReviewEvent, keyring: Keyring, appended_at: datetime
) -> TrustError | None:
    """Why a ``decided`` event cannot be acted on (steps 1-5 of the module docstring), or
    ``None``: it is an officer's, under a key usable when it was appended, and verifies.
    Steps 2-4 are the one check every consumer of signed records makes
    (:meth:`~contracts.keyring.Keyring.authorize`), as for the gateway's approvals."""
    d = event.decision
    if event.event != "decided" or d is None:  # (1)
        return TrustError(
            f"review event {event.held_id} carries no signed decision", reason="unsigned"
        )
    registration = keyring.authorize(  # (2)-(4)
        d.signer_id, d.key_id, role=SignerRole.OFFICER, at=appended_at
    )
    if isinstance(registration, TrustError):
        return registration
    statement = decision_statement(event, d.state, d.signer_id, d.key_id)
    try:  # (5)
        Ed25519PublicKey.from_public_bytes(registration.public_key).verify(d.signature, statement)
    except (InvalidSignature, ValueError):
        return TrustError(
            f"the decision on {event.held_id} does not verify under key {d.key_id!r} of"
            f" {d.signer_id!r}",
            reason="bad_signature",
        )
    return None


def pending(held: Iterable[ReviewEvent], decided: Iterable[ReviewEvent]) -> list[ReviewEvent]:
    """The held records no decision names yet, in the order they were held."""
    done = {e.held_id for e in decided}
    return [e for e in held if e.held_id not in done]


# --- Avro: Confluent framing through the schema registry ----------------------------------------


@cache
def _schema_text() -> str:
    return (
        resources.files("pcf_exchange.contracts.pcr")
        .joinpath("schemas", f"{REVIEW_SCHEMA}.avsc")
        .read_text()
    )


@cache
def _parsed() -> Any:
    return parse_schema(json.loads(_schema_text()), named_schemas={})


def review_schemas(topics: Iterable[str]) -> list[tuple[str, str]]:
    """(subject, schema text) for the review topics (full names), to register."""
    return [(subject_for(topic), _schema_text()) for topic in topics]


class ReviewSerde:
    """Encode and decode :class:`ReviewEvent` with Confluent framing (magic byte + schema id)."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self._ids: dict[str, int] = {}
        self._known: set[int] = set()

    def schema_id(self, topic: str) -> int:
        schema_id = self._ids.get(topic)
        if schema_id is None:
            schema_id = self.registry.lookup(subject_for(topic), _schema_text())
            self._ids[topic] = schema_id
            self._known.add(schema_id)
        return schema_id

    def encode(self, topic: str, event: ReviewEvent) -> bytes:
        out = io.BytesIO()
        schemaless_writer(out, _parsed(), event.to_datum())
        return frame(self.schema_id(topic), out.getvalue())

    def decode(self, data: bytes) -> ReviewEvent:
        schema_id, payload = unframe(data)
        if schema_id not in self._known:
            writer = json.loads(self.registry.get_schema(schema_id))
            if writer.get("name") != REVIEW_SCHEMA:
                raise SerdeError(
                    f"schema id {schema_id} is {writer.get('name')!r}, not {REVIEW_SCHEMA!r}"
                )
            self._known.add(schema_id)
        try:
            datum = schemaless_reader(io.BytesIO(bytes(payload)), _parsed(), _parsed())
        except (EOFError, ValueError, TypeError, IndexError) as exc:
            raise SerdeError(f"a review event is not valid {REVIEW_SCHEMA} Avro: {exc}") from exc
        assert isinstance(datum, dict)
        return ReviewEvent.from_datum(datum)
