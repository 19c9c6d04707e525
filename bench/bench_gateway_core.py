"""Gateway pure-core throughput: decide → transform → encrypt → audit entry, signed per batch.

``python -m bench.bench_gateway_core`` measures, side by side in one run, the core in its batch
form (``prepare_transfers`` over :data:`BATCH` requests a call, as the runner calls it) for the
shipped policy and an EU battery customer (no Kafka, no I/O), records sealed as the
runner seals them: into one ``OutboundBatch`` per :data:`BATCH` records (one HPKE context per
recipient per batch, one Ed25519 signature per batch, included in the figure):

- ``gateway_core_lineage``: a rolled-up battery footprint with lineage (89 fields: facility,
  contacts, two tiers of inputs); 13 pseudonyms, 4 generalisations, 30 redactions per record.
- ``gateway_core_pact``: the same footprint without the lineage extension (30 fields).

Details also hold, measured in the same run, ``per_record_calls_records_s``: the same work as
one ``prepare_transfer`` call per record into a shared batch (what the runner did before the
batch form). Baseline: ``json.loads(json.dumps(record))`` of the same record. Target 8 000
records/s per process (PACT records). Details hold a per-stage breakdown and, measured in the
same run, the per-record crypto of version 1 (``before_*``: an Ed25519 signature and an HPKE
single-shot seal per record, what ``prepare_transfer`` did before crypto went per batch).
``--out DIR`` writes the result files elsewhere (and leaves BENCHMARKS.md alone).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench._timing import rate
from bench.report import RESULTS_DIR, Baseline, BenchResult, write_result
from pcf_exchange.gateway import (
    GatewayKey,
    GatewaySecrets,
    KeyRing,
    OutboundBatch,
    TransferRequest,
    default_policy_path,
    load_policy,
    open_message,
    prepare_transfer,
    prepare_transfers,
    seal,
)
from pcf_exchange.gateway._pipeline import _draft
from pcf_exchange.gateway.audit import ChainHead, EntryKind, chain_new_entry, format_time
from pcf_exchange.gateway.examples import example_record
from pcf_exchange.gateway.policy import CounterState, Outcome, apply, evaluate

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
RECIPIENT, PURPOSE = "eu-battery-oem-de", "battery-regulation-art7"
TARGET = 8_000
BATCH = 1_000

LINEAGE_RECORD = example_record()
PACT_RECORD = {k: copy.deepcopy(v) for k, v in LINEAGE_RECORD.items() if k != "extensions"}


def measure(name: str, record: dict[str, Any], seconds: float) -> BenchResult:
    key = X25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shipped = load_policy(default_policy_path())
    recipients = {**shipped.recipients}
    recipients[RECIPIENT] = replace(recipients[RECIPIENT], encryption_key=public)
    policy = replace(shipped, recipients=recipients)
    signer = GatewayKey.generate()
    secrets = GatewaySecrets(signer, b"p" * 32)
    counters = CounterState.empty(2026, b"s" * 32)
    state: dict[str, Any] = {"head": ChainHead(), "batch": OutboundBatch(signer)}

    requests = [TransferRequest(record, RECIPIENT, PURPOSE)] * BATCH

    def pipeline() -> None:
        # the batch form, as the runner calls it: one prepare_transfers per BATCH records, then
        # the batch's one signature
        batch = OutboundBatch(signer)
        done = prepare_transfers(
            policy,
            requests,
            counters=counters,
            head=state["head"],
            secrets=secrets,
            now=NOW,
            batch=batch,
        )
        state["head"] = done[-1].head
        batch.sign()

    def per_record() -> None:
        batch = state["batch"]
        prepared = prepare_transfer(
            policy,
            record,
            recipient=RECIPIENT,
            purpose=PURPOSE,
            counters=counters,
            head=state["head"],
            secrets=secrets,
            now=NOW,
            batch=batch,
        )
        state["head"] = prepared.head
        if len(batch) >= BATCH:  # the runner signs once per transaction
            batch.sign()
            state["batch"] = OutboundBatch(signer)

    def before() -> None:
        # version 1, per record: decide, transform, Ed25519 + HPKE single-shot, audit entry
        decision = evaluate(policy, record, RECIPIENT, PURPOSE, counters, NOW)
        transformed = apply(decision, record, pseudonym_secret=secrets.pseudonym_secret)
        stamp = format_time(NOW)
        envelope = transformed.envelope(message_id=str(uuid.uuid4()), issued_at=stamp)
        sealed = seal(envelope, signer=signer, recipient_key=public, checked=True)
        draft = _draft(
            decision,
            EntryKind.TRANSFER,
            stamp,
            message_id=sealed.message_id,
            outbound_sha256=sealed.ciphertext_sha256,
            approval_id=None,
        )
        state["head"] = chain_new_entry(state["head"], draft)[1]

    # sanity: the output opens, and is what the policy says
    prepared = prepare_transfer(
        policy,
        record,
        recipient=RECIPIENT,
        purpose=PURPOSE,
        counters=counters,
        head=ChainHead(),
        secrets=secrets,
        now=NOW,
    )
    assert prepared.decision.outcome in (Outcome.ALLOWED, Outcome.TRANSFORMED)
    assert prepared.outbound is not None
    opened = open_message(
        prepared.outbound,
        recipient_id=RECIPIENT,
        private_key=key,
        trusted=KeyRing.of(signer.public_key),
    )
    assert opened.footprint["id"] == record["id"]

    ours = BATCH * rate(pipeline, seconds=seconds, repeats=3)
    per_record_rate = rate(per_record, seconds=seconds)
    baseline = rate(lambda: json.loads(json.dumps(record)), seconds=seconds)
    before_rate = rate(before, seconds=seconds)

    decision = evaluate(policy, record, RECIPIENT, PURPOSE, counters, NOW)
    outbound = apply(decision, record, pseudonym_secret=secrets.pseudonym_secret)
    envelope = outbound.envelope(message_id="m", issued_at=format_time(NOW))
    stamp = format_time(NOW)
    stage_seconds = seconds / 3
    stages = {
        "evaluate": rate(
            lambda: evaluate(policy, record, RECIPIENT, PURPOSE, counters, NOW),
            seconds=stage_seconds,
        ),
        "apply": rate(
            lambda: apply(decision, record, pseudonym_secret=secrets.pseudonym_secret),
            seconds=stage_seconds,
        ),
        "encrypt_and_sign_in_batch": BATCH
        * rate(lambda: _sealed_batch(signer, envelope, public), seconds=stage_seconds, repeats=2),
        "before_sign_and_encrypt": rate(
            lambda: seal(envelope, signer=signer, recipient_key=public), seconds=stage_seconds
        ),
        "audit_entry": rate(
            lambda: chain_new_entry(ChainHead(), _draft(decision, EntryKind.TRANSFER, stamp)),
            seconds=stage_seconds,
        ),
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return BenchResult(
        name=name,
        unit="records/s",
        value=round(ours),
        higher_is_better=True,
        description=f"prepare_transfers (batch form, {BATCH} records a call): policy + transforms"
        " + encryption (one HPKE context per recipient per batch) + chained audit entry,"
        f" one Ed25519 per {BATCH}-record batch, 1 core ({len(decision.fields)} fields)",
        baseline=Baseline("json.loads(json.dumps(record))", round(baseline), "records/s"),
        target=TARGET,
        details={
            "fields": len(decision.fields),
            "outcome": decision.outcome.value,
            "record_json_bytes": len(json.dumps(record)),
            "sealed_bytes": len(prepared.outbound.to_bytes()),
            "us_per_stage": {k: round(1e6 / v, 1) for k, v in stages.items()},
            "crypto_ceiling_records_s": round(stages["encrypt_and_sign_in_batch"]),
            "per_record_calls_records_s": round(per_record_rate),
            "batch_vs_per_record_calls": round(ours / per_record_rate, 3),
            "before_records_s": round(before_rate),
            "before_ratio": round(before_rate / baseline, 4),
            "speedup_vs_before": round(ours / before_rate, 2),
            "batch_size": BATCH,
            "load_average_1m": load,
            "policy": f"{policy.id} {policy.version}",
            "recipient": RECIPIENT,
        },
    )


def _sealed_batch(signer: GatewayKey, envelope: dict[str, Any], public: bytes) -> None:
    """One batch as the runner seals it: BATCH records encrypted, then one signature."""
    batch = OutboundBatch(signer)
    for _ in range(BATCH):
        batch.add(envelope, recipient_key=public, checked=True)
    batch.sign()


def main(argv: list[str] | None = None) -> list[BenchResult]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--seconds", type=float, default=1.5, help="measuring time per figure")
    args = parser.parse_args(argv)
    results = [
        measure("gateway_core_lineage", LINEAGE_RECORD, args.seconds),
        measure("gateway_core_pact", PACT_RECORD, args.seconds),
    ]
    for result in results:
        path = write_result(result, args.out)
        base = result.baseline.value if result.baseline else 0
        ratio = f"{result.ratio:.3f}" if result.ratio is not None else "-"
        print(
            f"{result.name:22} {result.value:>8,.0f} {result.unit} vs {base:>8,.0f} ({ratio}x)"
            f"  target {TARGET:,}: {'met' if result.meets_target else 'NOT met'}"
        )
        print(
            f"{'':22} stages µs: {result.details['us_per_stage']}"
            f"  load {result.details['load_average_1m']}"
        )
        print(
            f"{'':22} per-record calls (prepare_transfer into one batch):"
            f" {result.details['per_record_calls_records_s']:,} records/s; batch form"
            f" {result.details['batch_vs_per_record_calls']}x that"
        )
        print(
            f"{'':22} before (v1, crypto per record): {result.details['before_records_s']:,}"
            f" records/s; now {result.details['speedup_vs_before']}x that"
        )
        print(f"{'':22} -> {path}")
    return results


if __name__ == "__main__":
    main()
