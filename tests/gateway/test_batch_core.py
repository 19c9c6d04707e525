"""The core in batch form (``prepare_transfers``) equals the core record by record (issue #19).

On random policies and random batches of mixed requests (allowed, transformed, blocked, held,
held with a matching approval, held with an approval for another record, unknown recipients and
purposes, PI counted across the batch, notes, copies for the API), Hypothesis checks that the
batch gives, request for request, what ``prepare_transfer`` gives called on each in turn: the
same decisions, counters, approvals, messages (the same envelopes decrypt from both) and the
same audit chain. Encryption is randomised (HPKE ephemeral keys, AES-GCM nonces), so the
ciphertexts differ; the sequential entries re-chained with the batch's ciphertext digests must
then be the batch's entries hash for hash.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts._merkle import hash_leaf
from pcf_exchange.gateway import (
    OutboundBatch,
    Policy,
    PreparedTransfer,
    TransferRequest,
    approve,
    default_policy_path,
    load_policy,
    open_message,
    parse_policy,
    prepare_transfer,
    prepare_transfers,
    request_approval,
)
from pcf_exchange.gateway._pipeline import DEPRECATED_NOTE
from pcf_exchange.gateway._sealing import outbound_leaf, outbound_leaf_hash
from pcf_exchange.gateway.audit import AuditEntry, ChainHead, append_entry, chain_entries
from pcf_exchange.gateway.examples import example_record
from pcf_exchange.gateway.policy import CounterState, Outcome, evaluate
from tests.gateway._factories import NOW
from tests.gateway.test_properties import RING, SECRETS, World, _decided, worlds

API_KEY = X25519PrivateKey.generate()
RECIPIENT, PURPOSE = "eu-battery-oem-de", "battery-regulation-art7"
COUNTERS = CounterState.empty(2026, b"s" * 32)
BATCH_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _vary(node: Any, i: int) -> Any:
    """Another record of the same layout: every generated value made distinct for *i*."""
    if isinstance(node, dict):
        return {k: _vary(v, i) for k, v in node.items()}
    if isinstance(node, list):
        return [_vary(v, i) for v in node]
    if isinstance(node, str) and node.endswith(".25"):
        return f"{i + 1}{node[1:]}"  # still a decimal (qty, vol)
    return f"{node}-{i}" if isinstance(node, str) else node


request_specs = st.lists(
    st.tuples(
        st.integers(0, 2),  # record
        st.sampled_from(["rcpt-0", "rcpt-1", "rcpt-2", "rcpt-0", "rcpt-1", "nobody"]),
        st.sampled_from(["p"] * 5 + ["q"]),  # purpose ("q" is allowed for nobody)
        st.sampled_from(["none", "none", "approved", "approved", "other"]),  # approval if held
        st.booleans(),  # note
        st.booleans(),  # api copy
    ),
    min_size=1,
    max_size=8,
)


def _requests(
    policy: Policy, world: World, specs: list[tuple[int, str, str, str, bool, bool]]
) -> list[TransferRequest]:
    records = [_vary(world.record, i) for i in range(3)]
    requests = []
    for n, (index, recipient, purpose, approval_kind, note, api) in enumerate(specs):
        record = records[index]
        approval = None
        if approval_kind != "none":
            # an approval of this request's hold, or (other) of another record's hold
            held_record = record if approval_kind == "approved" else records[(index + 1) % 3]
            held = prepare_transfer(
                policy,
                held_record,
                recipient=recipient,
                purpose=purpose,
                counters=COUNTERS,
                head=ChainHead(),
                secrets=SECRETS,
                now=NOW - timedelta(minutes=5),
            )
            if held.approval is not None:
                approval = approve(
                    held.approval, approver="officer", reason="ok", now=NOW - timedelta(minutes=1)
                )
        requests.append(
            TransferRequest(
                record,
                recipient,
                purpose,
                approval=approval,
                message_id=f"00000000-0000-4000-8000-{n:012d}",
                note=DEPRECATED_NOTE if note else None,
                api_key=API_KEY.public_key() if api else None,
            )
        )
    return requests


def _one_by_one(
    policy: Policy, requests: list[TransferRequest], batch: OutboundBatch
) -> list[PreparedTransfer]:
    head, counters, done = ChainHead(), COUNTERS, []
    for r in requests:
        prepared = prepare_transfer(
            policy,
            r.record,
            recipient=r.recipient,
            purpose=r.purpose,
            counters=counters,
            head=head,
            secrets=SECRETS,
            now=NOW,
            approval=r.approval,
            message_id=r.message_id,
            note=r.note,
            api_key=r.api_key,
            batch=batch,
        )
        head, counters = prepared.head, prepared.counters
        done.append(prepared)
    return done


def _opened(message: Any, recipient: str, key: X25519PrivateKey) -> dict[str, Any]:
    envelope = dict(
        open_message(message, recipient_id=recipient, private_key=key, trusted=RING).envelope
    )
    envelope.pop("fieldVault", None)  # HPKE single-shot: random, checked by the properties
    return envelope


def _check_chain(entries: list[AuditEntry], heads: list[ChainHead]) -> None:
    """The batch's entries form a valid chain from genesis (independently of ``chain_entries``)."""
    previous = ChainHead()
    for i, (entry, head) in enumerate(zip(entries, heads, strict=True)):
        assert entry.seq == i
        assert entry.prev_hash == previous.last_hash
        assert entry.entry_hash == entry.compute_hash()
        assert head == ChainHead.of(entries[: i + 1])
        previous = head


@BATCH_SETTINGS
@given(worlds(), request_specs)
def test_batch_form_equals_record_by_record(world: World, specs: Any) -> None:
    policy = parse_policy(yaml.safe_dump(world.policy_doc, allow_unicode=True))
    requests = _requests(policy, world, specs)
    seq_batch, bat_batch = OutboundBatch(SECRETS.signer), OutboundBatch(SECRETS.signer)
    one_by_one = _one_by_one(policy, requests, seq_batch)
    batched = prepare_transfers(
        policy,
        requests,
        counters=COUNTERS,
        head=ChainHead(),
        secrets=SECRETS,
        now=NOW,
        batch=bat_batch,
    )
    assert len(batched) == len(one_by_one) == len(requests)
    # decisions (also: as evaluate decides on the datetime), counters, approvals, what goes
    before = COUNTERS
    for a, b, r in zip(one_by_one, batched, requests, strict=True):
        event(f"outcome: {b.decision.outcome.value}{' (goes)' if b.goes else ''}")
        assert _decided(b.decision) == _decided(a.decision)
        alone = evaluate(policy, r.record, r.recipient, r.purpose, before, NOW)
        assert _decided(b.decision) == _decided(alone)
        before = b.counters
        assert b.counters == a.counters
        assert b.approval == a.approval
        assert b.goes == a.goes
        assert (b.api_copy is None) == (a.api_copy is None)
        assert b.outbound is None and a.outbound is None  # the caller's batch signs
        if b.encrypted is not None:
            assert a.encrypted is not None
            assert b.encrypted.message_id == a.encrypted.message_id
    if any(b.decision.counter_delta and not b.decision.counter_delta.empty for b in batched):
        event("PI counted")
    # the audit chain: the sequential entries, given the batch's ciphertext digests, chain to
    # exactly the batch's entries and heads
    entries = [b.entries[0] for b in batched]
    heads = [b.head for b in batched]
    _check_chain(entries, heads)
    head = ChainHead()
    for a, b in zip(one_by_one, batched, strict=True):
        (entry,) = a.entries
        rechained, head = append_entry(
            head, replace(entry, outbound_sha256=b.entries[0].outbound_sha256)
        )
        assert rechained == b.entries[0]
        assert head == b.head
    # the messages: the same batch positions, the same envelopes decrypt from both
    assert len(seq_batch) == len(bat_batch)
    seq_signed, bat_signed = seq_batch.sign(), bat_batch.sign()
    at = 0
    for b, r in zip(batched, requests, strict=True):
        if not b.goes:
            continue
        key = world.keys[r.recipient]
        assert bat_signed[at].message_id == b.entries[0].message_id
        assert _opened(bat_signed[at], r.recipient, key) == _opened(
            seq_signed[at], r.recipient, key
        )
        at += 1
        if b.api_copy is not None:
            assert _opened(bat_signed[at], r.recipient, API_KEY) == _opened(
                seq_signed[at], r.recipient, API_KEY
            )
            at += 1
    assert at == len(bat_signed)


@BATCH_SETTINGS
@given(worlds(), request_specs)
def test_batch_form_without_a_batch_signs_its_own(world: World, specs: Any) -> None:
    """No *batch*: one batch of all the requests is signed, each ``outbound`` opens."""
    policy = parse_policy(yaml.safe_dump(world.policy_doc, allow_unicode=True))
    requests = _requests(policy, world, specs)
    batched = prepare_transfers(
        policy, requests, counters=COUNTERS, head=ChainHead(), secrets=SECRETS, now=NOW
    )
    for prepared, r in zip(batched, requests, strict=True):
        assert (prepared.outbound is not None) == prepared.goes
        if prepared.outbound is not None:
            opened = open_message(
                prepared.outbound,
                recipient_id=r.recipient,
                private_key=world.keys[r.recipient],
                trusted=RING,
            )
            assert opened.envelope["messageId"] == prepared.entries[0].message_id
            assert prepared.entries[0].outbound_sha256 == prepared.encrypted.ciphertext_sha256  # type: ignore[union-attr]


NOTIFIED_BODY, VERIFICATION = "eu-notified-body-fr", "battery-cf-verification"


def _shipped() -> Policy:
    """The shipped policy, two recipients given real keys (as the bench does)."""
    shipped = load_policy(default_policy_path())
    recipients = dict(shipped.recipients)
    for rid in (RECIPIENT, NOTIFIED_BODY):
        public = X25519PrivateKey.generate().public_key().public_bytes_raw()
        recipients[rid] = replace(recipients[rid], encryption_key=public)
    return replace(shipped, recipients=recipients)


def test_an_empty_batch_changes_nothing() -> None:
    assert (
        prepare_transfers(
            _shipped(), [], counters=COUNTERS, head=ChainHead(), secrets=SECRETS, now=NOW
        )
        == []
    )
    assert chain_entries(ChainHead(), []) == ([], [])


def test_a_batch_counts_pi_as_it_goes() -> None:
    """PI counters thread through the batch: the individual (a contact of the lineage record)
    the first approved transfer to the notified body counts is not new for the second, and the
    blocked and held requests in between count no one."""
    policy, record = _shipped(), example_record()
    held = evaluate(policy, record, NOTIFIED_BODY, VERIFICATION, COUNTERS, NOW)
    assert held.outcome is Outcome.HELD
    assert held.counter_delta is not None and not held.counter_delta.empty
    approval = approve(
        request_approval(held, requested_by="gateway", now=NOW),
        approver="officer",
        reason="ok",
        now=NOW,
    )
    release = TransferRequest(record, NOTIFIED_BODY, VERIFICATION, approval=approval)
    requests = [
        release,
        TransferRequest(record, "nobody", VERIFICATION),
        TransferRequest(record, NOTIFIED_BODY, VERIFICATION),
        release,
    ]
    first, blocked, pending, second = prepare_transfers(
        policy, requests, counters=COUNTERS, head=ChainHead(), secrets=SECRETS, now=NOW
    )
    assert first.goes and second.goes and not blocked.goes and not pending.goes
    assert pending.approval is not None
    assert first.decision.counter_delta == held.counter_delta
    assert first.counters == COUNTERS.apply(held.counter_delta)
    assert blocked.counters == pending.counters == first.counters
    again = evaluate(policy, record, NOTIFIED_BODY, VERIFICATION, first.counters, NOW)
    assert again.counter_delta is not None and again.counter_delta.empty
    assert second.decision.counter_delta == again.counter_delta
    assert second.counters == first.counters
    assert [p.entries[0].pi_individuals_added for p in (first, blocked, pending, second)] == [
        1,
        0,
        0,
        0,
    ]


@given(st.text(), st.binary(max_size=300))
def test_outbound_leaf_hash_is_the_leaf_hash_of_the_leaf(content_type: str, body: bytes) -> None:
    assert outbound_leaf_hash(content_type, body) == hash_leaf(outbound_leaf(content_type, body))
