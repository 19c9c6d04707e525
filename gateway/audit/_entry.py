"""Audit entries, the hash chain and signed checkpoints.

An entry's hash is its RFC 6962 leaf hash ``SHA-256(0x00 || pae(type, canonical body))`` and the
body holds ``prevHash``: one hash both chains the entries and feeds the signed Merkle tree.

The last entry of every batch the gateway commits carries a :class:`BatchSeal`: the writer's
Ed25519 signature over ``(log id, tree size, last entry hash)`` after that batch. It is not part
of the hashed body (it vouches for the body, like ``entryHash`` names it), so it costs one
signature per transaction, and it lets a restarted gateway tell the tail it wrote after its last
checkpoint from entries someone else appended (see ``gateway.audit._resume``).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from pcf_exchange.contracts._merkle import CompactRange, hash_leaf
from pcf_exchange.contracts.canonical import canonical_json, pae
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway._sealing import GatewayKey, KeyRing

__all__ = [
    "CHECKPOINT_TYPE",
    "ENTRY_TYPE",
    "GENESIS_HASH",
    "SEAL_TYPE",
    "AuditEntry",
    "BatchSeal",
    "ChainHead",
    "Checkpoint",
    "EntryKind",
    "FieldAction",
    "append_entry",
    "chain_entries",
    "chain_new_entry",
    "format_time",
    "make_checkpoint",
    "seal_entry",
]

ENTRY_TYPE = "application/vnd.pcfx.audit.entry+json;v=1"
CHECKPOINT_TYPE = "application/vnd.pcfx.audit.checkpoint+json;v=1"
SEAL_TYPE = "application/vnd.pcfx.audit.batch-seal+json;v=1"
GENESIS_HASH = "00" * 32
"""``prevHash`` of entry 0."""


def format_time(moment: datetime) -> str:
    """UTC, millisecond precision, ``Z``: what an Avro ``timestamp-millis`` round-trips exactly."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware (got a naive datetime)")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class EntryKind(enum.Enum):
    TRANSFER = "transfer"
    """A record went out (allowed or transformed)."""
    TRANSFER_BLOCKED = "transfer_blocked"
    TRANSFER_HELD = "transfer_held"
    """Held: an approval request was opened."""
    APPROVAL_APPROVED = "approval_approved"
    APPROVAL_DENIED = "approval_denied"
    APPROVAL_EXPIRED = "approval_expired"
    APPROVAL_REFUSED = "approval_refused"
    """A decision the gateway did not trust (unsigned, not an officer's key, forged, ...): the
    transfer stays held."""
    DISCLOSURE = "disclosure"
    """A footprint the PACT API served to a client (the API's own chain, ``pcfx-api``)."""


FieldAction = tuple[str, str, tuple[str, ...]]
"""``(action, rule id, field paths)``: every field the rule decided with that action."""


@dataclass(frozen=True)
class AuditEntry:
    """One decision or approval event, chained to the previous entry.

    Every field is part of the hashed body (``entry_hash`` aside), under the camelCase name in
    :meth:`body`. ``None`` fields are hashed as ``null``, so a storage mapping must keep them.
    """

    seq: int
    prev_hash: str
    kind: str
    recorded_at: str
    decision_id: str | None = None
    record_pf_id: str | None = None
    record_sha256: str | None = None
    recipient_id: str | None = None
    jurisdiction: str | None = None
    destination: str | None = None
    recipient_type: str | None = None
    purpose: str | None = None
    outcome: str | None = None
    record_grade: str | None = None
    mechanisms: tuple[Mapping[str, str], ...] = ()
    """``{kind, reference, expires}`` of each mechanism the transfer relied on."""
    policy_id: str | None = None
    policy_version: str | None = None
    policy_digest: str | None = None
    field_actions: tuple[FieldAction, ...] = ()
    reasons: tuple[str, ...] = ()
    approval_id: str | None = None
    approver: str | None = None
    approval_reason: str | None = None
    message_id: str | None = None
    outbound_sha256: str | None = None
    pi_individuals_added: int = 0
    sensitive_pi_individuals_added: int = 0
    entry_hash: str = ""
    seal: BatchSeal | None = None
    """Set on the last entry of a committed batch; not hashed (see :class:`BatchSeal`)."""

    def body(self) -> dict[str, Any]:
        """Everything that is hashed (all fields but ``entry_hash``), in canonical form."""
        body = self.body_except_actions()
        body["fieldActions"] = _actions_json(self.field_actions)
        return body

    def body_except_actions(self) -> dict[str, Any]:
        """:meth:`body` without ``fieldActions`` (encoders write that part once per layout)."""
        return {
            "seq": self.seq,
            "prevHash": self.prev_hash,
            "kind": self.kind,
            "recordedAt": self.recorded_at,
            "decisionId": self.decision_id,
            "record": {"pfId": self.record_pf_id, "sha256": self.record_sha256},
            "recipient": {
                "id": self.recipient_id,
                "jurisdiction": self.jurisdiction,
                "destination": self.destination,
                "type": self.recipient_type,
            },
            "purpose": self.purpose,
            "outcome": self.outcome,
            "recordGrade": self.record_grade,
            "mechanisms": [dict(m) for m in self.mechanisms],
            "policy": {
                "id": self.policy_id,
                "version": self.policy_version,
                "digest": self.policy_digest,
            },
            "reasons": list(self.reasons),
            "approval": {
                "id": self.approval_id,
                "approver": self.approver,
                "reason": self.approval_reason,
            },
            "messageId": self.message_id,
            "outboundSha256": self.outbound_sha256,
            "piIndividualsAdded": self.pi_individuals_added,
            "sensitivePiIndividualsAdded": self.sensitive_pi_individuals_added,
        }

    def canonical_bytes(self) -> bytes:
        """``pae(ENTRY_TYPE, canonical JSON body)``: the RFC 6962 leaf data.

        Byte for byte ``pae(ENTRY_TYPE, canonical_json(self.body()))`` (a property test pins it),
        in one encoder pass: the ``fieldActions`` member (the same for every record of a layout)
        is encoded once per distinct value and spliced in as an already-encoded fragment, and a
        flat check of the fields' types (exact ``str``/``int``/``bool``/``None``, mechanisms as
        dicts of those) stands in for the walk that looks for binary floats and non-string keys.
        An entry that fails the check (read from outside with odd types) or that orjson refuses
        (an integer beyond 64 bits) takes the general encoder, which converts or raises as before.
        """
        actions = _actions_bytes(self.field_actions)
        rest = self.body_except_actions()
        if _flat_plain(self.__dict__):
            rest["fieldActions"] = orjson.Fragment(actions)
            try:
                body = orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)
                return b"%s%d %s" % (_ENTRY_PAE, len(body), body)  # pae(ENTRY_TYPE, body)
            except orjson.JSONEncodeError:
                del rest["fieldActions"]
        # the general way, in three parts: the members sorting before and after fieldActions
        before = {k: rest.pop(k) for k in _BEFORE_ACTIONS}
        body = b"".join(
            (
                canonical_json(before)[:-1],
                b',"fieldActions":',
                actions,
                b",",
                canonical_json(rest)[1:],
            )
        )
        return pae(ENTRY_TYPE, body)

    def compute_hash(self) -> str:
        return hash_leaf(self.canonical_bytes()).hex()

    def to_json(self) -> dict[str, Any]:
        data = {**self.body(), "entryHash": self.entry_hash}
        if self.seal is not None:
            data["seal"] = self.seal.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Inverse of :meth:`to_json`. Shape errors are :class:`TrustError` (``malformed``)."""
        try:
            return cls(
                seq=int(data["seq"]),
                prev_hash=data["prevHash"],
                kind=data["kind"],
                recorded_at=data["recordedAt"],
                decision_id=data["decisionId"],
                record_pf_id=data["record"]["pfId"],
                record_sha256=data["record"]["sha256"],
                recipient_id=data["recipient"]["id"],
                jurisdiction=data["recipient"]["jurisdiction"],
                destination=data["recipient"]["destination"],
                recipient_type=data["recipient"]["type"],
                purpose=data["purpose"],
                outcome=data["outcome"],
                record_grade=data["recordGrade"],
                mechanisms=tuple(dict(m) for m in data["mechanisms"]),
                policy_id=data["policy"]["id"],
                policy_version=data["policy"]["version"],
                policy_digest=data["policy"]["digest"],
                field_actions=tuple(
                    (str(g["action"]), str(g["rule"]), tuple(map(str, g["paths"])))
                    for g in data["fieldActions"]
                ),
                reasons=tuple(data["reasons"]),
                approval_id=data["approval"]["id"],
                approver=data["approval"]["approver"],
                approval_reason=data["approval"]["reason"],
                message_id=data["messageId"],
                outbound_sha256=data["outboundSha256"],
                pi_individuals_added=int(data["piIndividualsAdded"]),
                sensitive_pi_individuals_added=int(data["sensitivePiIndividualsAdded"]),
                entry_hash=data["entryHash"],
                seal=None if data.get("seal") is None else BatchSeal.from_json(data["seal"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TrustError(f"audit entry is malformed: {exc!r}", reason="malformed") from exc


_ENTRY_PAE = b"PCFXv1 %d %s " % (len(ENTRY_TYPE.encode()), ENTRY_TYPE.encode())
"""What :func:`~contracts.canonical.pae` puts before the body's length for :data:`ENTRY_TYPE`
(the property test of :meth:`AuditEntry.canonical_bytes` pins the bytes)."""
_FIELDS = tuple(
    f.name for f in fields(AuditEntry) if f.name not in ("seq", "prev_hash", "entry_hash", "seal")
)
_BEFORE_ACTIONS = tuple(
    k for k in sorted(AuditEntry(0, "", "", "").body_except_actions()) if k < "fieldActions"
)
"""The body members that sort before ``fieldActions`` (``approval``, ``decisionId``)."""
_ACTIONS_CACHE: dict[tuple[FieldAction, ...], bytes] = {}
_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(AuditEntry) if f.default is not MISSING
}
"""Every field's default (all are plain values: no factories)."""
_CHAINED = frozenset(_FIELDS)
_REQUIRED = frozenset(
    f.name for f in fields(AuditEntry) if f.default is MISSING and f.name in _CHAINED
)


_PLAIN_TYPES = frozenset((str, int, bool, type(None)))
_SCALAR_FIELDS = tuple(
    f.name
    for f in fields(AuditEntry)
    if f.name not in ("mechanisms", "field_actions", "reasons", "entry_hash", "seal")
)


def _flat_plain(state: Mapping[str, Any]) -> bool:
    """Every hashed field holds exact JSON-native types (see :meth:`AuditEntry.canonical_bytes`):
    a flat check, since the entry's shape is fixed; ``field_actions`` is encoded separately."""
    plain = _PLAIN_TYPES
    for name in _SCALAR_FIELDS:
        if type(state[name]) not in plain:
            return False
    reasons = state["reasons"]
    if type(reasons) is not tuple and type(reasons) is not list:
        return False
    for reason in reasons:
        if type(reason) is not str:
            return False
    mechanisms = state["mechanisms"]
    if type(mechanisms) is not tuple and type(mechanisms) is not list:
        return False
    for mechanism in mechanisms:
        if type(mechanism) is not dict:
            return False
        for key, value in mechanism.items():
            if type(key) is not str or type(value) not in plain:
                return False
    return True


def _actions_json(groups: tuple[FieldAction, ...]) -> list[dict[str, Any]]:
    return [{"action": a, "rule": r, "paths": list(p)} for a, r, p in groups]


def _actions_bytes(groups: tuple[FieldAction, ...]) -> bytes:
    """Canonical JSON of the ``fieldActions`` member, memoised by value (layouts repeat)."""
    found = _ACTIONS_CACHE.get(groups)
    if found is None:
        found = canonical_json(_actions_json(groups))
        if len(_ACTIONS_CACHE) >= 4096:
            _ACTIONS_CACHE.clear()
        _ACTIONS_CACHE[groups] = found
    return found


@dataclass(frozen=True)
class ChainHead:
    """Where the log stands: size, last entry hash, and the Merkle compact range."""

    size: int = 0
    last_hash: str = GENESIS_HASH
    nodes: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[AuditEntry]) -> ChainHead:
        """Rebuild the head from stored entries (after a restart); trusts their stored hashes."""
        compact = CompactRange()
        last = GENESIS_HASH
        for entry in entries:
            compact.append(bytes.fromhex(entry.entry_hash))
            last = entry.entry_hash
        return cls(compact.size, last, tuple(compact.nodes))

    def root(self) -> bytes:
        return CompactRange(self.size, self.nodes).root()


def append_entry(head: ChainHead, draft: AuditEntry) -> tuple[AuditEntry, ChainHead]:
    """Chain *draft* (its seq/prev_hash/entry_hash are ignored) after *head*. Pure."""
    fields = {f: getattr(draft, f) for f in _FIELDS}
    return chain_new_entry(head, fields)


def chain_new_entry(head: ChainHead, fields: dict[str, Any]) -> tuple[AuditEntry, ChainHead]:
    """Build the entry from *fields* (everything but seq/prev_hash/entry_hash) after *head*.

    A chain of one: :func:`chain_entries` with one draft (the one implementation).
    """
    entries, heads = chain_entries(head, (fields,))
    return entries[0], heads[0]


def chain_entries(
    head: ChainHead, drafts: Sequence[dict[str, Any]]
) -> tuple[list[AuditEntry], list[ChainHead]]:
    """Chain *drafts* (each: an entry's fields but seq/prev_hash/entry_hash) after *head*, in
    order: the entries, and the head after each of them. Pure.

    Entry ``i`` is exactly what :func:`chain_new_entry` gives for draft ``i`` after head
    ``i - 1`` (a property test pins it); the batch keeps one Merkle compact range for all of
    them instead of one per entry. Each entry is the dataclass the constructor builds
    (defaults, then the draft), filled in one step: a frozen dataclass's ``__init__`` sets its
    30 fields one ``object.__setattr__`` at a time, a third of the cost of an entry. A draft
    naming anything else, or missing a required field, takes the constructor, which raises as
    before.
    """
    compact = CompactRange(head.size, head.nodes)
    append, nodes = compact.append, compact.nodes
    last = head.last_hash
    entries: list[AuditEntry] = []
    heads: list[ChainHead] = []
    chained, required, defaults = _CHAINED, _REQUIRED, _DEFAULTS
    new, setattr_ = object.__new__, object.__setattr__
    for draft in drafts:
        names = draft.keys()
        size = compact.size
        if names <= chained and names >= required:
            entry = new(AuditEntry)
            state = entry.__dict__
            state.update(defaults)
            state.update(draft)
            state["seq"], state["prev_hash"] = size, last
        else:
            entry = AuditEntry(seq=size, prev_hash=last, **draft)
        # The hash covers every other field; the entry is not shared yet, so set it in place.
        leaf = hash_leaf(entry.canonical_bytes())
        last = leaf.hex()
        setattr_(entry, "entry_hash", last)
        append(leaf)
        entries.append(entry)
        heads.append(ChainHead(size + 1, last, tuple(nodes)))
    return entries, heads


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: the log had ``tree_size`` entries with this RFC 6962 root."""

    log_id: str
    tree_size: int
    root_hash: str
    last_entry_hash: str
    issued_at: str
    key_id: str
    signature: bytes = field(default=b"", repr=False)

    def body(self) -> dict[str, Any]:
        return {
            "logId": self.log_id,
            "treeSize": self.tree_size,
            "rootHash": self.root_hash,
            "lastEntryHash": self.last_entry_hash,
            "issuedAt": self.issued_at,
            "keyId": self.key_id,
        }

    def signed_bytes(self) -> bytes:
        return canonical_json(self.body())

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        try:
            return cls(
                log_id=data["logId"],
                tree_size=int(data["treeSize"]),
                root_hash=data["rootHash"],
                last_entry_hash=data["lastEntryHash"],
                issued_at=data["issuedAt"],
                key_id=data["keyId"],
                signature=base64.b64decode(data["signature"], validate=True),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TrustError(f"audit checkpoint is malformed: {exc!r}", reason="malformed") from exc


def make_checkpoint(
    head: ChainHead, *, log_id: str, signer: GatewayKey, issued_at: datetime
) -> Checkpoint:
    """Sign the head: ``Ed25519(pae(CHECKPOINT_TYPE, canonical JSON body))``."""
    unsigned = Checkpoint(
        log_id=log_id,
        tree_size=head.size,
        root_hash=head.root().hex(),
        last_entry_hash=head.last_hash,
        issued_at=format_time(issued_at),
        key_id=signer.key_id,
    )
    return replace(unsigned, signature=signer.sign(CHECKPOINT_TYPE, unsigned.signed_bytes()))


@dataclass(frozen=True)
class BatchSeal:
    """The chain's writer vouches for everything up to and including the entry that carries it.

    ``Ed25519(pae(SEAL_TYPE, canonical {logId, treeSize, lastEntryHash, keyId}))`` where
    ``treeSize`` is the sealed entry's ``seq + 1`` and ``lastEntryHash`` its hash. Because every
    entry's hash covers its predecessor's, one seal vouches for the whole chain before it; the
    log id in the signed body keeps a seal from being moved to another chain.
    """

    key_id: str
    signature: bytes = field(repr=False)

    @staticmethod
    def signed_bytes(log_id: str, entry: AuditEntry, key_id: str) -> bytes:
        return canonical_json(
            {
                "logId": log_id,
                "treeSize": entry.seq + 1,
                "lastEntryHash": entry.entry_hash,
                "keyId": key_id,
            }
        )

    def check(self, log_id: str, entry: AuditEntry, keys: KeyRing) -> str | None:
        """``None`` if this seal by a trusted key vouches for *entry* of *log_id*, else
        ``unknown_key`` or ``bad_signature`` (forged, altered, or moved from elsewhere)."""
        body = self.signed_bytes(log_id, entry, self.key_id)
        return keys.verify(self.key_id, SEAL_TYPE, body, self.signature)

    def to_json(self) -> dict[str, Any]:
        return {"keyId": self.key_id, "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchSeal:
        signature = data["signature"]
        if isinstance(signature, str):
            signature = base64.b64decode(signature, validate=True)
        return cls(key_id=str(data["keyId"]), signature=bytes(signature))


def seal_entry(entry: AuditEntry, *, log_id: str, signer: GatewayKey) -> AuditEntry:
    """*entry* (the last of a batch about to be committed) with the writer's :class:`BatchSeal`."""
    body = BatchSeal.signed_bytes(log_id, entry, signer.key_id)
    return replace(entry, seal=BatchSeal(signer.key_id, signer.sign(SEAL_TYPE, body)))
