"""The publish step: a roll-up batch's new results as signed ``pcf.products`` records, built once.

The roll-up step (:mod:`streams._rollup_step`) keeps, per product, only its last new result of
the batch, whatever number of messages reached it; :meth:`Publisher.publish` builds the record
for each of those once, after the whole batch is applied, and, when its footprint supersedes
the product's previous one, the previous record again with its footprint ``Deprecated``, sent
just before it. So a product's records stay one consistent sequence: each footprint is
deprecated once, then its successor follows. The whole batch is signed once
(:func:`contracts.handoff.sign_handoffs`: a Merkle root over the records' exact key and value
bytes, signed with the worker's service key, and per record an inclusion proof, in Kafka
headers); the gateway releases nothing from ``pcf.products`` that does not verify. A result no
contract record can hold (a figure too large to write) is returned as :class:`Unwritable` for
the DLQ instead, and the product's state moves on as usual.

**The record is built as its Avro datum, from the core's result.** Through the models it cost
~650 µs per product on the demo chain (pydantic for the record and a PACT round trip of its
footprint, ~70 %; the model dump and Avro, ~30 %). :func:`~streams.adapt.rolled_up_datum` builds
the datum the models would give, checks it with the models' rules compiled as plain code
(:mod:`contracts._fast`: the wrapper's table and the PACT footprint's), and :class:`RecordEncoder`
writes it (the compiled encoder of :mod:`contracts._avro_encoder`, proven against fastavro's
:meth:`~contracts.AvroSerde.encode_datum` on the worker's first datums: ~39 µs of CPU for the demo
chain's 2.9 KB record against fastavro's ~79 µs, and 7-10 % less CPU per update on 6-tier chains in
the steps bench, session 18): the same bytes (``tests/streams/test_publish_datum.py``). When the
compiled rules cannot say yes, the record is built through the models
(:func:`~streams.adapt.rolled_up_record`), which refuse a bad result with the error and field they
always named: the DLQ reasons do not change.

**The Deprecated copy is made from the stored bytes, only when it is needed.** The product's
row keeps the Avro bytes of the record that issued its current footprint, exactly as they were
sent (:attr:`~streams._rollup_step.ProductRecord.issued_record`). When a new footprint
supersedes it, the copy is made from those bytes, with nothing but the footprint's ``status``
changed to ``Deprecated``: rewritten in place (:func:`deprecated_bytes`, a few µs: the status
string is found by reading through the footprint's first fields), or, when anything there is
not exactly as expected (an older schema id, a changed layout), read back as an Avro datum
(:meth:`~contracts.AvroSerde.decode_datum`, no model), the status set, encoded again (~300 µs):
both give the same bytes (``tests/streams/test_publish_datum.py``). (Never from the datum this
worker built: encoding names its union branches in place, so it is consumed.) The
crash-safety argument of :mod:`streams.runtime` ("Effectively once") holds unchanged: the row
with those bytes is stored only after the records of its batch were acknowledged, and the copy
is a function of the stored bytes alone, so whichever worker supersedes the footprint, after
any crash or rebalance, sends the same ``Deprecated`` record; a crash before the row is stored
leaves the previous row, and the redelivered batch builds records for the same results again.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from pcf_exchange.contracts import AvroSerde, BillOfMaterials, RolledUpFootprint, schema_json
from pcf_exchange.contracts._avro_encoder import Encode, Unsupported, compile_encoder
from pcf_exchange.contracts._schemas import expanded
from pcf_exchange.contracts._serde import frame, to_avro_dict
from pcf_exchange.contracts.errors import InfrastructureError, PcfError, RollupError, SerdeError
from pcf_exchange.contracts.handoff import HandoffSigner, sign_handoffs
from pcf_exchange.streams._rollup_step import NodeRecord, ProductRecord
from pcf_exchange.streams.adapt import rolled_up_datum, rolled_up_record
from pcf_exchange.streams.rollup import ProductRolledUp

__all__ = ["Publication", "Publisher", "Unwritable", "deprecated_bytes"]

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


_FOOTPRINT_HEAD: Final = (
    ("id", {"type": "string", "logicalType": "uuid"}),
    ("specVersion", "string"),
    (
        "precedingPfIds",
        ["null", {"type": "array", "items": {"type": "string", "logicalType": "uuid"}}],
    ),
    ("created", {"type": "long", "logicalType": "timestamp-micros"}),
    ("status", "string"),
)
"""The first fields of ``ProductFootprint``, in the order Avro writes them: what
:func:`deprecated_bytes` reads through to find ``status``."""


def _layout_holds() -> bool:
    """Whether the current ``RolledUpFootprint`` schema writes its footprint as
    :data:`_FOOTPRINT_HEAD` assumes: the ``footprint`` union's second branch, starting with
    those fields (a schema change turns the byte path off; the datum path remains)."""
    fields = {f["name"]: f["type"] for f in expanded("RolledUpFootprint")["fields"]}
    union = fields.get("footprint")
    if not (isinstance(union, list) and len(union) == 2 and union[0] == "null"):
        return False
    head = tuple((f["name"], f["type"]) for f in union[1]["fields"][: len(_FOOTPRINT_HEAD)])
    return head == _FOOTPRINT_HEAD


_LAYOUT_HOLDS: Final = _layout_holds()
_ACTIVE: Final = b"\x0cActive"  # (an Avro string: zigzag length 6, then the text)
_DEPRECATED: Final = b"\x14Deprecated"


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The zigzag Avro ``long`` at *at*, and where the next value starts."""
    shift = result = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), at
        shift += 7


def deprecated_bytes(stored: bytes, footprint_id: str, schema_id: int) -> bytes | None:
    """The ``Deprecated`` copy of a stored ``pcf.products`` record that issued *footprint_id*,
    made on its bytes: its footprint's ``status`` string, ``Active``, written as
    ``Deprecated``, every other byte as it was -- what decoding it, setting the status and
    encoding it again gives, without either (~300 µs for a record of 3 KB).

    The footprint is found by its union branch, its id and spec version (the id is this
    record's own and occurs once), then read through ``precedingPfIds`` and ``created`` to
    ``status``. ``None`` whenever anything is not exactly as expected (the record was written
    under another schema id than *schema_id*, the layout changed, the marker is not found once,
    the status is not ``Active``): then decode and encode."""
    if not _LAYOUT_HOLDS or len(stored) < 5 or stored[0] != 0:
        return None
    if int.from_bytes(stored[1:5], "big") != schema_id:
        return None
    ident = footprint_id.encode()
    if len(ident) != 36:
        return None
    marker = b"\x02\x48" + ident + b"\x0a3.0.0"  # branch 1, 36-char id, specVersion "3.0.0"
    at = stored.find(marker)
    if at < 0 or stored.find(marker, at + 1) >= 0:
        return None
    try:
        at += len(marker)
        branch, at = _varint(stored, at)  # precedingPfIds: null, or an array of uuids
        if branch == 1:
            while True:
                count, at = _varint(stored, at)
                if count == 0:
                    break
                if count < 0:  # (a block with its size in bytes)
                    count = -count
                    _, at = _varint(stored, at)
                for _ in range(count):
                    length, at = _varint(stored, at)
                    at += length
        elif branch != 0:
            return None
        _, at = _varint(stored, at)  # created
    except IndexError:
        return None
    if stored[at : at + len(_ACTIVE)] != _ACTIVE:
        return None
    return stored[:at] + _DEPRECATED + stored[at + len(_ACTIVE) :]


PROVE_FIRST: Final = 32
"""The compiled encoder's first datums are also written by fastavro, and must give its bytes."""


class RecordEncoder:
    """A ``RolledUpFootprint`` datum as framed Avro bytes: through the compiled encoder of
    :mod:`contracts._avro_encoder` (the producers' and the gateway's; a third of fastavro's
    cost on these records, which are ``[null, T]`` unions field after field), proven on the
    spot: its first :data:`PROVE_FIRST` datums are written by fastavro
    (:meth:`~contracts.AvroSerde.encode_datum`) as well, and the first difference turns it
    off for good (logged). A datum the compiled encoder refuses (a value of an unexpected type,
    a long past 64 bits) goes to fastavro, which raises the :class:`SerdeError` it always did.
    Unlike fastavro's path, the compiled one leaves the datum as it was."""

    def __init__(self, serde: AvroSerde, topic: str) -> None:
        self.serde = serde
        self.topic = topic
        self._compiled: Encode | None
        try:
            self._compiled = compile_encoder(json.loads(schema_json(RolledUpFootprint.__name__)))
        except Unsupported as exc:  # (a schema change: fastavro alone, as before)
            log.warning("pcf.products records are written by fastavro alone: %s", exc)
            self._compiled = None
        self._unproven = PROVE_FIRST
        self.compiled = 0
        """Records written by the compiled encoder (for tests and benchmarks)."""

    def encode(self, datum: dict[str, Any]) -> bytes:
        """The framed Avro bytes of *datum* (which fastavro's path consumes, see
        :meth:`~contracts.AvroSerde.encode_datum`)."""
        compiled = self._compiled
        if compiled is None:
            return self.serde.encode_datum(self.topic, RolledUpFootprint, datum)
        payload = bytearray()
        try:
            compiled(datum, payload)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
            return self.serde.encode_datum(self.topic, RolledUpFootprint, datum)
        out = frame(self.serde.schema_id(self.topic, RolledUpFootprint), bytes(payload))
        if self._unproven > 0:
            self._unproven -= 1
            slow = self.serde.encode_datum(self.topic, RolledUpFootprint, copy.deepcopy(datum))
            if slow != out:
                log.error(
                    "the compiled Avro encoder wrote a pcf.products record other than fastavro"
                    " (%s): fastavro alone from now on",
                    datum.get("productId"),
                )
                self._compiled = None
                return slow
        self.compiled += 1
        return out


class Publisher:
    """Builds, encodes and signs a batch's ``pcf.products`` records (see the module docstring)."""

    def __init__(self, serde: AvroSerde, topic: str, signer: HandoffSigner) -> None:
        self.serde = serde
        self.topic = topic
        self.signer = signer
        self.encoder = RecordEncoder(serde, topic)

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
                value, issued = self._record(result, _bom(product.bom), product.issued, now())
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
            if issued is not None:
                if product.issued is not None and issued != product.issued:
                    try:
                        retired = self._retired(product)
                    except InfrastructureError:
                        raise
                    except PcfError as exc:  # (our own record: a bug, logged, never hidden)
                        log.error("cannot deprecate %s's footprint: %s", result.product_id, exc)
                        retired = None
                    if retired is not None:
                        out.records.append((pkey, retired))  # its predecessor, once
                product = replace(product, issued=issued, issued_record=value, retire=None)
                out.rows[key] = replace(node, product=product)
            out.records.append((pkey, value))
        if out.records:
            out.headers.extend(sign_handoffs(self.signer, out.records))
        return out

    def _record(
        self, result: ProductRolledUp, bom: BillOfMaterials, previous: str | None, now: datetime
    ) -> tuple[bytes, str | None]:
        """(Avro bytes, id of the PACT footprint it issues or ``None``) of *result*'s record:
        built as its Avro datum (:func:`~streams.adapt.rolled_up_datum`); through the models
        (:func:`~streams.adapt.rolled_up_record`) only when the compiled rules cannot say yes,
        which raises the broken rule's error."""
        rolled = result.result
        datum = rolled_up_datum(
            rolled, sequence=result.sequence, bom=bom, previous_pf_id=previous, now=now
        )
        if datum is None:
            record = rolled_up_record(
                rolled, sequence=result.sequence, bom=bom, previous_pf_id=previous, now=now
            )
            datum = to_avro_dict(record)
        footprint = datum["footprint"]
        issued = None if footprint is None else str(footprint["id"])
        return self.encoder.encode(datum), issued

    def _retired(self, product: ProductRecord) -> bytes | None:
        """The ``Deprecated`` copy of the record that issued *product*'s current footprint, from
        its stored bytes: the status rewritten in place (:func:`deprecated_bytes`), or else read
        back as an Avro datum, the footprint's ``status`` set, encoded."""
        stored = product.issued_record
        if stored is None:
            return product.retire  # (a row of a worker before issued_record, or none)
        if product.issued is not None:
            schema_id = self.serde.schema_id(self.topic, RolledUpFootprint)
            copy = deprecated_bytes(stored, product.issued, schema_id)
            if copy is not None:
                return copy
        model, datum = self.serde.decode_datum(stored)
        if model is not RolledUpFootprint:
            raise SerdeError(f"a product row's issued record is a {model.__name__}")
        footprint = datum.get("footprint")
        if footprint is None:
            return None
        footprint["status"] = "Deprecated"
        return self.encoder.encode(datum)
