"""Verify an audit log: the hash chain, every signed checkpoint, inclusion and consistency proofs.

:func:`check_audit_log` never raises and returns an :class:`AuditVerification` naming the *first*
entry that was altered, removed, reordered or cut off; :func:`verify_audit_log` raises on it.

A log checked on its own cannot show that its newest checkpoints were deleted, or that its
checkpoints and entries were cut back together to an older, self-consistent state. An auditor
therefore *pins* a checkpoint they saw earlier (``pinned=``): the log must still hold it and
everything it covers (else ``pin_fork``, ``pin_tail_cut``, ``pin_rollback``, ``pin_missing``).
Without a pin, ``require_checkpoint`` refuses a log with entries but no valid checkpoint at all
(``unsealed``), and ``require_vouched`` refuses entries after the last checkpoint that no batch
seal of the gateway covers (``unvouched``: appended by another writer).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from pcf_exchange.contracts._merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway._sealing import KeyRing
from pcf_exchange.gateway.audit._entry import CHECKPOINT_TYPE, GENESIS_HASH, AuditEntry, Checkpoint

__all__ = [
    "AuditVerification",
    "Finding",
    "InclusionProof",
    "Problem",
    "check_audit_log",
    "check_inclusion",
    "prove_consistency",
    "prove_inclusion",
    "verify_audit_log",
    "verify_checkpoint_consistency",
    "verify_inclusion_proof",
]

_MAX_FINDINGS = 1000


class Problem(enum.Enum):
    ALTERED = "altered"
    """The entry's content no longer hashes to what was chained or signed."""
    REMOVED = "removed"
    REORDERED = "reordered"
    DUPLICATED = "duplicated"
    TRUNCATED = "truncated"
    """A signed checkpoint covers entries the log no longer has."""
    CHECKPOINT_UNKNOWN_KEY = "checkpoint_unknown_key"
    CHECKPOINT_BAD_SIGNATURE = "checkpoint_bad_signature"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    """The entries do not produce the root the checkpoint signed (rewritten history)."""
    CHECKPOINT_ROLLBACK = "checkpoint_rollback"
    SEAL_INVALID = "seal_invalid"
    """An entry's batch seal does not verify under the trusted keys (forged or moved)."""
    UNVOUCHED = "unvouched"
    """Entries after the last valid checkpoint that no valid batch seal covers."""
    UNSEALED = "unsealed"
    """The log has entries but no valid checkpoint at all (and no pin was given)."""
    PIN_FORK = "pin_fork"
    """The log disagrees with the pinned checkpoint at its size (another history)."""
    PIN_TAIL_CUT = "pin_tail_cut"
    """Entries the pinned checkpoint covers are gone from the log."""
    PIN_ROLLBACK = "pin_rollback"
    """The log's newest valid checkpoint is older than the pinned one."""
    PIN_MISSING = "pin_missing"
    """The log has no valid checkpoint, or not the pinned one."""
    PIN_UNTRUSTED = "pin_untrusted"
    """The pinned checkpoint itself does not verify under the trusted keys."""


@dataclass(frozen=True, slots=True)
class Finding:
    problem: Problem
    message: str
    entry: int | None = None
    """Sequence number of the first entry concerned."""
    checkpoint: int | None = None
    """Position of the checkpoint concerned in the list given."""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class AuditVerification:
    """The verdict on a log: ``ok``, the first bad entry, and every finding (not only the first)."""

    entries: int
    checkpoints: int
    findings: tuple[Finding, ...]
    sealed_size: int
    """Entries ``0..sealed_size-1`` are covered by a valid checkpoint that matches them."""
    first_bad_entry: int | None
    """Lowest sequence number that is not proven intact (``None`` when no entry is at fault)."""
    anchor: Checkpoint | None = None
    """The newest valid checkpoint that matches the entries (what an auditor may pin)."""
    vouched_size: int = 0
    """Entries ``0..vouched_size-1`` are covered by a valid checkpoint or a valid batch seal."""

    @property
    def ok(self) -> bool:
        return not self.findings

    def __bool__(self) -> bool:
        return self.ok

    @property
    def unsealed(self) -> int:
        """Entries after the last valid checkpoint: chained, but not yet signed."""
        return max(0, self.entries - self.sealed_size)

    def summary(self) -> str:
        if self.ok:
            return (
                f"OK: {self.entries} entries, {self.checkpoints} checkpoints,"
                f" sealed through {self.sealed_size}, {self.unsealed} unsealed"
            )
        first = (
            f"; first bad entry: {self.first_bad_entry}" if self.first_bad_entry is not None else ""
        )
        return f"FAIL: {len(self.findings)} finding(s){first}: {self.findings[0]}"


def check_audit_log(
    entries: Sequence[AuditEntry],
    checkpoints: Sequence[Checkpoint],
    keys: KeyRing,
    *,
    log_id: str | None = None,
    pinned: Sequence[Checkpoint] = (),
    require_vouched: bool = False,
    require_checkpoint: bool = False,
    offsets: Sequence[int] | None = None,
) -> AuditVerification:
    """Check the chain and every checkpoint; never raises.

    Steps: per entry (1) the sequence number continues (else removed / reordered / duplicated),
    (2) the entry hashes to its recorded hash (else altered), (3) it chains to the entry one
    below it (else one of the two was altered after being chained); per checkpoint (4) key
    trusted, (5) signature valid, (6) sizes never shrink, (7) the log still has ``tree_size``
    entries (else truncated), (8) the entries' Merkle root equals the signed root (else
    rewritten); then (9) batch seals (with *log_id*) verify, and with *require_vouched* every
    entry after the last valid checkpoint is covered by one; (10) each *pinned* checkpoint is
    still in the log with everything it covers; (11) with *require_checkpoint* and no pin, a log
    with entries has a valid checkpoint. "First bad entry" is the lowest sequence number not
    proven intact. *offsets* (where each entry lies on its topic) are named in messages.
    """
    findings: list[Finding] = []
    n = len(entries)
    positions: dict[int, int] = {}
    for pos, entry in enumerate(entries):
        positions.setdefault(entry.seq, pos)

    leaves: list[bytes] = []
    breaks: list[tuple[int, int]] = []
    expected = 0
    seen: set[int] = set()
    for pos, entry in enumerate(entries):
        seq = entry.seq
        # (1) sequence numbers continue 0, 1, 2, ...
        if seq in seen:
            findings.append(
                Finding(
                    Problem.DUPLICATED, f"entry {seq} appears again at position {pos}", entry=seq
                )
            )
        elif seq < expected:
            findings.append(
                Finding(
                    Problem.REORDERED,
                    f"entry {seq} is out of order: it comes"
                    f" after entry {expected - 1} (position {pos})",
                    entry=seq,
                )
            )
        elif seq > expected:
            missing = [s for s in range(expected, seq) if s not in seen]
            later = [s for s in missing if positions.get(s, -1) > pos]
            gone = [s for s in missing if s not in positions]
            if later:
                findings.append(
                    Finding(
                        Problem.REORDERED,
                        f"entry {later[0]} is out of order: position {pos} holds entry {seq}",
                        entry=later[0],
                    )
                )
            if gone:
                span = f"{gone[0]}" if len(gone) == 1 else f"{gone[0]}..{gone[-1]}"
                findings.append(
                    Finding(
                        Problem.REMOVED,
                        f"entry {span} was removed: position {pos} holds entry {seq}",
                        entry=gone[0],
                    )
                )
        seen.add(seq)
        expected = max(expected, seq + 1)
        # (2) content hashes to the recorded hash
        actual = entry.compute_hash()
        leaves.append(bytes.fromhex(actual))
        if actual != entry.entry_hash:
            findings.append(
                Finding(
                    Problem.ALTERED,
                    f"entry {seq} was altered: its content hashes"
                    f" to {actual[:16]}…, the log records {entry.entry_hash[:16]}…",
                    entry=seq,
                )
            )
            continue
        # (3) it chains to entry seq-1, wherever that is (the later entry witnesses the earlier)
        if seq == 0:
            if entry.prev_hash != GENESIS_HASH:
                findings.append(
                    Finding(
                        Problem.ALTERED,
                        f"entry 0 does not start the chain (prevHash {entry.prev_hash[:16]}…)",
                        entry=0,
                    )
                )
        elif (pred := positions.get(seq - 1)) is not None and (
            entry.prev_hash != entries[pred].entry_hash
        ):
            breaks.append((seq - 1, seq))
        if len(findings) >= _MAX_FINDINGS:
            break

    # checkpoints, in the order given; roots computed in one pass over the leaves
    logical = max(seen, default=-1) + 1
    roots = _roots_at(
        leaves,
        {c.tree_size for c in checkpoints if 0 <= c.tree_size <= n},
    )
    sealed = 0
    last_size = -1
    window_start = 0
    windows: list[tuple[int, int, int, Checkpoint]] = []
    valid: list[Checkpoint] = []
    anchor: Checkpoint | None = None
    for i, cp in enumerate(checkpoints):
        # (4) + (5) trusted key, valid signature
        problem = keys.verify(cp.key_id, CHECKPOINT_TYPE, cp.signed_bytes(), cp.signature)
        if problem == "unknown_key":
            findings.append(
                Finding(
                    Problem.CHECKPOINT_UNKNOWN_KEY,
                    f"checkpoint {i} (size"
                    f" {cp.tree_size}) is signed by {cp.key_id}, which is not"
                    " trusted",
                    checkpoint=i,
                )
            )
            continue
        if problem == "bad_signature":
            findings.append(
                Finding(
                    Problem.CHECKPOINT_BAD_SIGNATURE,
                    f"checkpoint {i} (size"
                    f" {cp.tree_size}): signature by {cp.key_id} does not verify"
                    " (forged or altered checkpoint)",
                    checkpoint=i,
                )
            )
            continue
        if log_id is None or cp.log_id == log_id:
            valid.append(cp)
        # (6) sizes never shrink
        if cp.tree_size < last_size:
            findings.append(
                Finding(
                    Problem.CHECKPOINT_ROLLBACK,
                    f"checkpoint {i} has size"
                    f" {cp.tree_size}, smaller than an earlier checkpoint's"
                    f" {last_size}",
                    checkpoint=i,
                )
            )
            continue
        last_size = cp.tree_size
        # (7) the log still holds what was signed
        if cp.tree_size > logical:
            findings.append(
                Finding(
                    Problem.TRUNCATED,
                    f"log truncated: checkpoint {i} signed"
                    f" {cp.tree_size} entries, the log ends at entry"
                    f" {logical - 1}; entries {logical}..{cp.tree_size - 1} are"
                    " missing",
                    entry=logical,
                    checkpoint=i,
                )
            )
            continue
        # (8) the entries produce the signed root
        if cp.tree_size > n or roots[cp.tree_size].hex() != cp.root_hash:
            windows.append((i, window_start, cp.tree_size, cp))
        else:
            if cp.tree_size >= sealed and (log_id is None or cp.log_id == log_id):
                anchor = cp
            sealed = max(sealed, cp.tree_size)
            window_start = cp.tree_size

    # a broken link blames the earlier entry, unless a matching checkpoint proves it intact
    for pred, succ in breaks:
        blame = succ if pred < sealed else pred
        sealed_note = f"; entry {pred} is sealed" if blame == succ else ""
        findings.append(
            Finding(
                Problem.ALTERED,
                f"entry {blame} was altered: entry {succ} does not chain to entry {pred} (its"
                f" prevHash is not entry {pred}'s hash{sealed_note})",
                entry=blame,
            )
        )
    located = sorted(f.entry for f in findings if f.entry is not None)
    for i, start, size, cp in windows:
        inside = [e for e in located if start <= e < size]
        first = inside[0] if inside else start
        got = roots[size].hex()[:16] + "…" if size in roots else f"only {n} entries"
        findings.append(
            Finding(
                Problem.CHECKPOINT_MISMATCH,
                f"entries {start}..{size - 1} do not"
                f" match checkpoint {i}: it signed root {cp.root_hash[:16]}…, the"
                f" log gives {got} (history rewritten; first entry not proven:"
                f" {first})",
                entry=first,
                checkpoint=i,
            )
        )

    # (9) batch seals: each valid one vouches for its entry and every entry before it
    vouched = sealed
    if log_id is not None:
        for pos, entry in enumerate(entries):
            if entry.seal is None:
                continue
            why = entry.seal.check(log_id, entry, keys)
            if why is not None:
                findings.append(
                    Finding(
                        Problem.SEAL_INVALID,
                        f"entry {entry.seq}{_at(offsets, pos)} carries a batch seal by"
                        f" {entry.seal.key_id} that does not verify ({why}): forged, altered"
                        " or moved from another log",
                        entry=entry.seq,
                    )
                )
            elif entry.entry_hash == entry.compute_hash():
                vouched = max(vouched, entry.seq + 1)
        if require_vouched and vouched < n:
            findings.append(
                Finding(
                    Problem.UNVOUCHED,
                    f"entries {vouched}..{n - 1}{_at(offsets, vouched)} follow the last valid"
                    f" checkpoint (size {sealed}) and the last batch seal: no signature of a"
                    " trusted gateway key covers them (appended by another writer)",
                    entry=vouched,
                )
            )
    # (10) pinned checkpoints
    for pin in pinned:
        findings.extend(_check_pin(pin, valid, leaves, n, keys, offsets))
    # (11) a log with entries and no checkpoint is not clean
    if require_checkpoint and not pinned and n and not valid:
        findings.append(
            Finding(
                Problem.UNSEALED,
                f"{n} entries and no valid checkpoint: nothing signed covers this log, so its"
                " newest entries could have been cut or the log replaced (pin a checkpoint"
                " from an earlier check, or accept the unsealed log explicitly)",
                entry=0,
            )
        )

    located = [f.entry for f in findings if f.entry is not None]
    return AuditVerification(
        entries=n,
        checkpoints=len(checkpoints),
        findings=tuple(findings),
        sealed_size=sealed,
        first_bad_entry=min(located) if located else None,
        anchor=anchor,
        vouched_size=vouched,
    )


def _at(offsets: Sequence[int] | None, pos: int) -> str:
    if offsets is None or not 0 <= pos < len(offsets):
        return ""
    return f" (offset {offsets[pos]})"


def _check_pin(
    pin: Checkpoint,
    valid: Sequence[Checkpoint],
    leaves: Sequence[bytes],
    n: int,
    keys: KeyRing,
    offsets: Sequence[int] | None,
) -> list[Finding]:
    """Step (10) for one pinned checkpoint of size N: fork, tail cut, rollback, missing."""
    size, log = pin.tree_size, pin.log_id
    if keys.verify(pin.key_id, CHECKPOINT_TYPE, pin.signed_bytes(), pin.signature) is not None:
        return [
            Finding(
                Problem.PIN_UNTRUSTED,
                f"log {log}: the pinned checkpoint (size {size}) is not signed by a trusted key"
                f" ({pin.key_id})",
            )
        ]
    found: list[Finding] = []
    # fork: another root at the pinned size, in a checkpoint or in the entries
    for cp in valid:
        if cp.tree_size == size and cp.root_hash != pin.root_hash:
            found.append(
                Finding(
                    Problem.PIN_FORK,
                    f"log {log} forked: its checkpoint of size {size} signs root"
                    f" {cp.root_hash[:16]}…, the pinned one {pin.root_hash[:16]}…",
                )
            )
            break
    if n >= size and _roots_at(leaves, {size})[size].hex() != pin.root_hash:
        found.append(
            Finding(
                Problem.PIN_FORK,
                f"log {log} forked: its first {size} entries give root"
                f" {_roots_at(leaves, {size})[size].hex()[:16]}…, the pinned checkpoint signed"
                f" {pin.root_hash[:16]}… (history rewritten)",
            )
        )
    # tail cut: entries the pin covers are gone
    if n < size:
        found.append(
            Finding(
                Problem.PIN_TAIL_CUT,
                f"log {log} was cut: the pinned checkpoint covers {size} entries, the log holds"
                f" {n}{_after(offsets)}: entries {n}..{size - 1} are gone",
                entry=n,
            )
        )
    newest = max((cp.tree_size for cp in valid), default=None)
    if newest is None:
        found.append(
            Finding(
                Problem.PIN_MISSING,
                f"log {log} has no valid checkpoint at all; the pinned one has size {size}"
                " (checkpoints deleted)",
            )
        )
    elif newest < size:
        found.append(
            Finding(
                Problem.PIN_ROLLBACK,
                f"log {log} rolled back: its newest valid checkpoint has size {newest}, older"
                f" than the pinned one (size {size})",
            )
        )
    elif not found and not any(
        cp.tree_size == size and cp.root_hash == pin.root_hash for cp in valid
    ):
        found.append(
            Finding(
                Problem.PIN_MISSING,
                f"log {log}: the pinned checkpoint (size {size}) is missing from the log,"
                f" whose valid checkpoints have sizes {sorted({c.tree_size for c in valid})}"
                " (checkpoint deleted)",
            )
        )
    return found


def _after(offsets: Sequence[int] | None) -> str:
    if not offsets:
        return ""
    return f" (its last entry at offset {offsets[-1]})"


def verify_audit_log(
    entries: Sequence[AuditEntry], checkpoints: Sequence[Checkpoint], keys: KeyRing
) -> AuditVerification:
    """Like :func:`check_audit_log`, but raise :class:`TrustError` (``audit_log_tampered``)."""
    result = check_audit_log(entries, checkpoints, keys)
    if not result.ok:
        error = TrustError(result.summary(), reason="audit_log_tampered")
        error.verification = result  # type: ignore[attr-defined]
        raise error
    return result


def _roots_at(leaves: Sequence[bytes], sizes: set[int]) -> dict[int, bytes]:
    compact = CompactRange()
    roots = {0: compact.root()} if 0 in sizes else {}
    for leaf in leaves:
        compact.append(leaf)
        if compact.size in sizes:
            roots[compact.size] = compact.root()
    return roots


# ----------------------------------------------------------------------------------------------
# proofs


@dataclass(frozen=True)
class InclusionProof:
    """RFC 6962 audit path of entry ``index`` in the tree of ``tree_size`` entries."""

    index: int
    tree_size: int
    leaf_hash: str
    path: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "treeSize": self.tree_size,
            "leafHash": self.leaf_hash,
            "path": list(self.path),
        }


def prove_inclusion(entries: Sequence[AuditEntry], index: int, tree_size: int) -> InclusionProof:
    """The audit path of ``entries[index]`` in the tree of the first *tree_size* entries."""
    if not 0 <= index < tree_size <= len(entries):
        raise IndexError(
            f"cannot prove entry {index} in a tree of {tree_size} (log has {len(entries)})"
        )
    leaves = [bytes.fromhex(e.entry_hash) for e in entries[:tree_size]]
    path = inclusion_proof(leaves, index)
    return InclusionProof(index, tree_size, entries[index].entry_hash, tuple(p.hex() for p in path))


def check_inclusion(
    entry: AuditEntry, proof: InclusionProof, checkpoint: Checkpoint, keys: KeyRing
) -> str | None:
    """``None`` if *entry* is provably in the log *checkpoint* signed, else what failed.

    Steps: (1) checkpoint signature, (2) same tree size, (3) the entry hashes to the proven
    leaf and sits at the proven index, (4) the audit path leads to the signed root.
    """
    # (1)
    problem = keys.verify(
        checkpoint.key_id, CHECKPOINT_TYPE, checkpoint.signed_bytes(), checkpoint.signature
    )
    if problem is not None:
        return f"checkpoint signature: {problem}"
    # (2)
    if proof.tree_size != checkpoint.tree_size:
        return (
            f"proof is for a tree of {proof.tree_size}, the checkpoint signed"
            f" {checkpoint.tree_size}"
        )
    # (3)
    actual = entry.compute_hash()
    if actual != proof.leaf_hash or entry.seq != proof.index:
        return (
            f"entry {entry.seq} hashes to {actual[:16]}…, the proof is for entry"
            f" {proof.index} with leaf {proof.leaf_hash[:16]}…"
        )
    # (4)
    try:
        path = [bytes.fromhex(p) for p in proof.path]
        root = bytes.fromhex(checkpoint.root_hash)
    except ValueError:
        return "proof or checkpoint holds a value that is not hex"
    if not verify_inclusion(bytes.fromhex(actual), proof.index, proof.tree_size, path, root):
        return f"the audit path of entry {proof.index} does not lead to the signed root"
    return None


def verify_inclusion_proof(
    entry: AuditEntry, proof: InclusionProof, checkpoint: Checkpoint, keys: KeyRing
) -> None:
    """Raise :class:`TrustError` (``not_included``) unless :func:`check_inclusion` passes."""
    problem = check_inclusion(entry, proof, checkpoint, keys)
    if problem is not None:
        raise TrustError(
            f"entry {entry.seq} is not proven in the log: {problem}", reason="not_included"
        )


def prove_consistency(
    entries: Sequence[AuditEntry], old_size: int, new_size: int
) -> tuple[str, ...]:
    """RFC 6962 proof that the tree of *old_size* entries is a prefix of the one of *new_size*."""
    if not 0 <= old_size <= new_size <= len(entries):
        raise IndexError(f"cannot prove {old_size} → {new_size} on a log of {len(entries)}")
    leaves = [bytes.fromhex(e.entry_hash) for e in entries[:new_size]]
    return tuple(p.hex() for p in consistency_proof(leaves, old_size))


def verify_checkpoint_consistency(
    old: Checkpoint, new: Checkpoint, proof: Sequence[str], keys: KeyRing
) -> None:
    """An auditor holding *old* checks that *new* only appended: signatures, then the proof."""
    for name, cp in (("old", old), ("new", new)):
        problem = keys.verify(cp.key_id, CHECKPOINT_TYPE, cp.signed_bytes(), cp.signature)
        if problem is not None:
            raise TrustError(f"{name} checkpoint (size {cp.tree_size}): {problem}", reason=problem)
    try:
        ok = verify_consistency(
            old.tree_size,
            new.tree_size,
            bytes.fromhex(old.root_hash),
            bytes.fromhex(new.root_hash),
            [bytes.fromhex(p) for p in proof],
        )
    except ValueError:
        ok = False
    if not ok:
        raise TrustError(
            f"checkpoint of size {new.tree_size} is not an append-only extension of the one of"
            f" size {old.tree_size} (consistency proof fails)",
            reason="inconsistent_checkpoints",
        )
