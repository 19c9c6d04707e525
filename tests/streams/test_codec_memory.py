"""The codec's memory: what it keeps of the values it wrote is bounded by a small number of
instances, whatever the number of updates (issue #22: a streams worker's RSS grew 11–25 KB per
update taken, 15 MB a minute under the soak's load).

The codec keeps the bytes of each scoped instance it writes (a value, a BOM, a footprint, a
factor: :data:`streams.codec._SCOPED`) together with the instance itself, so that its ``id`` stays
its own. The instance holds everything hung on it (a value's lazily built result and lineage,
about 10 KB at three lines), so each one kept is memory kept: 20 000 per class held 200+ MB per
worker, a new value per ancestor per update until the cache was full."""

from __future__ import annotations

import gc
from decimal import Decimal

from pcf_exchange.contracts import load_factors
from pcf_exchange.streams import codec
from pcf_exchange.streams.adapt import core_factor, payload_hash
from pcf_exchange.streams.rollup import Factor, FactorPublished
from tests.reliability._exchange import FACTORS_FILE

WRITTEN = 10_000
"""Distinct instances written (a 10k-product graph's values after a few hundred updates)."""
KEPT = 4096
"""Most of them the codec may keep alive."""


def _alive(cls: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is cls)


def test_writing_many_distinct_values_keeps_a_bounded_number_of_them_alive() -> None:
    base = next(r.value for r in load_factors(FACTORS_FILE) if r.value is not None)
    before = _alive(Factor)
    for sequence in range(1, WRITTEN + 1):
        revised = base.model_copy(update={"value": base.value + Decimal(sequence) / 1000})
        factor = core_factor(revised, sequence=sequence, content_hash=payload_hash(revised))
        data = codec.encode_message(FactorPublished(factor))
        assert codec.decode_message(data) == FactorPublished(factor)
        del factor
    kept = _alive(Factor) - before
    assert kept <= KEPT, (
        f"{kept} of {WRITTEN} factors written are still alive: each instance kept holds what is"
        " hung on it (a value's result and lineage, ~10 KB); 20 000 per class held 200+ MB"
    )


def test_a_value_written_again_is_the_same_bytes_after_others_pushed_it_out() -> None:
    base = next(r.value for r in load_factors(FACTORS_FILE) if r.value is not None)
    first = core_factor(base, sequence=1, content_hash=payload_hash(base))
    once = codec.encode_message(FactorPublished(first))
    for sequence in range(2, codec._WRITTEN_MAX + 10):
        revised = base.model_copy(update={"value": base.value + Decimal(sequence) / 1000})
        factor = core_factor(revised, sequence=sequence, content_hash=payload_hash(revised))
        codec.encode_message(FactorPublished(factor))
    assert codec.encode_message(FactorPublished(first)) == once
