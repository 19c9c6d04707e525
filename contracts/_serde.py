"""Avro serde with Confluent framing: ``0x00`` + 4-byte big-endian schema id + Avro binary.

fastavro does the encoding (``schemaless_writer``/``schemaless_reader`` with pre-parsed,
cached schemas). Every failure on the way in becomes a :class:`SerdeError` (bytes are not a
framed record of a known type) or :class:`UnknownSchemaError`; a well-formed record that breaks a
rule becomes :class:`ValidationFailed`. Nothing else escapes :meth:`AvroSerde.decode`.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from functools import cache
from typing import Any, Final, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro._read_common import SchemaResolutionError
from fastavro._schema_common import SchemaParseException
from pydantic import BaseModel

from pcf_exchange.contracts import topics as topic_table
from pcf_exchange.contracts._envelope import (
    SignedBillOfMaterials,
    SignedEmissionFactor,
    SignedFootprint,
    SignedSupplierKey,
)
from pcf_exchange.contracts._footprint import ProductFootprint
from pcf_exchange.contracts._records import (
    ApprovalDecision,
    ApprovalRequest,
    AuditCheckpoint,
    AuditEntry,
    BillOfMaterials,
    EmissionFactor,
    Rejection,
    RolledUpFootprint,
    SupplierKey,
    TransferDecision,
)
from pcf_exchange.contracts._registry import SchemaRegistry
from pcf_exchange.contracts._schemas import NAMESPACE, normalized, parsed, schema_json
from pcf_exchange.contracts._unions import Prepare, preparer
from pcf_exchange.contracts._validate import CheckResult, check
from pcf_exchange.contracts.errors import SerdeError, UnknownSchemaError, ValidationFailed

__all__ = [
    "AVRO_CONTEXT",
    "MAGIC_BYTE",
    "MAX_MESSAGE_BYTES",
    "TOPICS",
    "WIRE_MODELS",
    "AvroSerde",
    "avro_name",
    "frame",
    "from_avro_dict",
    "register_all",
    "subject_for",
    "to_avro_dict",
    "topic_schemas",
    "unframe",
]

M = TypeVar("M", bound=BaseModel)

MAGIC_BYTE: Final = 0
MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
"""Larger values are refused before decoding (Kafka's default limit is 1 MiB)."""
AVRO_CONTEXT: Final[Mapping[str, Any]] = {"avro": True}

WIRE_MODELS: Final[tuple[type[BaseModel], ...]] = (
    SignedFootprint,
    SignedBillOfMaterials,
    SignedEmissionFactor,
    SignedSupplierKey,
    RolledUpFootprint,
    Rejection,
    TransferDecision,
    ApprovalRequest,
    ApprovalDecision,
    AuditEntry,
    AuditCheckpoint,
    ProductFootprint,
    BillOfMaterials,
    EmissionFactor,
    SupplierKey,
)
"""Every record type that may be a topic value (one Avro record type per topic)."""

_BY_NAME: Final[dict[str, type[BaseModel]]] = {f"{NAMESPACE}.{m.__name__}": m for m in WIRE_MODELS}

TOPICS: Final[Mapping[str, type[BaseModel]]] = {
    t.name: _BY_NAME[t.value] for t in topic_table.TOPICS.values() if t.value in _BY_NAME
}
"""Value type of each topic whose value is a contracts record (from :mod:`contracts.topics`)."""
_HEADER: Final = struct.Struct(">bI")


def avro_name(model: type[BaseModel]) -> str:
    return f"{NAMESPACE}.{model.__name__}"


def subject_for(topic: str) -> str:
    """Confluent TopicNameStrategy: the value schema of *topic* lives under ``<topic>-value``."""
    return f"{topic}-value"


def frame(schema_id: int, payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC_BYTE, schema_id) + payload


def unframe(data: bytes | bytearray | memoryview) -> tuple[int, memoryview]:
    """Split a Confluent frame into (schema id, Avro payload); raise :class:`SerdeError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SerdeError(f"message value must be bytes (got {type(data).__name__})")
    if len(data) > MAX_MESSAGE_BYTES:
        raise SerdeError(
            f"message value is {len(data)} bytes; at most {MAX_MESSAGE_BYTES} are accepted"
        )
    if len(data) < _HEADER.size:
        raise SerdeError(
            f"message value is {len(data)} bytes; "
            f"a framed Avro record needs at least {_HEADER.size} "
            "(magic byte 0 + 4-byte schema id)"
        )
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise SerdeError(f"magic byte must be 0 (Confluent wire format), got {magic & 0xFF}")
    return schema_id, memoryview(data)[_HEADER.size :]


def to_avro_dict(record: BaseModel) -> dict[str, Any]:
    """The Avro datum of *record* (every field present; decimals as PACT decimal strings).

    Lists are tuples: write it with ``schemaless_writer(..., disable_tuple_notation=True)``.
    """
    return record.model_dump(by_alias=True, context=AVRO_CONTEXT)


def from_avro_dict(model: type[M], datum: Any) -> CheckResult[M]:
    """Validate an Avro datum into *model* (all rules apply; never raises for bad data)."""
    return check(model, datum, context=AVRO_CONTEXT)


def topic_schemas(topic_prefix: str = "") -> list[tuple[str, str]]:
    """(subject, schema text) of the value of every topic in :data:`TOPICS`, names prefixed with
    *topic_prefix* (as deployments and tests that share a cluster use)."""
    from pcf_exchange.contracts.pcr import REVIEW_TOPICS, review_schemas  # (it imports this module)

    pairs = [(subject_for(topic_prefix + t), schema_json(m.__name__)) for t, m in TOPICS.items()]
    # and the review topics' (records held for a compliance officer, contracts.pcr)
    return pairs + review_schemas(topic_prefix + t for t in REVIEW_TOPICS)


def register_all(registry: SchemaRegistry, topic_prefix: str = "") -> dict[str, int]:
    """Register :func:`topic_schemas` with *registry*; returns subject -> id."""
    return {s: registry.register(s, text) for s, text in topic_schemas(topic_prefix)}


@cache
def _preparer(name: str) -> Prepare | None:
    return preparer(parsed(name))


class _Reader:
    __slots__ = ("model", "reader", "writer")

    def __init__(self, writer: Any, reader: Any, model: type[BaseModel]) -> None:
        self.writer, self.reader, self.model = writer, reader, model


_READ_ERRORS: Final = (
    EOFError,
    StopIteration,
    ValueError,  # includes UnicodeDecodeError
    TypeError,
    IndexError,
    KeyError,
    OverflowError,
    MemoryError,
    RecursionError,
    struct.error,
    SchemaResolutionError,
)


class AvroSerde:
    """Encode records to framed Avro and decode them back, through a :class:`SchemaRegistry`.

    ``auto_register=False`` (the default for producers) only looks schema ids up: registering is
    the operator's job. Ids and parsed schemas are cached per instance.
    """

    def __init__(self, registry: SchemaRegistry, *, auto_register: bool = False) -> None:
        self._registry = registry
        self._auto_register = auto_register
        self._ids: dict[tuple[str, str], int] = {}
        self._readers: dict[int, _Reader] = {}

    # -- encode

    def schema_id(self, topic: str, model: type[BaseModel]) -> int:
        key = (topic, model.__name__)
        found = self._ids.get(key)
        if found is None:
            subject, text = subject_for(topic), schema_json(model.__name__)
            if self._auto_register:
                found = self._registry.register(subject, text)
            else:
                found = self._registry.lookup(subject, text)
            self._ids[key] = found
        return found

    def encode(self, topic: str, record: BaseModel) -> bytes:
        """Framed Avro bytes of *record* for *topic*."""
        return self.encode_datum(topic, type(record), to_avro_dict(record))

    def encode_datum(self, topic: str, model: type[BaseModel], datum: dict[str, Any]) -> bytes:
        """Framed Avro bytes of the Avro *datum* of a *model* record for *topic*, with no model
        in between: for a hot path that builds the datum itself and has checked its rules (the
        streams' publish step, :func:`streams.adapt.rolled_up_datum`). The same bytes as
        :meth:`encode` of the record whose :func:`to_avro_dict` *datum* is.

        *datum* is consumed: naming its union branches changes its records in place, so a
        caller that needs it again (e.g. to make a ``Deprecated`` copy) must read it back from
        the bytes (:meth:`decode_datum`), never reuse it."""
        expected = TOPICS.get(topic)
        if expected is not None and model is not expected:
            raise SerdeError(f"topic '{topic}' carries {expected.__name__}, not {model.__name__}")
        schema_id = self.schema_id(topic, model)
        name = model.__name__
        schema, prepare = parsed(name), _preparer(name)
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(MAGIC_BYTE, schema_id))
        try:
            if prepare is None:
                schemaless_writer(buffer, schema, datum, disable_tuple_notation=True)
            else:  # union branches named (tuple notation): fastavro need not try each one
                schemaless_writer(buffer, schema, prepare(datum))
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise SerdeError(f"cannot encode {name} as Avro: {exc}") from exc
        return buffer.getvalue()

    # -- decode

    def _reader(self, schema_id: int) -> _Reader:
        reader = self._readers.get(schema_id)
        if reader is not None:
            return reader
        text = self._registry.get_schema(schema_id)  # UnknownSchemaError if absent
        try:
            writer_json = json.loads(text)
            writer = parse_schema(writer_json, named_schemas={})
        except (ValueError, TypeError, KeyError, SchemaParseException) as exc:
            raise SerdeError(
                f"schema id {schema_id} does not hold a usable Avro schema: {exc}"
            ) from exc
        name = writer_json.get("name", "") if isinstance(writer_json, dict) else ""
        full = name if "." in name else f"{writer_json.get('namespace', '')}.{name}"
        model = _BY_NAME.get(full)
        if model is None:
            raise UnknownSchemaError(
                f"schema id {schema_id} is {full or 'not a named record'}, "
                "not a record type we read"
            )
        current = schema_json(model.__name__)
        resolved = None if normalized(text) == normalized(current) else parsed(model.__name__)
        reader = self._readers[schema_id] = _Reader(writer, resolved, model)
        return reader

    def decode_datum(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[type[BaseModel], dict[str, Any]]:
        """(record type, Avro datum) of a framed message, without semantic validation."""
        schema_id, payload = unframe(data)
        reader = self._reader(schema_id)
        stream = io.BytesIO(payload)
        try:
            datum = schemaless_reader(stream, reader.writer, reader.reader)
        except _READ_ERRORS as exc:
            raise SerdeError(
                f"malformed Avro for schema id {schema_id} ({reader.model.__name__}): "
                f"{type(exc).__name__}: {str(exc)[:200] or 'truncated or corrupt payload'}"
            ) from exc
        rest = len(payload) - stream.tell()
        if rest:
            raise SerdeError(
                f"{rest} trailing bytes after the {reader.model.__name__} record "
                f"(schema id {schema_id}): "
                "the payload was written with another schema or is corrupt"
            )
        if not isinstance(datum, dict):
            raise SerdeError(
                f"schema id {schema_id} decoded to {type(datum).__name__}, not a record"
            )
        return reader.model, datum

    def check(self, data: bytes | bytearray | memoryview, model: type[M]) -> CheckResult[M]:
        """Decode and validate: wire problems raise :class:`SerdeError`; rule breaks return."""
        found, datum = self.decode_datum(data)
        if found is not model:
            raise SerdeError(
                f"expected a {model.__name__} but the message holds a {found.__name__}"
            )
        return from_avro_dict(model, datum)

    def decode(self, data: bytes | bytearray | memoryview, model: type[M]) -> M:
        """Decode and validate one message into *model*.

        Raises :class:`SerdeError`/:class:`UnknownSchemaError` for bytes that are not a framed
        record of that type, :class:`ValidationFailed` for a record that breaks a rule.
        """
        result = self.check(data, model)
        if result.value is None:
            raise ValidationFailed(result.violations, subject=f"{model.__name__} (Avro)")
        return result.value
