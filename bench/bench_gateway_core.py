"""Gateway pure-core throughput: decide → transform → sign → encrypt → audit entry (one core).

``python -m bench.bench_gateway_core`` measures, side by side in one run, ``prepare_transfer``
for the shipped policy and an EU battery customer (no Kafka, no I/O):

- ``gateway_core_lineage``: a rolled-up battery footprint with lineage (89 fields: facility,
  contacts, two tiers of inputs); 13 pseudonyms, 4 generalisations, 30 redactions per record.
- ``gateway_core_pact``: the same footprint without the lineage extension (30 fields).

Baseline: ``json.loads(json.dumps(record))`` of the same record. Target 5 000 records/s per
process. Details hold a per-stage breakdown and the crypto-only ceiling (Ed25519 + HPKE).
``--out DIR`` writes the result files elsewhere (and leaves BENCHMARKS.md alone).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.report import RESULTS_DIR, Baseline, BenchResult, write_result
from gateway import (
    GatewayKey,
    GatewaySecrets,
    KeyRing,
    default_policy_path,
    load_policy,
    open_message,
    prepare_transfer,
    seal,
)
from gateway._pipeline import _draft
from gateway.audit import ChainHead, EntryKind, chain_new_entry, format_time
from gateway.policy import CounterState, Outcome, apply, evaluate

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
RECIPIENT, PURPOSE = "eu-battery-oem-de", "battery-regulation-art7"
TARGET = 5_000

LINEAGE_RECORD: dict[str, Any] = {
    "id": "3f1b6c9e-6a57-4b0e-9d53-1f2f3a4b5c6d",
    "specVersion": "3.0.0",
    "created": "2026-04-30T00:00:00Z",
    "status": "Active",
    "companyName": "Example Cell Manufacturing Co., Ltd.",
    "companyIds": ["urn:pact:company:uscc:91440300MA5EXAMPLE"],
    "productDescription": "LFP prismatic cell 280 Ah for energy storage",
    "productIds": ["urn:pact:example.cn:cell:LFP-280"],
    "productNameCompany": "LFP-280",
    "comment": "Line 3 runs the 2025 recipe with dry-room at -45 C dew point",
    "pcf": {
        "declaredUnitOfMeasurement": "kilowatt hour",
        "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": "5.9",
        "referencePeriodStart": "2025-01-01T00:00:00Z",
        "referencePeriodEnd": "2026-01-01T00:00:00Z",
        "geographyCountrySubdivision": "CN-GD",
        "pcfExcludingBiogenicUptake": "61.27",
        "pcfIncludingBiogenicUptake": "61.27",
        "fossilGhgEmissions": "60.9",
        "fossilCarbonContent": "0",
        "ipccCharacterizationFactors": ["AR6"],
        "crossSectoralStandards": ["ISO14067", "PACT-3.0"],
        "exemptedEmissionsPercent": "0.4",
        "allocationRulesDescription": "Mass allocation between cell grades A and B",
        "primaryDataShare": "63.5",
        "dqi": {"technologicalDQR": "1.6", "geographicalDQR": "1.2", "temporalDQR": "1.4"},
        "packagingEmissionsIncluded": True,
    },
    "extensions": [
        {
            "specVersion": "2.0.0",
            "dataSchema": "https://pcf-exchange.example/schemas/lineage/v1.json",
            "data": {
                "lineage": {
                    "method": "mass",
                    "calcEngineVersion": "0.1.0",
                    "computedAt": "2026-04-30T00:00:00Z",
                    "facility": {
                        "facilityId": "FAC-SZ-03",
                        "country": "CN",
                        "subdivision": "CN-GD",
                        "city": "Shenzhen",
                        "address": "88 Example Road, Longgang District",
                        "latitude": "22.7213",
                        "longitude": "114.2468",
                        "unLocode": "CNSZX",
                        "productionVolume": {"quantity": "1200000", "unit": "kilowatt hour"},
                        "energy": [
                            {"carrier": "electricity", "quantity": "54000000", "unit": "kWh"},
                            {"carrier": "natural gas", "quantity": "3100000", "unit": "MJ"},
                        ],
                        "electricitySource": "GRID",
                        "electricityEmissionFactor": "0.5703",
                        "processParameters": {"dryRoomDewPointC": "-45", "formationCycles": 3},
                    },
                    "contacts": [
                        {
                            "name": "Li Wei",
                            "email": "li.wei@example.cn",
                            "phone": "+86 755 0000 0001",
                            "role": "PCF owner",
                        }
                    ],
                    "inputs": [
                        {
                            "pfId": "8a0e1f4c-1111-4a5b-9c9d-000000000001",
                            "sha256": "aa" * 32,
                            "productId": "urn:pact:cathode.example.cn:lfp:C-900",
                            "supplierId": "urn:pact:company:uscc:91430100CATHODE01",
                            "supplierName": "Example Cathode Materials Co.",
                            "tier": 1,
                            "quantity": "2.15",
                            "unit": "kilogram",
                            "massShare": "0.364",
                            "contribution": "21.40",
                            "dataSource": "primary",
                            "inputs": [
                                {
                                    "pfId": "8a0e1f4c-2222-4a5b-9c9d-000000000002",
                                    "supplierId": "urn:pact:company:uscc:91360000LITHIUM02",
                                    "supplierName": "Example Lithium Salt Refinery",
                                    "tier": 2,
                                    "quantity": "0.55",
                                    "unit": "kilogram",
                                    "backgroundDataset": {
                                        "name": "ecoinvent",
                                        "version": "3.10",
                                        "value": "11.73",
                                    },
                                }
                            ],
                        },
                        {
                            "pfId": "8a0e1f4c-3333-4a5b-9c9d-000000000003",
                            "productId": "urn:pact:foil.example.cn:cu:F-8",
                            "supplierId": "urn:pact:company:uscc:91320500COPPERF3",
                            "supplierName": "Example Copper Foil Ltd.",
                            "tier": 1,
                            "quantity": "0.41",
                            "unit": "kilogram",
                            "massShare": "0.069",
                            "contribution": "3.05",
                            "dataSource": "secondary",
                        },
                    ],
                }
            },
        }
    ],
}
PACT_RECORD = {k: copy.deepcopy(v) for k, v in LINEAGE_RECORD.items() if k != "extensions"}


def rate(fn: Callable[[], object], *, seconds: float = 1.5, repeats: int = 5) -> float:
    """Best-of-*repeats* calls per second of *fn* (the best window is the least disturbed)."""
    calls = 50
    while True:  # size a batch to ~0.1 s
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > 0.1:
            break
        calls *= 2
    per_run = max(1, int(calls * (seconds / repeats) / elapsed))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_run):
            fn()
        best = max(best, per_run / (time.perf_counter() - start))
    return best


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
    state = {"head": ChainHead()}

    def pipeline() -> None:
        prepared = prepare_transfer(
            policy,
            record,
            recipient=RECIPIENT,
            purpose=PURPOSE,
            counters=counters,
            head=state["head"],
            secrets=secrets,
            now=NOW,
        )
        state["head"] = prepared.head

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

    ours = rate(pipeline, seconds=seconds)
    baseline = rate(lambda: json.loads(json.dumps(record)), seconds=seconds)

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
        "sign_and_encrypt": rate(
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
        description="prepare_transfer: policy + transforms + Ed25519 + HPKE + chained audit "
        f"entry, 1 core ({len(decision.fields)} fields)",
        baseline=Baseline("json.loads(json.dumps(record))", round(baseline), "records/s"),
        target=TARGET,
        details={
            "fields": len(decision.fields),
            "outcome": decision.outcome.value,
            "record_json_bytes": len(json.dumps(record)),
            "sealed_bytes": len(prepared.outbound.to_bytes()),
            "us_per_stage": {k: round(1e6 / v, 1) for k, v in stages.items()},
            "crypto_ceiling_records_s": round(stages["sign_and_encrypt"]),
            "load_average_1m": load,
            "policy": f"{policy.id} {policy.version}",
            "recipient": RECIPIENT,
        },
    )


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
        print(f"{'':22} -> {path}")
    return results


if __name__ == "__main__":
    main()
