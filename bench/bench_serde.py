"""Serde throughput of a realistic signed PACT footprint (one thread, one core).

``python -m bench.bench_serde`` measures, side by side in one run:

- ``serde_encode_avro``: record -> framed Avro (model dump + fastavro + Confluent header);
  baseline ``json.dumps`` of the same record's PACT JSON.
- ``serde_decode_avro``: framed Avro -> Avro datum (header + fastavro, no rules checked);
  baseline ``json.loads`` of the same record's PACT JSON text. Target 100k records/s.
- ``serde_decode_validate``: framed Avro -> validated frozen record (every contract rule);
  baseline the unvalidated decode above, so the ratio is what validation costs.
- ``serde_decode_check_v2``: the same footprint in the v2 envelope (its signed bytes in
  ``signedBody``) -> a checked record on the ingestion's fast path (envelope datum, body read
  once with orjson, every rule as a plain check: ``contracts._fast.read_footprint``); baseline
  ``serde_decode_validate``, the way a checked footprint was had before.

- ``serde_publish_record``: a rolled-up product as the streams publish it, per product of the
  demo chain (six products, four tiers): its ``pcf.products`` record built from the core's
  result as an Avro datum and checked by the compiled rules (``streams.adapt.rolled_up_datum``),
  encoded (``AvroSerde.encode_datum``), and its predecessor's ``Deprecated`` copy made on the
  stored bytes (``streams._publish.deprecated_bytes``; its fallback, decoding the datum and
  encoding it again, is in the details); baseline the same through the models
  (``rolled_up_record``: pydantic and the PACT round trip of its footprint;
  ``AvroSerde.encode``; the copy from the model in memory, as the publisher did before). Both
  give the same bytes (checked before timing). Timed in CPU time (``time.process_time``), which
  other load on the machine disturbs far less than wall time.

The first three use the footprint in the v1 form (the typed Avro record), which is what they
measure: fastavro and the models on ~100 Avro fields.

``--out DIR`` writes the result files elsewhere (and leaves BENCHMARKS.md alone); ``--rows
publish`` measures only ``serde_publish_record``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import fastavro
import pydantic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._timing import rate
from bench.report import RESULTS_DIR, Baseline, BenchResult, write_result
from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    InMemorySchemaRegistry,
    RolledUpFootprint,
    SignedFootprint,
    dump_pact_json,
    load_boms,
    load_factors,
    load_footprints,
    parse_footprint,
    register_all,
    sign,
    to_pact_json,
)
from pcf_exchange.contracts._fast import read_footprint
from pcf_exchange.contracts.examples import example_footprint
from pcf_exchange.streams._publish import deprecated_bytes
from pcf_exchange.streams.adapt import (
    core_bom,
    core_factor,
    core_footprint,
    deprecated_record,
    payload_hash,
    rolled_up_datum,
    rolled_up_record,
)
from pcf_exchange.streams.rollup import RollupResult, run_batch

# A lithium-battery cell footprint as a supplier would send it (contracts.examples).
RECORD: Final = example_footprint()


_REQUIRED_PCF = (
    "declaredUnitOfMeasurement",
    "declaredUnitAmount",
    "productMassPerDeclaredUnit",
    "referencePeriodStart",
    "referencePeriodEnd",
    "pcfExcludingBiogenicUptake",
    "pcfIncludingBiogenicUptake",
    "fossilGhgEmissions",
    "fossilCarbonContent",
    "ipccCharacterizationFactors",
    "crossSectoralStandards",
    "exemptedEmissionsPercent",
)


ROOT: Final = Path(__file__).resolve().parents[1]
PREVIOUS: Final = "6f1e1f4e-3a63-4f0e-9a53-0d0bb5d6f0a1"
ROUNDS: Final = 4
"""Rounds of the publish row: each path is timed once per round, in turn, the best counts."""
"""The id of the footprint each product's new one supersedes."""


def demo_chain() -> list[tuple[RollupResult, BillOfMaterials]]:
    """The demo chain's roll-up results in batch mode, each with its BOM."""
    footprints = [r.value for r in load_footprints(ROOT / "demo/lfp/suppliers-footprints.json")]
    boms = [r.value for r in load_boms(ROOT / "demo/lfp/manufacturers-boms.json")]
    factors = [r.value for r in load_factors(ROOT / "producers/data/factors-cn.json")]
    assert all(x is not None for x in (*footprints, *boms, *factors)), "the demo files load"
    results = run_batch(
        [core_footprint(f, sequence=1, content_hash=payload_hash(f)) for f in footprints if f],
        [core_bom(b) for b in boms if b],
        [core_factor(f, sequence=1, content_hash=payload_hash(f)) for f in factors if f],
    )
    return [(results[b.product_id], b) for b in boms if b]


def publish_row(seconds: float) -> BenchResult:
    """``serde_publish_record`` (see the module docstring)."""
    registry = InMemorySchemaRegistry()
    register_all(registry)
    serde = AvroSerde(registry)
    topic = "pcf.products"
    now = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    chain = demo_chain()
    # each product's previous record, as stored (its footprint the one superseded)
    in_memory = [
        rolled_up_record(r, sequence=1, bom=b, previous_pf_id=None, now=now) for r, b in chain
    ]
    stored = [serde.encode(topic, record) for record in in_memory]

    def models() -> list[bytes]:
        out = []
        for result, bom in chain:
            record = rolled_up_record(result, sequence=2, bom=bom, previous_pf_id=PREVIOUS, now=now)
            out.append(serde.encode(topic, record))
        return out

    def datums() -> list[bytes]:
        out = []
        for result, bom in chain:
            datum = rolled_up_datum(result, sequence=2, bom=bom, previous_pf_id=PREVIOUS, now=now)
            assert datum is not None, "the compiled rules accept the demo chain"
            out.append(serde.encode_datum(topic, RolledUpFootprint, datum))
        return out

    def copies_from_models() -> list[bytes]:
        out = []
        for record in in_memory:
            retired = deprecated_record(record)
            assert retired is not None
            out.append(serde.encode(topic, retired))
        return out

    ids = [str(r.footprint.id) for r in in_memory if r.footprint is not None]
    schema_id = serde.schema_id(topic, RolledUpFootprint)

    def copies_from_bytes() -> list[bytes]:  # (as the publisher makes them)
        out = []
        for value, footprint_id in zip(stored, ids, strict=True):
            copy = deprecated_bytes(value, footprint_id, schema_id)
            assert copy is not None, "the stored record is rewritten in place"
            out.append(copy)
        return out

    def copies_through_datums() -> list[bytes]:  # (its fallback)
        out = []
        for value in stored:
            _, datum = serde.decode_datum(value)
            datum["footprint"]["status"] = "Deprecated"
            out.append(serde.encode_datum(topic, RolledUpFootprint, datum))
        return out

    if models() != datums() or not (
        copies_from_models() == copies_from_bytes() == copies_through_datums()
    ):
        raise AssertionError("the datum path must give the models' bytes")
    n = len(chain)
    cpu = time.process_time  # (CPU time: the machine is shared; one thread, no I/O)
    paths = (models, datums, copies_from_models, copies_from_bytes, copies_through_datums)
    best = [0.0] * len(paths)
    for _ in range(ROUNDS):  # (in turn, so that every path meets the same moments of load)
        for i, path in enumerate(paths):
            best[i] = max(best[i], rate(path, seconds=seconds / ROUNDS, clock=cpu) * n)
    old_build, new_build, old_copy, new_copy, datum_copy = best

    def both(build: float, copy: float) -> float:
        return 1 / (1 / build + 1 / copy)  # a product published after a predecessor

    return BenchResult(
        name="serde_publish_record",
        unit="products/s",
        value=round(both(new_build, new_copy)),
        higher_is_better=True,
        description="a published product: pcf.products record built from the core's result as"
        " an Avro datum (compiled rules) + encoded + its predecessor's Deprecated copy rewritten"
        " on the stored bytes, demo chain, 1 core",
        baseline=Baseline(
            "the same through the models (pydantic + PACT round trip + model dump)",
            round(both(old_build, old_copy)),
            "products/s",
        ),
        details={
            "products": n,
            "record_bytes": [len(v) for v in datums()],
            "us_per_record_built_and_encoded": round(1e6 / new_build, 1),
            "us_per_record_built_and_encoded_models": round(1e6 / old_build, 1),
            "us_per_deprecated_copy": round(1e6 / new_copy, 1),
            "us_per_deprecated_copy_models": round(1e6 / old_copy, 1),
            "us_per_deprecated_copy_through_datum": round(1e6 / datum_copy, 1),
            "clock": "process CPU time (time.process_time), paths timed in turn over"
            f" {ROUNDS} rounds, best of 5 windows each",
            "python": platform.python_version(),
            "threads": 1,
        },
    )


def main(argv: list[str] | None = None) -> list[BenchResult]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--seconds", type=float, default=1.5, help="measuring time per figure")
    parser.add_argument(
        "--rows", choices=("all", "publish"), default="all", help="which figures to measure"
    )
    args = parser.parse_args(argv)
    if args.rows == "publish":
        return _report([publish_row(args.seconds)], args.out)

    footprint = parse_footprint(RECORD)
    signed = sign(
        Ed25519PrivateKey.from_private_bytes(bytes(32)),
        footprint,
        supplier_id="example-cells",
        key_id="k-2025-01",
        sequence=7,
    )
    assert isinstance(signed, SignedFootprint)
    v2 = signed
    signed = signed.model_copy(update={"signed_body": None})  # the v1 form
    registry = InMemorySchemaRegistry()
    register_all(registry)
    serde = AvroSerde(registry)
    topic = "pcf.declared"
    framed = serde.encode(topic, signed)
    pact = to_pact_json(footprint)
    pact_text = dump_pact_json(footprint)
    assert serde.decode(framed, SignedFootprint) == signed

    # the same record with only the fields PACT requires: how decode scales with field count
    lean_json = {
        k: v for k, v in RECORD.items() if k not in ("precedingPfIds", "extensions", "comment")
    }
    lean_json["productClassifications"] = RECORD["productClassifications"]
    lean_json["pcf"] = {k: v for k, v in RECORD["pcf"].items() if k in _REQUIRED_PCF}
    lean = sign(
        Ed25519PrivateKey.from_private_bytes(bytes(32)),
        parse_footprint(lean_json),
        supplier_id="example-cells",
        key_id="k-2025-01",
        sequence=7,
    )
    lean_framed = serde.encode(topic, lean.model_copy(update={"signed_body": None}))
    v2_framed = serde.encode(topic, v2)

    def check_v2() -> None:
        if read_footprint(serde.decode_datum(v2_framed)[1]) is None:
            raise AssertionError("the v2 record did not take the fast path")

    encode = rate(lambda: serde.encode(topic, signed), seconds=args.seconds)
    json_dumps = rate(lambda: json.dumps(pact), seconds=args.seconds)
    decode = rate(lambda: serde.decode_datum(framed), seconds=args.seconds)
    json_loads = rate(lambda: json.loads(pact_text), seconds=args.seconds)
    validated = rate(lambda: serde.decode(framed, SignedFootprint), seconds=args.seconds)
    lean_decode = rate(lambda: serde.decode_datum(lean_framed), seconds=args.seconds)
    lean_validated = rate(lambda: serde.decode(lean_framed, SignedFootprint), seconds=args.seconds)
    checked_v2 = rate(check_v2, seconds=args.seconds)

    facts = {
        "record": "SignedFootprint (PACT v3 ProductFootprint + pcfx extension + Ed25519 envelope)",
        "avro_bytes": len(framed),
        "pact_json_bytes": len(pact_text.encode()),
        "fastavro": fastavro.__version__,
        "pydantic": pydantic.VERSION,
        "python": platform.python_version(),
        "threads": 1,
    }
    results = [
        BenchResult(
            name="serde_encode_avro",
            unit="records/s",
            value=round(encode),
            higher_is_better=True,
            description="SignedFootprint -> framed Avro (model dump + fastavro + header), 1 core",
            baseline=Baseline("json.dumps of the PACT JSON", round(json_dumps), "records/s"),
            details=facts,
        ),
        BenchResult(
            name="serde_decode_avro",
            unit="records/s",
            value=round(decode),
            higher_is_better=True,
            description="framed Avro -> datum (header + fastavro, no rule checks), 1 core",
            baseline=Baseline("json.loads of the PACT JSON", round(json_loads), "records/s"),
            target=100_000,
            details={
                **facts,
                "lean_record": "same, PACT-required fields only",
                "lean_avro_bytes": len(lean_framed),
                "lean_decode_records_s": round(lean_decode),
                "lean_decode_validate_records_s": round(lean_validated),
            },
        ),
        BenchResult(
            name="serde_decode_validate",
            unit="records/s",
            value=round(validated),
            higher_is_better=True,
            description="framed Avro -> validated SignedFootprint (all contract rules), 1 core",
            baseline=Baseline("decode without validation", round(decode), "records/s"),
            details={**facts, "validation_us_per_record": round(1e6 / validated - 1e6 / decode, 1)},
        ),
        BenchResult(
            name="serde_decode_check_v2",
            unit="records/s",
            value=round(checked_v2),
            higher_is_better=True,
            description="framed v2 SignedFootprint -> checked record (envelope Avro, body JSON"
            " read once, every rule as plain checks: the ingestion's fast path), 1 core",
            baseline=Baseline("decode + validation of the v1 form", round(validated), "records/s"),
            details={
                **facts,
                "v2_avro_bytes": len(v2_framed),
                "us_per_record": round(1e6 / checked_v2, 1),
            },
        ),
        publish_row(args.seconds),
    ]
    _report(results, args.out)
    print(f"lean record (PACT-required fields): decode {lean_decode:,.0f}/s, ", end="")
    print(f"validated {lean_validated:,.0f}/s")
    return results


def _report(results: list[BenchResult], out: Path) -> list[BenchResult]:
    for result in results:
        path = write_result(result, out)
        ratio = f"{result.ratio:.2f}" if result.ratio is not None else "-"
        base = result.baseline.value if result.baseline else 0
        print(f"{result.name:24} {result.value:>10,.0f} {result.unit} vs {base:>10,.0f} ({ratio}x)")
        print(f"{'':24} -> {path}")
    return results


if __name__ == "__main__":
    main()
