"""The publish step: a roll-up batch's new results as signed ``pcf.products`` records, built once.

The roll-up step (:mod:`streams._rollup_step`) keeps, per product, only its last new result of
the batch, whatever number of messages reached it; :meth:`Publisher.publish` builds the record
for each of those once, after the whole batch is applied: the PACT footprint and lineage
(:func:`~streams.adapt.rolled_up_record`), its Avro encoding, and, when its footprint supersedes
the product's previous one, the previous record again with its footprint ``Deprecated``
(:func:`~streams.adapt.deprecated_record`), sent just before it. So a product's records stay one
consistent sequence: each footprint is deprecated once, then its successor follows. The whole
batch is signed once (:func:`contracts.handoff.sign_handoffs`: a Merkle root over the records'
exact key and value bytes, signed with the worker's service key, and per record an inclusion
proof, in Kafka headers); the gateway releases nothing from ``pcf.products`` that does not
verify. A result no contract record can hold (a figure too large to write) is returned as
:class:`Unwritable` for the DLQ instead, and the product's state moves on as usual.

**The Deprecated copy is made only when it is needed.** The product's row keeps the Avro bytes
of the record that issued its current footprint, exactly as they were sent
(:attr:`~streams._rollup_step.ProductRecord.issued_record`). When a new footprint supersedes
it, the copy is made from those bytes: decoded, its footprint's ``status`` set to
``Deprecated`` and nothing else changed, encoded. (Or from the record this worker built, while
it holds it in memory and those are the row's bytes: the Avro round trip is exact, so that
gives the same bytes; ``tests/streams/test_runtime_steps.py`` checks it.) The crash-safety
argument of :mod:`streams.runtime` ("Effectively once") holds unchanged: the row with those
bytes is stored only after the records of its batch were acknowledged, and the copy is a
function of the stored bytes alone, so whichever worker supersedes the footprint, after any
crash or rebalance, sends the same ``Deprecated`` record; a crash before the row is stored
leaves the previous row, and the redelivered batch builds records for the same results again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from contracts import AvroSerde, BillOfMaterials, RolledUpFootprint
from contracts.errors import InfrastructureError, PcfError, RollupError
from contracts.handoff import HandoffSigner, sign_handoffs
from streams._rollup_step import NodeRecord, ProductRecord
from streams.adapt import deprecated_record, rolled_up_record
from streams.rollup import ProductRolledUp

__all__ = ["Publication", "Publisher", "Unwritable"]

log = logging.getLogger("pcfx.streams")

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Unwritable:
    """A result no contract record can hold, and why: for the DLQ."""

    result: ProductRolledUp
    error: PcfError


@dataclass(frozen=True)
class Publication:
    """A batch's ``pcf.products`` records and what publishing them changes."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(key, value), in the order they are to be sent."""
    headers: list[Headers] = field(default_factory=list)
    """Each record's signature headers (one batch signature, a proof per record)."""
    rows: dict[bytes, NodeRecord] = field(default_factory=dict)
    """The rows of the products that issued a footprint (their new ``issued``), per node key:
    stored with the batch's other rows, after the records are acknowledged."""
    unwritable: list[Unwritable] = field(default_factory=list)


@functools.lru_cache(maxsize=4096)
def _bom(document: str) -> BillOfMaterials:
    """A product row's BOM document, parsed once (it only changes with a new revision)."""
    return BillOfMaterials.model_validate_json(document)


class Publisher:
    """Builds, encodes and signs a batch's ``pcf.products`` records (see the module docstring).

    Remembers, per product, the last record it issued (at most *limit* products), so that the
    ``Deprecated`` copy of a record it built needs no decoding."""

    def __init__(
        self, serde: AvroSerde, topic: str, signer: HandoffSigner, limit: int = 4096
    ) -> None:
        self.serde = serde
        self.topic = topic
        self.signer = signer
        self.limit = limit
        self.issued: dict[bytes, tuple[bytes, RolledUpFootprint]] = {}
        """Per product node key: the issuing record's bytes and the record."""

    def publish(
        self,
        results: Mapping[bytes, ProductRolledUp],
        rows: Mapping[bytes, NodeRecord],
        now: Callable[[], datetime],
    ) -> Publication:
        """The records of each product's last result (*results*, per node key), given the
        products' new *rows*; signed together."""
        out = Publication()
        for key, result in results.items():
            node = rows[key]
            product = node.product
            if product is None or product.bom is None:
                continue  # (no BOM document yet: nothing a record can say what it is of)
            try:
                record = rolled_up_record(
                    result.result,
                    sequence=result.sequence,
                    bom=_bom(product.bom),
                    previous_pf_id=product.issued,
                    now=now(),
                )
                value = self.serde.encode(self.topic, record)
            except InfrastructureError:
                raise  # (the registry, not this result: the worker stops, and is restarted)
            except PcfError as exc:
                out.unwritable.append(Unwritable(result, exc))
                continue
            except ValueError as exc:  # (a bug of ours: still one result, not all of them)
                error = RollupError(f"the result for {result.product_id} cannot be written: {exc}")
                out.unwritable.append(Unwritable(result, error))
                continue
            pkey = result.product_id.encode()
            if record.footprint is not None:
                if product.issued is not None and str(record.footprint.id) != product.issued:
                    try:
                        retired = self._retired(key, product)
                    except InfrastructureError:
                        raise
                    except PcfError as exc:  # (our own record: a bug, logged, never hidden)
                        log.error("cannot deprecate %s's footprint: %s", result.product_id, exc)
                        retired = None
                    if retired is not None:
                        out.records.append((pkey, retired))  # its predecessor, once
                issued = str(record.footprint.id)
                product = replace(product, issued=issued, issued_record=value, retire=None)
                out.rows[key] = replace(node, product=product)
                self._remember(key, value, record)
            out.records.append((pkey, value))
        if out.records:
            out.headers.extend(sign_handoffs(self.signer, out.records))
        return out

    def _retired(self, key: bytes, product: ProductRecord) -> bytes | None:
        """The ``Deprecated`` copy of the record that issued *product*'s current footprint."""
        if product.issued_record is None:
            return product.retire  # (a row of a worker before issued_record, or none)
        cached = self.issued.get(key)
        if cached is not None and cached[0] == product.issued_record:
            record = cached[1]
        else:
            record = self.serde.decode(product.issued_record, RolledUpFootprint)
        deprecated = deprecated_record(record)
        return None if deprecated is None else self.serde.encode(self.topic, deprecated)

    def _remember(self, key: bytes, value: bytes, record: RolledUpFootprint) -> None:
        if key not in self.issued and len(self.issued) >= self.limit:
            del self.issued[next(iter(self.issued))]  # the oldest
        self.issued[key] = (value, record)
