"""The audit log: chain + signed checkpoints; every tamper detected, first bad entry named."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pcf_exchange.contracts.errors import TrustError
from pcf_exchange.gateway import GatewayKey, KeyRing
from pcf_exchange.gateway.audit import (
    AuditEntry,
    ChainHead,
    Checkpoint,
    JsonLinesAuditStore,
    Problem,
    append_entry,
    check_audit_log,
    check_inclusion,
    format_time,
    make_checkpoint,
    prove_consistency,
    prove_inclusion,
    verify_audit_log,
    verify_checkpoint_consistency,
    verify_inclusion_proof,
)
from tests.gateway._factories import NOW

CHECKPOINT_AT = (4, 8, 16, 20)


def draft(i: int) -> AuditEntry:
    return AuditEntry(
        seq=0,
        prev_hash="",
        kind="transfer",
        recorded_at=format_time(NOW + timedelta(seconds=i)),
        decision_id=f"d-{i}",
        record_pf_id=f"pf-{i}",
        record_sha256=f"{i:064x}",
        recipient_id="eu-battery-oem-de",
        jurisdiction="DE",
        outcome="transformed",
        field_actions=(("allow", "R03-methodology", ("pcf.dqi.temporalDQR",)),),
        reasons=(),
    )


def rechain(entries: Sequence[AuditEntry], start: int) -> list[AuditEntry]:
    """What a thorough attacker does: recompute every hash and link from *start* on."""
    head = ChainHead.of(entries[:start])
    out = list(entries[:start])
    for entry in entries[start:]:
        rebuilt, head = append_entry(head, entry)
        out.append(rebuilt)
    return out


@pytest.fixture(scope="module")
def signer() -> GatewayKey:
    return GatewayKey.generate()


@pytest.fixture(scope="module")
def keys(signer: GatewayKey) -> KeyRing:
    return KeyRing.of(signer.public_key)


@pytest.fixture(scope="module")
def log(signer: GatewayKey) -> tuple[list[AuditEntry], list[Checkpoint]]:
    head = ChainHead()
    entries: list[AuditEntry] = []
    checkpoints: list[Checkpoint] = []
    for i in range(20):
        entry, head = append_entry(head, draft(i))
        entries.append(entry)
        if head.size in CHECKPOINT_AT:
            checkpoints.append(make_checkpoint(head, log_id="test", signer=signer, issued_at=NOW))
    return entries, checkpoints


def test_intact_log_verifies(log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing) -> None:
    entries, checkpoints = log
    result = verify_audit_log(entries, checkpoints, keys)
    assert result.ok and bool(result)
    assert (result.sealed_size, result.unsealed, result.first_bad_entry) == (20, 0, None)
    assert result.summary().startswith("OK: 20 entries, 4 checkpoints")
    assert entries[0].prev_hash == "00" * 32
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))


def test_edit_is_named(log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing) -> None:
    entries, checkpoints = log
    edited = list(entries)
    edited[5] = dataclasses.replace(entries[5], recipient_id="us-customer")
    result = check_audit_log(edited, checkpoints, keys)
    assert result.first_bad_entry == 5
    assert result.findings[0].problem is Problem.ALTERED
    assert "entry 5 was altered" in result.findings[0].message
    with pytest.raises(TrustError) as info:
        verify_audit_log(edited, checkpoints, keys)
    assert info.value.reason == "audit_log_tampered" and "first bad entry: 5" in info.value.message


def test_edit_with_its_hash_recomputed(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    # Entry 6 still records entry 5's original hash: it witnesses the edit.
    entries, checkpoints = log
    edited = list(entries)
    changed = dataclasses.replace(entries[5], outcome="allowed")
    edited[5] = dataclasses.replace(changed, entry_hash=changed.compute_hash())
    result = check_audit_log(edited, checkpoints, keys)
    assert result.first_bad_entry == 5
    assert any("entry 6 does not chain to entry 5" in f.message for f in result.findings)


def test_consistent_rewrite_is_caught_by_the_checkpoints(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    # Every hash and link recomputed from entry 5: only the signed roots can tell, and they
    # locate it to the window after the last checkpoint that still matches (size 4).
    entries, checkpoints = log
    rewritten = list(entries)
    rewritten[5] = dataclasses.replace(entries[5], outcome="allowed")
    rewritten = rechain(rewritten, 5)
    result = check_audit_log(rewritten, checkpoints, keys)
    assert not result.ok and result.sealed_size == 4
    assert result.first_bad_entry == 4
    mismatch = [f for f in result.findings if f.problem is Problem.CHECKPOINT_MISMATCH]
    assert [f.checkpoint for f in mismatch] == [1, 2, 3]
    assert "entries 4..7 do not match checkpoint 1" in mismatch[0].message


def test_removal_is_named(log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing) -> None:
    entries, checkpoints = log
    result = check_audit_log(entries[:5] + entries[6:], checkpoints, keys)
    assert result.first_bad_entry == 5
    assert result.findings[0].problem is Problem.REMOVED
    assert "entry 5 was removed" in result.findings[0].message


def test_removal_with_renumbering_is_named(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    entries, checkpoints = log
    shifted = entries[:5] + [dataclasses.replace(e, seq=e.seq - 1) for e in entries[6:]]
    result = check_audit_log(shifted, checkpoints, keys)
    assert result.first_bad_entry == 5


def test_reordering_is_named(log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing) -> None:
    entries, checkpoints = log
    swapped = list(entries)
    swapped[5], swapped[6] = entries[6], entries[5]
    result = check_audit_log(swapped, checkpoints, keys)
    assert result.first_bad_entry == 5
    assert result.findings[0].problem is Problem.REORDERED
    assert "entry 5 is out of order" in result.findings[0].message


def test_duplicate_is_named(log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing) -> None:
    entries, checkpoints = log
    result = check_audit_log([*entries[:10], entries[9], *entries[10:]], checkpoints, keys)
    assert any(f.problem is Problem.DUPLICATED and f.entry == 9 for f in result.findings)


def test_truncation_is_named(log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing) -> None:
    entries, checkpoints = log
    result = check_audit_log(entries[:17], checkpoints, keys)
    assert result.first_bad_entry == 17
    truncated = next(f for f in result.findings if f.problem is Problem.TRUNCATED)
    assert "entries 17..19 are missing" in truncated.message
    assert result.sealed_size == 16


def test_truncation_after_the_last_checkpoint_is_only_unsealed(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    # Known limit: entries not yet sealed can vanish unnoticed until the next checkpoint is
    # compared, so the gateway checkpoints often and a monitor keeps the latest one.
    entries, checkpoints = log
    result = check_audit_log(entries[:18], checkpoints[:3], keys)
    assert result.ok and result.sealed_size == 16 and result.unsealed == 2


def test_forged_checkpoint_signature(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    entries, checkpoints = log
    forged = dataclasses.replace(checkpoints[2], root_hash="ab" * 32)
    result = check_audit_log(
        entries, [checkpoints[0], checkpoints[1], forged, checkpoints[3]], keys
    )
    assert not result.ok
    bad = result.findings[0]
    assert bad.problem is Problem.CHECKPOINT_BAD_SIGNATURE and bad.checkpoint == 2
    assert result.first_bad_entry is None  # no entry is at fault


def test_checkpoint_by_an_untrusted_key(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    entries, _ = log
    mallory = GatewayKey.generate()
    cp = make_checkpoint(ChainHead.of(entries), log_id="test", signer=mallory, issued_at=NOW)
    result = check_audit_log(entries, [cp], keys)
    assert result.findings[0].problem is Problem.CHECKPOINT_UNKNOWN_KEY


def test_rewritten_log_with_attacker_checkpoints_is_refused(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    # The attacker can rechain, but cannot re-sign the checkpoints with the gateway key.
    entries, _ = log
    rewritten = rechain([dataclasses.replace(e, outcome="allowed") for e in entries], 0)
    mallory = GatewayKey.generate()
    fake = make_checkpoint(ChainHead.of(rewritten), log_id="test", signer=mallory, issued_at=NOW)
    forged = dataclasses.replace(fake, key_id=next(iter(keys.keys)))
    result = check_audit_log(rewritten, [forged], keys)
    assert result.findings[0].problem is Problem.CHECKPOINT_BAD_SIGNATURE


def test_checkpoint_rollback(log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing) -> None:
    entries, checkpoints = log
    result = check_audit_log(entries, [checkpoints[3], checkpoints[0]], keys)
    assert result.findings[0].problem is Problem.CHECKPOINT_ROLLBACK


# ---------------------------------------------------------------------------------------------
# inclusion and consistency proofs


def test_inclusion_proof_accepts(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    entries, checkpoints = log
    cp16 = checkpoints[2]
    for index in (0, 7, 15):
        proof = prove_inclusion(entries, index, cp16.tree_size)
        assert check_inclusion(entries[index], proof, cp16, keys) is None
        verify_inclusion_proof(entries[index], proof, cp16, keys)
    assert json.loads(json.dumps(proof.to_json()))["treeSize"] == 16


def test_inclusion_proof_rejects(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    entries, checkpoints = log
    cp16, cp20 = checkpoints[2], checkpoints[3]
    proof = prove_inclusion(entries, 7, 16)
    altered = dataclasses.replace(entries[7], outcome="allowed")
    assert "hashes to" in (check_inclusion(altered, proof, cp16, keys) or "")
    assert "hashes to" in (check_inclusion(entries[8], proof, cp16, keys) or "")
    assert "tree of 16" in (check_inclusion(entries[7], proof, cp20, keys) or "")
    bad_path = dataclasses.replace(proof, path=("00" * 32, *proof.path[1:]))
    assert "does not lead" in (check_inclusion(entries[7], bad_path, cp16, keys) or "")
    forged = dataclasses.replace(cp16, root_hash="cd" * 32)
    assert "signature" in (check_inclusion(entries[7], proof, forged, keys) or "")
    with pytest.raises(TrustError) as info:
        verify_inclusion_proof(altered, proof, cp16, keys)
    assert info.value.reason == "not_included"
    with pytest.raises(IndexError):
        prove_inclusion(entries, 16, 16)


def test_consistency_between_checkpoints(
    log: tuple[list[AuditEntry], list[Checkpoint]], keys: KeyRing
) -> None:
    entries, checkpoints = log
    cp8, cp20 = checkpoints[1], checkpoints[3]
    proof = prove_consistency(entries, 8, 20)
    verify_checkpoint_consistency(cp8, cp20, proof, keys)
    with pytest.raises(TrustError) as info:
        verify_checkpoint_consistency(cp8, cp20, proof[:-1], keys)
    assert info.value.reason == "inconsistent_checkpoints"
    with pytest.raises(TrustError) as info:  # an altered new root no longer carries a signature
        verify_checkpoint_consistency(
            cp8, dataclasses.replace(cp20, root_hash="ef" * 32), proof, keys
        )
    assert info.value.reason == "bad_signature"


def test_consistency_detects_a_forked_history(
    signer: GatewayKey, keys: KeyRing, log: tuple[list[AuditEntry], list[Checkpoint]]
) -> None:
    entries, checkpoints = log
    forked = rechain([*entries[:3], dataclasses.replace(entries[3], outcome="x"), *entries[4:]], 3)
    fork_cp = make_checkpoint(ChainHead.of(forked), log_id="test", signer=signer, issued_at=NOW)
    proof = prove_consistency(forked, 8, 20)
    with pytest.raises(TrustError, match="not an append-only extension"):
        verify_checkpoint_consistency(checkpoints[1], fork_cp, proof, keys)


# ---------------------------------------------------------------------------------------------
# the JSON-lines store


def test_jsonl_store_round_trip_and_tamper(
    tmp_path: Path,
    signer: GatewayKey,
    keys: KeyRing,
    log: tuple[list[AuditEntry], list[Checkpoint]],
) -> None:
    entries, checkpoints = log
    store = JsonLinesAuditStore(tmp_path / "audit.jsonl")
    store.append(entries[:10], checkpoints[:2])
    store.append(entries[10:], checkpoints[2:])
    assert store.entries() == entries and store.checkpoints() == checkpoints
    assert verify_audit_log(store.entries(), store.checkpoints(), keys).ok
    assert ChainHead.of(store.entries()).root().hex() == checkpoints[-1].root_hash
    # someone edits line 13 in a text editor: 10 entries + 2 checkpoints, so entry 10
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    lines[12] = lines[12].replace('"outcome":"transformed"', '"outcome":"allowed"')
    (tmp_path / "audit.jsonl").write_text("\n".join(lines) + "\n")
    result = check_audit_log(store.entries(), store.checkpoints(), keys)
    assert result.first_bad_entry == 10


def test_jsonl_store_refuses_a_torn_line(
    tmp_path: Path, log: tuple[list[AuditEntry], list[Checkpoint]]
) -> None:
    entries, _ = log
    path = tmp_path / "audit.jsonl"
    JsonLinesAuditStore(path).append(entries[:2])
    with path.open("ab") as handle:
        handle.write(b'{"entry": {"seq": 2')
    with pytest.raises(TrustError) as info:
        JsonLinesAuditStore(path).entries()
    assert info.value.reason == "audit_store_corrupt"
    path.write_bytes(b"not json\n")
    with pytest.raises(TrustError, match=":1: not JSON"):
        JsonLinesAuditStore(path).entries()


def test_a_chained_entry_is_the_entry_the_constructor_builds() -> None:
    """``chain_new_entry`` fills the frozen dataclass in one step: the same entry, field for field,
    as ``AuditEntry(...)``; unknown or missing fields still raise as the constructor does."""
    from dataclasses import replace as _replace

    from pcf_exchange.gateway.audit._entry import AuditEntry, ChainHead, chain_new_entry

    head = ChainHead()
    drafts: list[dict[str, Any]] = [
        {"kind": "transfer", "recorded_at": "2026-05-04T09:30:00Z"},
        {
            "kind": "transfer_blocked",
            "recorded_at": "2026-05-04T09:30:00Z",
            "decision_id": "d",
            "reasons": ("a|b|c",),
            "mechanisms": ({"kind": "k", "reference": "r", "expires": "2027-01-01"},),
            "field_actions": (("redact", "r1", ("a.b",)),),
            "pi_individuals_added": 2,
        },
    ]
    for draft in drafts:
        entry, new_head = chain_new_entry(head, draft)
        built = AuditEntry(seq=head.size, prev_hash=head.last_hash, **draft)
        assert entry == _replace(built, entry_hash=built.compute_hash())
        assert entry.entry_hash == entry.compute_hash() and new_head.last_hash == entry.entry_hash
        head = new_head
    with pytest.raises(TypeError):
        chain_new_entry(head, {"kind": "transfer", "recorded_at": "t", "nonsense": 1})
    with pytest.raises(TypeError):
        chain_new_entry(head, {"kind": "transfer"})
