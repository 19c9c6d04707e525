"""Where a gateway may resume a chain: only from what it signed itself (pure, no I/O).

Anyone who can write to ``pcf.audit`` can append a correctly chained entry (the hash chain needs
no key). So on partition assignment the gateway does not trust the chain, it trusts its
signatures, in two kinds:

- **checkpoints** (``pcf.audit.checkpoints``): a signed tree head of the first ``treeSize``
  entries. The newest one for this log that verifies under the gateway's keys is the anchor;
  the entries it covers must reproduce its Merkle root and last entry hash exactly.
- **batch seals** (:class:`~gateway.audit.BatchSeal`, on the last entry of every transaction):
  the tail after the anchor was written by this gateway's transactions, each ending in a sealed
  entry, so every committed tail ends in a seal. An entry after the last valid seal is one the
  gateway cannot vouch for: another writer appended it.

Why seals rather than re-deriving the tail from the outbound records of the same transaction:
blocked and held decisions and expired approvals write an audit entry and no outbound message,
so the outbound topics cannot vouch for every entry; and a seal is one Ed25519 signature per
transaction (the crypto-per-batch rule), written in the transaction it vouches for, so a tail
left by a gateway that crashed after committing is fully sealed, and an aborted transaction is
invisible to ``read_committed`` readers. Checkpoints stay the evidence for auditors (Merkle roots,
inclusion and consistency proofs); seals only make the unsealed tail provable.

:func:`check_resume` returns a :class:`ResumeCheck` and never raises; :func:`resume_chain` raises
:class:`AuditResumeRefused` naming the log id, the first bad entry and its offset.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from pcf_exchange.contracts._merkle import CompactRange
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway._sealing import KeyRing
from pcf_exchange.gateway.audit._entry import (
    CHECKPOINT_TYPE,
    GENESIS_HASH,
    AuditEntry,
    ChainHead,
    Checkpoint,
)

__all__ = ["AuditResumeRefused", "RefusalReason", "ResumeCheck", "check_resume", "resume_chain"]


class RefusalReason(enum.Enum):
    BAD_ENTRY = "bad_entry"
    """An entry does not hash to its recorded hash, is out of sequence, or does not chain."""
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    """The entries do not reproduce the root (or last hash) of the gateway's newest checkpoint."""
    TRUNCATED = "truncated"
    """The gateway's newest checkpoint covers entries the log no longer has."""
    FORGED_SEAL = "forged_seal"
    """An entry carries a batch seal that does not verify under the gateway's keys."""
    UNVOUCHED_TAIL = "unvouched_tail"
    """Entries after the last checkpoint and the last batch seal: not written by this gateway."""


@dataclass(frozen=True)
class ResumeCheck:
    """The verdict: where to resume (``head``) or why not (``reason``, first bad entry, offset)."""

    log_id: str
    entries: int
    head: ChainHead | None
    """The chain head to extend; ``None`` when refused."""
    anchor: Checkpoint | None = None
    """The gateway's newest checkpoint the entries match (``None``: none yet)."""
    sealed_size: int = 0
    """Entries covered by a valid seal or checkpoint (all of them when resuming)."""
    ignored_checkpoints: int = 0
    """Checkpoints for this log that do not verify under the gateway's keys (forged, foreign)."""
    reason: RefusalReason | None = None
    first_bad_entry: int | None = None
    offset: int | None = None
    """Where the first bad entry lies in ``pcf.audit`` (when offsets were given)."""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.head is not None

    def __bool__(self) -> bool:
        return self.ok

    @property
    def unsealed(self) -> int:
        """Entries after the anchor checkpoint (vouched for by batch seals)."""
        return self.entries - (self.anchor.tree_size if self.anchor is not None else 0)


class AuditResumeRefused(TrustError):
    """The gateway will not extend (or seal) this chain: it holds something it did not sign.

    ``log_id``, ``first_bad_entry``, ``offset`` and ``refusal`` (a :class:`RefusalReason`) keep
    the facts of the message for programs.
    """

    hint = (
        "Only this partition stops. Inspect the log with 'pcfx audit verify --gateway-pub ...'"
        " and 'pcfx audit show --log LOG'; find who could write to the audit topic (its ACLs)."
        " The chain is never extended past an entry the gateway cannot vouch for."
    )

    def __init__(self, check: ResumeCheck) -> None:
        super().__init__(check.message, reason="audit_resume_refused")
        self.log_id = check.log_id
        self.first_bad_entry = check.first_bad_entry
        self.offset = check.offset
        self.refusal = check.reason
        self.check = check


def check_resume(
    log_id: str,
    entries: Sequence[AuditEntry],
    checkpoints: Sequence[Checkpoint],
    keys: KeyRing,
    *,
    offsets: Sequence[int] | None = None,
    topic: str = "pcf.audit",
) -> ResumeCheck:
    """Decide whether the gateway (holding *keys*) may resume chain *log_id*; never raises.

    *entries* are the chain's entries in log order (``offsets[i]``: where ``entries[i]`` lies in
    *topic*), *checkpoints* the ones stored under the log id. Steps:

    (1) keep the checkpoints of this log signed by a trusted key (others are counted, ignored);
    (2) the anchor is the one with the largest tree size; the log must still hold that many
        entries (else truncated);
    (3) the first ``treeSize`` entries, hashed from their content, reproduce the anchor's root
        and last entry hash (else rewritten: the first entry whose content does not match its
        hash, sequence or chain is named);
    (4) every entry after the anchor continues the sequence, hashes to its recorded hash and
        chains to the one before it (from the anchor's last entry hash);
    (5) a batch seal on a tail entry verifies under a trusted key for this log and this entry
        (else forged);
    (6) the tail ends in a valid seal: entries after the last one were not written by this
        gateway (else unvouched).
    """
    n = len(entries)
    ignored = 0

    def refuse(reason: RefusalReason, index: int | None, text: str) -> ResumeCheck:
        where = ""
        offset = None
        if index is not None and offsets is not None and 0 <= index < len(offsets):
            offset = offsets[index]
            where = f" ({topic} offset {offset})"
        elif index is not None:
            where = " (not in the log)" if index >= n else ""
        first = f"entry {index}{where}" if index is not None else "no single entry"
        message = (
            f"audit log {log_id}: refusing to resume ({reason.value}): {text}; first bad entry:"
            f" {first}. The chain is not extended or sealed"
        )
        return ResumeCheck(
            log_id,
            n,
            None,
            ignored_checkpoints=ignored,
            reason=reason,
            first_bad_entry=index,
            offset=offset,
            message=message,
        )

    # (1) the gateway's own checkpoints
    own: list[Checkpoint] = []
    for cp in checkpoints:
        if cp.log_id != log_id:
            ignored += 1
            continue
        if keys.verify(cp.key_id, CHECKPOINT_TYPE, cp.signed_bytes(), cp.signature) is not None:
            ignored += 1
            continue
        own.append(cp)
    # (2) the newest one is the anchor
    anchor = max(own, key=lambda cp: cp.tree_size, default=None)
    size = anchor.tree_size if anchor is not None else 0
    if anchor is not None and size > n:
        return refuse(
            RefusalReason.TRUNCATED,
            n,
            f"its newest checkpoint signed {size} entries (root {anchor.root_hash[:16]}…), the"
            f" log holds {n}: entries {n}..{size - 1} are gone",
        )
    # (3) the covered prefix reproduces the anchor (a first broken entry is named, if any)
    compact = CompactRange()
    prev = GENESIS_HASH
    first_broken: tuple[int, str] | None = None
    for i in range(size):
        entry = entries[i]
        actual = entry.compute_hash()
        problem = _problem(i, entry, actual, prev)
        if problem and first_broken is None:
            first_broken = (i, problem)
        compact.append(bytes.fromhex(actual))
        prev = entry.entry_hash
    if anchor is not None and (
        compact.root().hex() != anchor.root_hash or prev != anchor.last_entry_hash
    ):
        first, why = first_broken if first_broken is not None else (0, "")
        return refuse(
            RefusalReason.CHECKPOINT_MISMATCH,
            first,
            f"entries 0..{size - 1} do not reproduce its newest checkpoint (size {size}, root"
            f" {anchor.root_hash[:16]}…): history was rewritten"
            + (f"; entry {first}: {why}" if why else ""),
        )
    # (4) the tail continues the chain from the anchor's last entry hash
    vouched = size
    for i in range(size, n):
        entry = entries[i]
        problem = _problem(i, entry, entry.compute_hash(), prev)
        if problem:
            return refuse(
                RefusalReason.BAD_ENTRY,
                i,
                f"entry {i} after the last checkpoint (size {size}) is bad: {problem}",
            )
        prev = entry.entry_hash
        # (5) a seal must be the gateway's, for this log and this entry
        if entry.seal is not None:
            why_not = entry.seal.check(log_id, entry, keys)
            if why_not is not None:
                return refuse(
                    RefusalReason.FORGED_SEAL,
                    i,
                    f"entry {i} carries a batch seal by {entry.seal.key_id} that does not verify"
                    f" ({why_not}): forged, or moved from another log",
                )
            vouched = i + 1
    # (6) nothing after the last seal
    if vouched < n:
        return refuse(
            RefusalReason.UNVOUCHED_TAIL,
            vouched,
            f"entries {vouched}..{n - 1} follow the last checkpoint (size {size}) and the last"
            " batch seal: no signature of this gateway covers them (appended by another writer)",
        )
    return ResumeCheck(
        log_id,
        n,
        ChainHead.of(entries),
        anchor=anchor,
        sealed_size=n,
        ignored_checkpoints=ignored,
    )


def resume_chain(
    log_id: str,
    entries: Sequence[AuditEntry],
    checkpoints: Sequence[Checkpoint],
    keys: KeyRing,
    *,
    offsets: Sequence[int] | None = None,
    topic: str = "pcf.audit",
) -> ResumeCheck:
    """Like :func:`check_resume`, but raise :class:`AuditResumeRefused` when refused."""
    check = check_resume(log_id, entries, checkpoints, keys, offsets=offsets, topic=topic)
    if not check.ok:
        raise AuditResumeRefused(check)
    return check


def _problem(i: int, entry: AuditEntry, actual: str, prev: str) -> str:
    """Why entry *i* is not the i-th link of the chain after *prev* ("" when it is)."""
    if entry.seq != i:
        return f"position {i} holds entry seq {entry.seq} (expected {i})"
    if actual != entry.entry_hash:
        return f"its content hashes to {actual[:16]}…, the entry records {entry.entry_hash[:16]}…"
    if entry.prev_hash != prev:
        if i == 0:
            return f"it does not start the chain (prevHash {entry.prev_hash[:16]}…)"
        return f"its prevHash {entry.prev_hash[:16]}… is not entry {i - 1}'s hash {prev[:16]}…"
    return ""
