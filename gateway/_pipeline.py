"""The gateway's pure core in its written order, and the seam that commits its output.

``prepare_transfer``: (1) decide → (2) transform → (3) encrypt → (4) audit entry; then, once per
batch, (5) sign (:meth:`~gateway._sealing.OutboundBatch.sign`: one Merkle root, one signature);
then (6) a ``TransferSink`` commits messages and audit entries together or neither (no audit, no
transfer).

Crypto is per batch, not per record (ARCHITECTURE decision 12): the caller opens one
:class:`~gateway._sealing.OutboundBatch` per unit it commits (the runner: one per Kafka
transaction) and passes it to every ``prepare_transfer`` of that unit. The batch encapsulates
once per recipient and signs once; each record is still encrypted and proven on its own. The
ciphertext is final as soon as the record is encrypted (the signature covers the plaintext), so
each audit entry binds its transfer (message id, ciphertext SHA-256) in step (4), before the
batch is signed. Without a batch, ``prepare_transfer`` seals a batch of one itself and returns
the signed message in ``PreparedTransfer.outbound``.

**A recipient's history stays consistent** (issue #22): once a recipient was sent a footprint as
``Deprecated``, it is never sent that footprint as ``Active`` again. The transfer of a
``Deprecated`` footprint says so in its audit entry (the reason :data:`DEPRECATED_NOTE`), so a
gateway that resumes a chain knows, from the chain alone, which footprints each recipient has
seen retired (:func:`retired_by`); a later ``Active`` copy of one of them (a re-release after a
streams restart, or a result that came back to an earlier one: the footprint id is the
result's deterministic UUID) gets a ``transfer_blocked`` entry naming why
(:func:`reactivation_entry`, reason code ``reactivated``) and goes nowhere.

**A copy for the PACT API.** Given ``api_key`` (the API service's X25519 public key), a record
that goes is also encrypted, in step (3), to that key: the *same* envelope (same message id,
same recipient id inside it), added to the same batch right after the recipient's copy, so the
batch signature covers both and the one audit entry of step (4) covers the decision that
released them. The API opens it with its own key and serves the footprint to that recipient's
clients only (decision 13: the API serves what the gateway released).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from pcf_exchange.gateway._approvals import Approval, ApprovalState, request_approval
from pcf_exchange.gateway._errors import CommitFailed
from pcf_exchange.gateway._sealing import EncryptedRecord, GatewayKey, OutboundBatch, SealedMessage
from pcf_exchange.gateway.audit._entry import (
    AuditEntry,
    ChainHead,
    Checkpoint,
    EntryKind,
    append_entry,
    chain_entries,
    chain_new_entry,
    format_time,
    make_checkpoint,
)
from pcf_exchange.gateway.audit._store import AuditStore, InMemoryAuditStore
from pcf_exchange.gateway.policy._counters import CounterState
from pcf_exchange.gateway.policy._decision import Outcome, PolicyDecision, Reason
from pcf_exchange.gateway.policy._evaluate import DecisionTime, evaluate
from pcf_exchange.gateway.policy._model import CounterMetric, Mechanism, Policy
from pcf_exchange.gateway.policy._transforms import apply

__all__ = [
    "DEPRECATED_NOTE",
    "Gateway",
    "GatewaySecrets",
    "InMemoryTransferSink",
    "PreparedTransfer",
    "Retired",
    "TransferRequest",
    "TransferSink",
    "prepare_approval_event",
    "prepare_transfer",
    "prepare_transfers",
    "reactivation_entry",
    "retired_by",
]

DEPRECATED_NOTE = "deprecated|status|"
"""The reason (``code|path|rule``) a transfer's audit entry carries when the footprint it sent
was ``Deprecated``: the recipient has seen it retired."""


@dataclass(frozen=True)
class GatewaySecrets:
    """What the gateway signs and pseudonymises with (loaded by the shell, never logged)."""

    signer: GatewayKey
    pseudonym_secret: bytes
    log_id: str = "pcfx-gateway"


@dataclass(frozen=True)
class PreparedTransfer:
    """Everything one record produces, ready to commit as one unit."""

    decision: PolicyDecision
    outbound: SealedMessage | None
    """The signed message, when ``prepare_transfer`` sealed a batch of one itself (no *batch*
    given) and the record goes; with a batch, the caller gets it from ``batch.sign()``."""
    entries: tuple[AuditEntry, ...]
    head: ChainHead
    """The chain head after ``entries``: adopt it only once the commit succeeded."""
    counters: CounterState
    """The PI counters after the transfer: adopt them only once the commit succeeded."""
    approval: Approval | None = None
    """The pending approval request opened for a held decision."""
    encrypted: EncryptedRecord | None = None
    """``None`` unless the record goes out (allowed/transformed, or held and approved)."""
    api_copy: EncryptedRecord | None = None
    """The same envelope encrypted to the API service (``api_key`` given and the record goes);
    in the batch right after :attr:`encrypted`."""

    @property
    def goes(self) -> bool:
        """The record goes out (it was encrypted for its recipient)."""
        return self.encrypted is not None


def new_message_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` gives it, without the ``UUID``
    object: 16 bytes from the OS, the version and variant bits set, hex with dashes."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    x = raw.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _reason_code(reason: Reason) -> str:
    return f"{reason.code}|{reason.path or ''}|{reason.rule_id or ''}"


def _draft(
    decision: PolicyDecision, kind: EntryKind, recorded_at: str, **extra: Any
) -> dict[str, Any]:
    """The audit entry's fields for a decision (seq and hashes are added by the chain).

    The fields a layout fixes (:func:`_layout_fields`) are built once per compiled layout and
    kept on it; the rest are the decision's own.
    """
    layout = decision.layout
    if layout is not None and layout.fields is decision.fields:
        fixed = layout.audit_fields
        if fixed is None:
            fixed = layout.audit_fields = _layout_fields(decision)
    else:
        fixed = _layout_fields(decision)
    delta = decision.counter_delta if kind is EntryKind.TRANSFER else None  # counted if sent
    return dict(
        fixed,
        kind=kind.value,
        recorded_at=recorded_at,
        decision_id=decision.decision_id,
        record_pf_id=decision.record_ref.pf_id,
        record_sha256=decision.record_ref.sha256,
        outcome=decision.outcome.value,
        mechanisms=_mechanism_dicts(decision.mechanisms),
        reasons=tuple(_reason_code(r) for r in decision.reasons),
        pi_individuals_added=delta.added_count(CounterMetric.PI_INDIVIDUALS) if delta else 0,
        sensitive_pi_individuals_added=(
            delta.added_count(CounterMetric.SENSITIVE_PI_INDIVIDUALS) if delta else 0
        ),
        **extra,
    )


_MECHANISMS: dict[tuple[Mechanism, ...], tuple[dict[str, Any], ...]] = {}


def _mechanism_dicts(mechanisms: tuple[Mechanism, ...]) -> tuple[dict[str, Any], ...]:
    """``m.to_dict()`` of each mechanism, fresh dicts copied from one kept per distinct tuple
    (a recipient's few mechanisms repeat on every record)."""
    if not mechanisms:
        return ()
    found = _MECHANISMS.get(mechanisms)
    if found is None:
        if len(_MECHANISMS) >= 1024:
            _MECHANISMS.clear()
        found = _MECHANISMS[mechanisms] = tuple(m.to_dict() for m in mechanisms)
    return tuple(dict(m) for m in found)


def _layout_fields(decision: PolicyDecision) -> dict[str, Any]:
    """The audit fields that depend only on what a compiled layout fixes: the recipient (and so
    its jurisdiction, destination group and type), the purpose, the policy, the record grade and
    the field actions."""
    recipient = decision.recipient
    return dict(
        recipient_id=decision.recipient_id,
        jurisdiction=recipient.jurisdiction if recipient else None,
        destination=decision.destination.value if decision.destination else None,
        recipient_type=recipient.type.value if recipient else None,
        purpose=decision.purpose,
        record_grade=decision.record_grade.value,
        policy_id=decision.policy_id,
        policy_version=decision.policy_version,
        policy_digest=decision.policy_digest,
        field_actions=decision.field_actions(),
    )


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """One record to decide for one recipient and purpose (an item of :func:`prepare_transfers`;
    the fields are :func:`prepare_transfer`'s arguments of the same names)."""

    record: Mapping[str, Any]
    recipient: str
    purpose: str
    approval: Approval | None = None
    message_id: str | None = None
    record_hash: str | None = None
    note: str | None = None
    api_key: bytes | X25519PublicKey | None = None


def prepare_transfer(
    policy: Policy,
    record: Mapping[str, Any],
    *,
    recipient: str,
    purpose: str,
    counters: CounterState,
    head: ChainHead,
    secrets: GatewaySecrets,
    now: datetime,
    approval: Approval | None = None,
    message_id: str | None = None,
    requested_by: str = "gateway",
    record_hash: str | None = None,
    batch: OutboundBatch | None = None,
    note: str | None = None,
    api_key: bytes | X25519PublicKey | None = None,
) -> PreparedTransfer:
    """Run the core for one record: :func:`prepare_transfers` of one request.

    (1) decide; (2) transform (only if the record may go); (3) encrypt the envelope into
    *batch*; (4) chain one audit entry whatever the outcome (blocked, held, sent). Without a
    *batch*, (5) a batch of one is signed here and ``outbound`` holds the message.
    *record_hash*, if the caller already holds the record's canonical SHA-256, saves hashing it.
    *note* (e.g. :data:`DEPRECATED_NOTE`) is added to the reasons of the entry of a transfer that
    goes (not to a held or blocked one).
    *api_key*: also encrypt the envelope to the API service (see the module docstring).
    """
    request = TransferRequest(
        record, recipient, purpose, approval, message_id, record_hash, note, api_key
    )
    return prepare_transfers(
        policy,
        (request,),
        counters=counters,
        head=head,
        secrets=secrets,
        now=now,
        requested_by=requested_by,
        batch=batch,
    )[0]


_ALLOWED, _TRANSFORMED, _HELD = Outcome.ALLOWED, Outcome.TRANSFORMED, Outcome.HELD


def _envelopes(
    going: Sequence[tuple[TransferRequest, PolicyDecision]], secret: bytes, stamp: str
) -> Iterator[tuple[Mapping[str, Any], bytes | X25519PublicKey]]:
    """Step (2) of :func:`prepare_transfers`: each record that goes, transformed into its
    envelope, with the recipient's key (then, with an ``api_key``, the same envelope again with
    the API's key), as the batch encrypts them."""
    for request, decision in going:
        assert decision.recipient is not None
        transformed = apply(
            decision, request.record, pseudonym_secret=secret, approval=request.approval
        )
        envelope = transformed.envelope(
            message_id=request.message_id or new_message_id(), issued_at=stamp
        )
        # the envelope is built from decided leaves: a binary float blocks the record and the
        # transforms drop non-string keys, so canonical JSON need not look for them again
        yield envelope, decision.recipient.encryption_key
        if request.api_key is not None:  # the same envelope, for delivery through the API
            yield envelope, request.api_key


def prepare_transfers(
    policy: Policy,
    requests: Sequence[TransferRequest],
    *,
    counters: CounterState,
    head: ChainHead,
    secrets: GatewaySecrets,
    now: datetime,
    requested_by: str = "gateway",
    batch: OutboundBatch | None = None,
) -> list[PreparedTransfer]:
    """Run the core for a batch of records, stage by stage; no I/O, nothing committed.

    (1) decide every request, in order (a decision sees the PI counters after the records before
    it that go); (2) transform every record that may go into its envelope; (3) encrypt them all
    into *batch* in order (each recipient's copy, then the API's copy if the request has an
    ``api_key``); (4) chain one audit entry per request, in order, whatever the outcome. Without a
    *batch*, (5) one batch of all of them is signed here and each ``outbound`` holds its message.

    The result is, request for request, what :func:`prepare_transfer` gives when called on each
    in turn with the previous one's ``head`` and ``counters`` and the same *now* (a property
    test pins it; message ids and nonces are random either way): ``head`` and ``counters`` of
    item ``i`` are the state after request ``i``, so the last item's are the batch's.
    """
    stamp = format_time(now)
    secret = secrets.pseudonym_secret
    when = DecisionTime.of(now)  # what every decision reads off *now*, once
    # (1) decide, in order
    decided: list[tuple[PolicyDecision, bool, str | None, CounterState]] = []
    for request in requests:
        decision = evaluate(
            policy,
            request.record,
            request.recipient,
            request.purpose,
            counters,
            when,
            record_hash=request.record_hash,
        )
        outcome = decision.outcome
        goes = outcome is _ALLOWED or outcome is _TRANSFORMED
        problem = None
        if outcome is _HELD and request.approval is not None:
            problem = request.approval.problem_for(decision)
            goes = problem is None
        if goes and decision.counter_delta is not None:
            counters = counters.apply(decision.counter_delta)
        decided.append((decision, goes, problem, counters))
    # (2) + (3) transform what goes into envelopes (the recipient's copy, then the API's) and
    # encrypt them, into the caller's batch or one signed here. The envelopes are made as the
    # batch encrypts them (a generator), so each dies once encrypted: a thousand transformed
    # footprints held at once cost the garbage collector more than the separate stage saves.
    going = [
        (request, decision)
        for request, (decision, goes, _, _) in zip(requests, decided, strict=True)
        if goes
    ]
    own = batch is None
    encrypted: list[EncryptedRecord] = []
    signed: tuple[SealedMessage, ...] = ()
    if going:
        into = OutboundBatch(secrets.signer) if batch is None else batch
        encrypted = into.add_all(_envelopes(going, secret, stamp), checked=True)
        if own:  # (5) a batch of its own, signed here
            signed = into.sign()
    # (4) the audit entries' fields, then chained in order
    drafts: list[dict[str, Any]] = []
    made: list[tuple[EncryptedRecord | None, EncryptedRecord | None, SealedMessage | None]] = []
    opened: list[Approval | None] = []
    at = 0  # position of the next record's copies in `encrypted` (and in `signed`)
    for request, (decision, goes, problem, _) in zip(requests, decided, strict=True):
        approval = request.approval
        pending: Approval | None = None
        if goes:
            record, outbound = encrypted[at], (signed[at] if own else None)
            copy = None
            at += 1
            if request.api_key is not None:
                copy = encrypted[at]
                at += 1
            made.append((record, copy, outbound))
            draft = _draft(
                decision,
                EntryKind.TRANSFER,
                stamp,
                message_id=record.message_id,
                outbound_sha256=record.ciphertext_sha256,
                approval_id=approval.approval_id if approval else None,
            )
            if request.note is not None:
                draft["reasons"] = (*draft["reasons"], request.note)
        elif decision.outcome is _HELD and approval is None:
            made.append((None, None, None))
            pending = request_approval(decision, requested_by=requested_by, now=now)
            draft = _draft(
                decision, EntryKind.TRANSFER_HELD, stamp, approval_id=pending.approval_id
            )
        else:
            made.append((None, None, None))
            extra: dict[str, Any] = {}
            if approval is not None:
                extra = {"approval_id": approval.approval_id, "approval_reason": problem}
            draft = _draft(decision, EntryKind.TRANSFER_BLOCKED, stamp, **extra)
        drafts.append(draft)
        opened.append(pending)
    entries, heads = chain_entries(head, drafts)
    return [
        PreparedTransfer(decision, outbound, (entry,), new_head, after, pending, record, copy)
        for (decision, _, _, after), (record, copy, outbound), entry, new_head, pending in zip(
            decided, made, entries, heads, opened, strict=True
        )
    ]


class Retired:
    """The (recipient id, footprint id) pairs a chain sent as ``Deprecated``, kept small.

    The set grows by one pair per deprecation sent, for as long as the chain lives (a footprint
    id may be issued again at any later time). A pair of strings costs ~305 bytes in a Python
    set; here a footprint id in its canonical UUID form (PACT's) is kept as its 128-bit integer
    under its recipient, ~123 bytes (tracemalloc, 20 000 pairs); any other id is kept as it is.
    Membership is exact."""

    __slots__ = ("_ids",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._ids: dict[str, set[int | str]] = {}
        for pair in pairs:
            self.add(pair)

    @staticmethod
    def _key(pf_id: str) -> int | str:
        try:
            value = uuid.UUID(pf_id)
        except ValueError:
            return pf_id
        return value.int if str(value) == pf_id else pf_id

    def add(self, pair: tuple[str, str]) -> None:
        recipient, pf_id = pair
        self._ids.setdefault(recipient, set()).add(self._key(pf_id))

    def __contains__(self, pair: object) -> bool:
        if not isinstance(pair, tuple) or len(pair) != 2:
            return False
        ids = self._ids.get(pair[0])
        return ids is not None and self._key(pair[1]) in ids

    def __ior__(self, other: Retired) -> Retired:
        for recipient, ids in other._ids.items():
            self._ids.setdefault(recipient, set()).update(ids)
        return self

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for recipient, ids in self._ids.items():
            for key in ids:
                yield recipient, str(uuid.UUID(int=key)) if isinstance(key, int) else key

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._ids.values())


def retired_by(entries: Sequence[AuditEntry]) -> Retired:
    """(recipient id, footprint id) of every ``Deprecated`` footprint a chain's *entries* show
    as sent (a ``transfer`` entry with a message id and :data:`DEPRECATED_NOTE`)."""
    return Retired(
        (e.recipient_id, e.record_pf_id)
        for e in entries
        if e.kind == EntryKind.TRANSFER.value
        and e.message_id is not None
        and e.recipient_id is not None
        and e.record_pf_id is not None
        and DEPRECATED_NOTE in e.reasons
    )


def reactivation_entry(
    head: ChainHead,
    *,
    pf_id: str,
    recipient: str,
    purpose: str,
    record_sha256: str,
    where: str,
    now: datetime,
) -> tuple[AuditEntry, ChainHead]:
    """The ``transfer_blocked`` entry of an ``Active`` footprint *pf_id* that *recipient* was
    already sent as ``Deprecated``: it goes nowhere (reason code ``reactivated``)."""
    return chain_new_entry(
        head,
        {
            "kind": EntryKind.TRANSFER_BLOCKED.value,
            "recorded_at": format_time(now),
            "record_pf_id": pf_id,
            "record_sha256": record_sha256,
            "recipient_id": recipient,
            "purpose": purpose,
            "outcome": "blocked",
            "reasons": (
                f"reactivated|status|{where}",
                f"detail: footprint {pf_id} was already sent to {recipient} as Deprecated; a"
                " deprecated PACT footprint never becomes Active again, so this copy is not sent",
            ),
        },
    )


_APPROVAL_KINDS = {
    ApprovalState.APPROVED: EntryKind.APPROVAL_APPROVED,
    ApprovalState.DENIED: EntryKind.APPROVAL_DENIED,
    ApprovalState.EXPIRED: EntryKind.APPROVAL_EXPIRED,
}


def _held_groups(held: Sequence[tuple[str, str]]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    groups: dict[str, list[str]] = {}
    for path, rule in held:
        groups.setdefault(rule, []).append(path)
    return tuple(("hold", rule, tuple(paths)) for rule, paths in sorted(groups.items()))


def prepare_approval_event(
    approval: Approval, *, head: ChainHead, now: datetime
) -> tuple[AuditEntry, ChainHead]:
    """The audit entry for an approval's outcome (approved, denied or expired). Pure."""
    kind = _APPROVAL_KINDS.get(approval.state)
    if kind is None:
        raise ValueError(f"approval {approval.approval_id} is still pending: nothing to record")
    draft = AuditEntry(
        seq=0,
        prev_hash="",
        kind=kind.value,
        recorded_at=format_time(now),
        decision_id=approval.decision_id,
        record_pf_id=approval.record_ref.pf_id,
        record_sha256=approval.record_ref.sha256,
        recipient_id=approval.recipient_id,
        purpose=approval.purpose,
        outcome=approval.state.value,
        policy_version=approval.policy_version,
        field_actions=_held_groups(approval.held),
        reasons=approval.conditions,
        approval_id=approval.approval_id,
        approver=approval.approver,
        approval_reason=approval.reason,
    )
    return append_entry(head, draft)


# ----------------------------------------------------------------------------------------------
# (6) the commit seam


@runtime_checkable
class TransferSink(Protocol):
    """Commits outbound messages with their audit entries (and checkpoints) as one unit.

    Either everything becomes visible or nothing does, and if anything fails it raises
    :class:`CommitFailed`. The Kafka implementation uses one producer transaction. In-process
    implementations must write the audit first: then the worst failure is an audit entry for a
    message that never left, never a message without its audit entry.
    """

    def commit(
        self,
        outbound: Sequence[SealedMessage],
        entries: Sequence[AuditEntry],
        checkpoints: Sequence[Checkpoint] = (),
    ) -> None: ...


@dataclass
class InMemoryTransferSink:
    """Tests and dry runs: ``sent`` is what "left"; ``audit`` is any :class:`AuditStore`."""

    audit: AuditStore = field(default_factory=InMemoryAuditStore)
    sent: list[SealedMessage] = field(default_factory=list)

    def commit(
        self,
        outbound: Sequence[SealedMessage],
        entries: Sequence[AuditEntry],
        checkpoints: Sequence[Checkpoint] = (),
    ) -> None:
        # (a) audit first: the commit point. If it fails, nothing is published.
        try:
            self.audit.append(entries, checkpoints)
        except Exception as exc:  # the seam: any store failure becomes CommitFailed
            raise CommitFailed(
                f"audit write failed ({type(exc).__name__}: {exc}); {len(outbound)} outbound"
                " message(s) discarded"
            ) from exc
        # (b) publish (an in-memory append cannot fail)
        self.sent.extend(outbound)


class Gateway:
    """A thin stateful shell: runs the core, commits through the sink, then adopts the new state.

    If the commit fails, the chain head, counters and pending approvals stay as they were, so
    the record can simply be processed again.
    """

    def __init__(
        self,
        policy: Policy,
        secrets: GatewaySecrets,
        sink: TransferSink,
        *,
        counters: CounterState,
        head: ChainHead | None = None,
    ) -> None:
        self.policy = policy
        self.secrets = secrets
        self.sink = sink
        self.counters = counters
        self.head = head or ChainHead()
        self.pending: dict[str, Approval] = {}

    def process(
        self,
        record: Mapping[str, Any],
        *,
        recipient: str,
        purpose: str,
        now: datetime,
        approval: Approval | None = None,
    ) -> PreparedTransfer:
        prepared = prepare_transfer(
            self.policy,
            record,
            recipient=recipient,
            purpose=purpose,
            counters=self.counters,
            head=self.head,
            secrets=self.secrets,
            now=now,
            approval=approval,
        )
        # (6) commit both or neither; state moves only after a successful commit
        self.sink.commit([prepared.outbound] if prepared.outbound else [], prepared.entries)
        self.head, self.counters = prepared.head, prepared.counters
        if prepared.approval is not None:
            self.pending[prepared.approval.approval_id] = prepared.approval
        if approval is not None and prepared.outbound is not None:
            self.pending.pop(approval.approval_id, None)
        return prepared

    def record_approval(self, approval: Approval, *, now: datetime) -> AuditEntry:
        """Log an approval's outcome (approved, denied, expired) in the chain."""
        entry, head = prepare_approval_event(approval, head=self.head, now=now)
        self.sink.commit([], [entry])
        self.head = head
        if approval.state is not ApprovalState.APPROVED:
            self.pending.pop(approval.approval_id, None)
        return entry

    def checkpoint(self, *, now: datetime) -> Checkpoint:
        """Sign the current head and store the checkpoint."""
        cp = make_checkpoint(
            self.head, log_id=self.secrets.log_id, signer=self.secrets.signer, issued_at=now
        )
        self.sink.commit([], [], [cp])
        return cp
