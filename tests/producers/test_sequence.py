"""Sequences: monotonic per key, the same for the same content; the ledger that remembers them."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pcf_exchange.contracts import BillOfMaterials, EmissionFactor, parse, parse_footprint
from pcf_exchange.contracts.errors import KeyStoreError
from pcf_exchange.producers import (
    Item,
    Ledger,
    LedgerEntry,
    Publisher,
    Signer,
    Status,
    deprecated,
    footprint_sequence,
    next_sequence,
)
from pcf_exchange.producers._sequence import clock_sequence
from tests.producers.conftest import bom_json, factor_json, footprint_json


def test_footprint_sequence_orders_the_v3_lifecycle() -> None:
    old = parse_footprint(footprint_json(1, created="2025-03-01T08:00:00Z"))
    new = parse_footprint(footprint_json(2, created="2025-03-01T08:00:00.000001Z"))
    micros = 1_740_816_000_000_000
    assert footprint_sequence(old) == 2 * micros
    assert footprint_sequence(deprecated(old)) == 2 * micros + 1
    assert footprint_sequence(old) < footprint_sequence(deprecated(old)) < footprint_sequence(new)
    # the same instant written with another offset is the same sequence
    same = parse_footprint(footprint_json(1, created="2025-03-01T16:00:00+08:00"))
    assert footprint_sequence(same) == footprint_sequence(old)


def test_footprint_sequence_range() -> None:
    with pytest.raises(ValueError, match="between 1970 and 2112"):
        footprint_sequence(parse_footprint(footprint_json(1, created="1969-12-31T23:59:59Z")))


def test_next_sequence_is_above_the_last_and_the_floor() -> None:
    now = clock_sequence()
    assert next_sequence(None) >= now
    assert next_sequence(now + 10**9) == now + 10**9 + 1
    assert next_sequence(None, floor=now + 10**9) == now + 10**9


def test_ledger_round_trip_and_merge(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    first, second = Ledger(path), Ledger(path)
    first.record("s", "factor", "bg:a", LedgerEntry("h1", 10, "k"))
    first.save()
    second.record("s", "factor", "bg:b", LedgerEntry("h2", 20, "k"))
    second.record("s", "factor", "bg:a", LedgerEntry("h0", 5, "k"))  # older: loses the merge
    second.save()
    merged = Ledger(path)
    assert merged.get("s", "factor", "bg:a") == LedgerEntry("h1", 10, "k")
    assert merged.get("s", "factor", "bg:b") == LedgerEntry("h2", 20, "k")
    data = json.loads(path.read_text())
    assert data["version"] == 1 and set(data["signers"]["s"]["factor"]) == {"bg:a", "bg:b"}


def test_ledger_saves_from_many_threads(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledgers = [Ledger(path) for _ in range(4)]

    def work(n: int) -> None:
        for i in range(50):
            ledgers[n].record("s", "bom", f"p{n}-{i}", LedgerEntry("h", i, "k"))
        ledgers[n].save()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Ledger(path)) == 200


def test_a_corrupt_ledger_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    with pytest.raises(KeyStoreError) as caught:
        Ledger(path)
    assert "Move it aside" in caught.value.hint


def _dry(signer: Signer, ledger: Ledger) -> Publisher:
    return Publisher(signer=signer, dry_run=True, ledger=ledger)


def test_bom_revision_is_assigned_reused_and_raised(signer: Signer) -> None:
    ledger = Ledger.in_memory()
    bom = parse(BillOfMaterials, bom_json(revision=0, owner=None))
    first = _dry(signer, ledger).publish_many([bom]).outcomes[0]
    assert first.status is Status.VALID and first.sequence is not None
    assert "revision" in (first.note or "")
    # acknowledged content is remembered; a dry run does not write the ledger, so record it
    ledger.record(
        signer.owner, "bom", bom.product_id, LedgerEntry(_hash(bom), first.sequence, signer.key_id)
    )
    again = _dry(signer, ledger).publish_many([bom]).outcomes[0]
    assert again.sequence == first.sequence, "unchanged BOM: same revision, a duplicate"
    changed = parse(BillOfMaterials, bom_json(revision=0, owner=None, allocationNote="by mass"))
    later = _dry(signer, ledger).publish_many([changed]).outcomes[0]
    assert later.sequence is not None and later.sequence > first.sequence


def _hash(bom: BillOfMaterials) -> str:
    from pcf_exchange.producers._publisher import _body_hash

    return _body_hash(bom)


def test_bom_explicit_revision_and_owner(signer: Signer) -> None:
    ledger = Ledger.in_memory()
    explicit = parse(BillOfMaterials, bom_json(revision=3, owner=signer.owner))
    outcome = _dry(signer, ledger).publish_many([explicit]).outcomes[0]
    assert (outcome.status, outcome.sequence) == (Status.VALID, 3)
    acknowledged = LedgerEntry(_hash(explicit), 3, "k")
    ledger.record(signer.owner, "bom", explicit.product_id, acknowledged)
    ledger.record(signer.owner, "bom-revision", f"{explicit.product_id}#3", acknowledged)
    conflict = parse(BillOfMaterials, bom_json(revision=3, owner=signer.owner, allocationNote="x"))
    refused = _dry(signer, ledger).publish_many([conflict]).outcomes[0]
    assert refused.status is Status.REJECTED and refused.error_code == "revision_conflict"
    foreign = parse(BillOfMaterials, bom_json(owner="somebody-else"))
    refused = _dry(signer, ledger).publish_many([foreign]).outcomes[0]
    assert refused.error_code == "owner_mismatch"
    assert refused.violations[0].path == "owner"


def test_factor_sequence_same_content_same_sequence(operator_signer: Signer) -> None:
    ledger = Ledger.in_memory()
    factor = parse(EmissionFactor, factor_json())
    with _dry(operator_signer, ledger) as publisher:
        one = publisher.publish_many([factor, factor]).outcomes
    # within one run the second copy is "the same content as the last one": same sequence
    assert one[0].sequence == one[1].sequence
    changed = parse(EmissionFactor, factor_json(value="0.6"))
    with _dry(operator_signer, ledger) as publisher:
        two = publisher.publish_many([factor, changed]).outcomes
    assert two[1].sequence is not None and one[0].sequence is not None
    assert two[1].sequence > one[0].sequence


def test_in_place_edit_of_a_footprint_is_refused(signer: Signer) -> None:
    ledger = Ledger.in_memory()
    original = parse_footprint(footprint_json(1))
    with _dry(signer, ledger) as publisher:
        first = publisher.publish_many([original]).outcomes[0]
        assert first.content_hash is not None and first.sequence is not None
        ledger.record(
            signer.owner,
            "footprint",
            str(original.id),
            LedgerEntry(first.content_hash, first.sequence, signer.key_id, "Active"),
        )
        edited = footprint_json(1)
        edited["pcf"]["pcfExcludingBiogenicUptake"] = "1.00"
        edited["pcf"]["pcfIncludingBiogenicUptake"] = "1.00"
        outcomes = publisher.publish_many([original, parse_footprint(edited)]).outcomes
    assert outcomes[0].status is Status.VALID, "the same footprint again is a duplicate"
    assert outcomes[1].status is Status.REJECTED
    assert outcomes[1].error_code == "immutable_footprint"
    assert "--supersedes" in (outcomes[1].message or "")


def test_a_deprecated_footprint_is_not_reactivated(signer: Signer) -> None:
    ledger = Ledger.in_memory()
    original = parse_footprint(footprint_json(1))
    ledger.record(
        signer.owner,
        "footprint",
        str(original.id),
        LedgerEntry("h", 1, signer.key_id, "Deprecated"),
    )
    outcome = _dry(signer, ledger).publish_many([Item.of(original, "old.json#0")]).outcomes[0]
    assert (outcome.status, outcome.error_code, outcome.ref) == (
        Status.REJECTED,
        "superseded",
        "old.json#0",
    )


def test_an_older_bom_revision_is_skipped_if_published_else_refused(signer: Signer) -> None:
    ledger = Ledger.in_memory()
    one = parse(BillOfMaterials, bom_json(revision=1, owner=signer.owner))
    two = parse(BillOfMaterials, bom_json(revision=2, owner=signer.owner, allocationNote="v2"))
    for bom in (one, two):
        entry = LedgerEntry(_hash(bom), bom.revision, signer.key_id)
        ledger.record(signer.owner, "bom", bom.product_id, entry)
        ledger.record(signer.owner, "bom-revision", f"{bom.product_id}#{bom.revision}", entry)
    again = _dry(signer, ledger).publish_many([one, two]).outcomes
    assert [o.status for o in again] == [Status.SKIPPED, Status.VALID]
    assert "revision 2 followed" in (again[0].note or "")
    never = parse(BillOfMaterials, bom_json(revision=1, owner=signer.owner, allocationNote="?"))
    refused = _dry(signer, ledger).publish_many([never]).outcomes[0]
    assert (refused.status, refused.error_code) == (Status.REJECTED, "revision_conflict")
    ledger2 = Ledger.in_memory()
    entry = LedgerEntry(_hash(two), 2, signer.key_id)
    ledger2.record(signer.owner, "bom", two.product_id, entry)
    stale = _dry(signer, ledger2).publish_many([one]).outcomes[0]
    assert (stale.status, stale.error_code) == (Status.REJECTED, "stale")


def test_footprint_must_name_its_signer(signer: Signer) -> None:
    data = footprint_json(1, companyIds=["urn:pact:company:customcode:vendor-assigned:other-co"])
    outcome = _dry(signer, Ledger.in_memory()).publish_many([parse_footprint(data)]).outcomes[0]
    assert (outcome.status, outcome.error_code) == (Status.REJECTED, "key_supplier_mismatch")
    assert outcome.violations[0].path == "companyIds"


def test_an_older_footprint_of_a_product_is_stale_unless_it_was_published(signer: Signer) -> None:
    ledger = Ledger.in_memory()
    old = parse_footprint(footprint_json(1, created="2025-01-01T00:00:00Z"))
    new_data = footprint_json(2, created="2025-06-01T00:00:00Z")
    new_data["productIds"] = footprint_json(1)["productIds"]
    new = parse_footprint(new_data)
    product = old.product_ids[0]
    ledger.record(
        signer.owner, "product", product, LedgerEntry(str(new.id), footprint_sequence(new))
    )
    stale = _dry(signer, ledger).publish_many([old]).outcomes[0]
    assert (stale.status, stale.error_code) == (Status.REJECTED, "stale")
    with _dry(signer, Ledger.in_memory()) as publisher:
        first = publisher.publish_many([old]).outcomes[0]
    assert first.content_hash is not None and first.sequence is not None
    ledger.record(
        signer.owner,
        "footprint",
        str(old.id),
        LedgerEntry(first.content_hash, first.sequence, signer.key_id, "Active"),
    )
    skipped = _dry(signer, ledger).publish_many([old]).outcomes[0]
    assert skipped.status is Status.SKIPPED and skipped.ok
    assert "a newer footprint of this product followed" in (skipped.note or "")
