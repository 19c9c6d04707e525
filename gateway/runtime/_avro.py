"""Avro for the gateway's own topics: schemas in ``schemas/*.avsc``, Confluent framing, a registry.

The records of ``contracts`` (``AuditEntry``, ``AuditCheckpoint``, ``ApprovalRequest``,
``ApprovalDecision``) cannot carry what the gateway hashes and signs (kind, outcome, reasons,
mechanisms, log id, last entry hash, hold fingerprint, a decision's reason), so a verifier could
not recompute an entry hash from them. The gateway therefore writes its own record types
(namespace ``io.pcfexchange.gateway``), each a lossless image of a core object, registered under
``<topic>-value`` like every other topic.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pcf_exchange.contracts import SchemaRegistry, register_schemas, subject_for, unframe
from pcf_exchange.contracts._avro_encoder import Encode, Unsupported, compile_encoder
from pcf_exchange.contracts._registry import lookup_ids
from pcf_exchange.contracts.errors import SerdeError, UnknownSchemaError
from pcf_exchange.gateway._codec import seal_to_datum
from pcf_exchange.gateway.audit import AuditEntry

__all__ = [
    "GATEWAY_NAMESPACE",
    "SCHEMA_NAMES",
    "GatewaySerde",
    "kafka_registrar",
    "schema_text",
]

GATEWAY_NAMESPACE: Final = "io.pcfexchange.gateway"
SCHEMA_NAMES: Final = (
    "SealedMessage",
    "AuditLogEntry",
    "AuditLogCheckpoint",
    "ApprovalEvent",
    "PiCounterEntry",
)
_HEADER: Final = struct.Struct(">bI")

Registrar = Callable[[list[tuple[str, str]]], None]
"""Registers ``(subject, schema text)`` pairs (the operator's writer, opened briefly)."""


@cache
def schema_text(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"'{name}' is not a gateway record type (one of {', '.join(SCHEMA_NAMES)})")
    return (
        resources.files("pcf_exchange.gateway.runtime")
        .joinpath("schemas", f"{name}.avsc")
        .read_text()
    )


@cache
def _parsed(name: str) -> Any:
    return parse_schema(json.loads(schema_text(name)), named_schemas={})


_FAST_ERRORS: Final = (TypeError, KeyError, AttributeError, ValueError, OverflowError)
"""What the compiled encoder raises for a datum it cannot write (fastavro then writes it, or
raises the :class:`SerdeError` it always raised)."""


def _compiled(schema: Any) -> Encode | None:
    """:func:`contracts._avro_encoder.compile_encoder` of *schema* (JSON), or ``None`` if it uses
    something that encoder does not implement (fastavro writes those records)."""
    try:
        return compile_encoder(schema)
    except Unsupported:
        return None


@cache
def _fast(name: str) -> Encode | None:
    """The compiled encoder of the gateway record type *name* (see :meth:`GatewaySerde.encode`)."""
    return _compiled(json.loads(schema_text(name)))


def kafka_registrar(
    bootstrap: str, *, prefix: str = "", topic: str | None = None, attempts: int = 8
) -> Registrar:
    """Register through a short-lived writer on the Kafka-topic registry of the deployment
    *prefix* (:func:`contracts.register_schemas`); the serde asks only for schemas it did not
    find, so a gateway under its own principal (which may not write the schemas topic) starts
    once the operator registered them (:func:`gateway.runtime.gateway_schemas`)."""

    def register(pairs: list[tuple[str, str]]) -> None:
        register_schemas(bootstrap, pairs, prefix=prefix, topic=topic, attempts=attempts)

    return register


@cache
def _entry_parts() -> tuple[Any, Any, Any, Encode | None, Encode | None]:
    """``AuditLogEntry`` cut around ``fieldActions``: (head, fieldActions, tail) record schemas,
    then the compiled encoders of head and tail (``None``: fastavro writes them).

    An Avro record is the concatenation of its fields' encodings, in schema order, with nothing
    between them, so head + fieldActions + tail encode to the bytes of the whole record. The
    parts are records of their own (the named types they use move with them).
    """
    full = json.loads(schema_text("AuditLogEntry"))
    fields = full["fields"]
    cut = next(i for i, f in enumerate(fields) if f["name"] == "fieldActions")

    def part(name: str, members: list[Any]) -> dict[str, Any]:
        return {"type": "record", "name": name, "namespace": GATEWAY_NAMESPACE, "fields": members}

    head = part("AuditLogEntryHead", fields[:cut])
    tail = part("AuditLogEntryTail", fields[cut + 1 :])
    return (
        parse_schema(head, named_schemas={}),
        parse_schema(part("AuditLogEntryActions", [fields[cut]]), named_schemas={}),
        parse_schema(tail, named_schemas={}),
        _compiled(head),
        _compiled(tail),
    )


_ACTIONS_AVRO: dict[tuple[Any, ...], bytes] = {}


def _actions_avro(groups: tuple[tuple[str, str, tuple[str, ...]], ...]) -> bytes:
    """Avro of an entry's ``fieldActions``, memoised by value (records of a layout share it)."""
    found = _ACTIONS_AVRO.get(groups)
    if found is None:
        buffer = io.BytesIO()
        datum = {"fieldActions": [{"action": a, "rule": r, "paths": list(p)} for a, r, p in groups]}
        schemaless_writer(buffer, _entry_parts()[1], datum)
        found = buffer.getvalue()
        if len(_ACTIONS_AVRO) >= 4096:
            _ACTIONS_AVRO.clear()
        _ACTIONS_AVRO[groups] = found
    return found


class _Reader:
    __slots__ = ("name", "reader", "writer")

    def __init__(self, name: str, writer: Any, reader: Any) -> None:
        self.name, self.writer, self.reader = name, writer, reader


class GatewaySerde:
    """Encode/decode the gateway's records with Confluent framing through a schema registry.

    :meth:`ensure` looks every ``(topic, record type)`` up and, when some are missing and a
    *registrar* was given, registers them (the operator's writer, opened only for that).
    """

    def __init__(self, registry: SchemaRegistry, *, registrar: Registrar | None = None) -> None:
        self.registry = registry
        self._registrar = registrar
        self._ids: dict[tuple[str, str], int] = {}
        self._headers: dict[tuple[str, str], bytes] = {}
        self._readers: dict[int, _Reader] = {}

    def ensure(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Make sure each ``(topic, record type)`` has a schema id (register what is missing)."""
        wanted = [pair for pair in dict.fromkeys(pairs) if pair not in self._ids]
        # looked up together: a miss costs one round of catch-up pauses for all of them
        found = lookup_ids(self.registry, [(subject_for(t), schema_text(n)) for t, n in wanted])
        missing: list[tuple[str, str]] = []
        for topic, name in wanted:
            schema_id = found.get((subject_for(topic), schema_text(name)))
            if schema_id is None:
                missing.append((topic, name))
            else:
                self._ids[(topic, name)] = schema_id
        if not missing:
            return
        subjects = [(subject_for(t), schema_text(n)) for t, n in missing]
        if self._registrar is not None:
            self._registrar(subjects)
        else:
            for subject, text in subjects:
                self.registry.register(subject, text)
        for topic, name in missing:
            self._ids[(topic, name)] = self.registry.lookup(subject_for(topic), schema_text(name))

    def _header(self, topic: str, name: str) -> bytes:
        header = self._headers.get((topic, name))
        if header is None:
            self.ensure([(topic, name)])
            header = self._headers[(topic, name)] = _HEADER.pack(0, self._ids[(topic, name)])
        return header

    def encode(self, topic: str, name: str, datum: dict[str, Any]) -> bytes:
        """Framed Avro bytes of *datum* as record type *name* for *topic*.

        Written by the compiled encoder (:func:`contracts._avro_encoder.
        compile_encoder`: each union's branch known in advance, no schema walked per record)
        where the record type allows it, else, and for any datum that encoder refuses, by
        fastavro, which raises :class:`SerdeError` for what it cannot write. The same bytes
        either way (``tests/gateway/test_runtime_units.py`` compares them record type by
        record type), with one difference the gateway never meets: a ``long`` beyond 64 bits,
        which fastavro refuses and the compiled encoder writes as a longer varint (the
        gateway's longs are its own sequence numbers, offsets and counts)."""
        header = self._header(topic, name)
        fast = _fast(name)
        if fast is not None:
            out = bytearray(header)
            try:
                fast(datum, out)
            except _FAST_ERRORS:
                pass
            else:
                return bytes(out)
        return self._fastavro(header, name, datum)

    def _fastavro(self, header: bytes, name: str, datum: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(header)
        try:
            schemaless_writer(buffer, _parsed(name), datum)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise SerdeError(f"cannot encode {name} as Avro: {exc}") from exc
        return buffer.getvalue()

    def encode_entry(self, topic: str, entry: AuditEntry, log_id: str) -> bytes:
        """``encode(topic, "AuditLogEntry", entry_to_datum(entry, log_id))``, byte for byte, with
        the field groups (most of an entry) written once per distinct value, the rest by the
        compiled encoders of the entry's head and tail (as :meth:`encode`)."""
        head, _, tail, fast_head, fast_tail = _entry_parts()
        datum = entry.body_except_actions()
        datum["logId"] = log_id
        datum["entryHash"] = entry.entry_hash
        datum["seal"] = seal_to_datum(entry)
        header = self._header(topic, "AuditLogEntry")
        if fast_head is not None and fast_tail is not None:
            out = bytearray(header)
            try:
                fast_head(datum, out)
                out += _actions_avro(entry.field_actions)
                fast_tail(datum, out)
            except _FAST_ERRORS:
                pass
            else:
                return bytes(out)
        buffer = io.BytesIO()
        buffer.write(header)
        try:
            schemaless_writer(buffer, head, datum)
            buffer.write(_actions_avro(entry.field_actions))
            schemaless_writer(buffer, tail, datum)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise SerdeError(f"cannot encode AuditLogEntry as Avro: {exc}") from exc
        return buffer.getvalue()

    def _reader(self, schema_id: int, expected: str) -> _Reader:
        reader = self._readers.get(schema_id)
        if reader is None:
            text = self.registry.get_schema(schema_id)
            try:
                writer_json = json.loads(text)
                writer = parse_schema(writer_json, named_schemas={})
            except (ValueError, TypeError, KeyError) as exc:
                raise SerdeError(f"schema id {schema_id} is not usable Avro: {exc}") from exc
            full = str(writer_json.get("name", "")) if isinstance(writer_json, dict) else ""
            if "." not in full and isinstance(writer_json, dict):
                full = f"{writer_json.get('namespace', '')}.{full}"
            namespace, _, name = full.rpartition(".")
            if namespace != GATEWAY_NAMESPACE or name not in SCHEMA_NAMES:
                raise UnknownSchemaError(
                    f"schema id {schema_id} is {full or 'not a named record'}, not a gateway"
                    " record type"
                )
            same = json.loads(schema_text(name)) == writer_json
            reader = self._readers[schema_id] = _Reader(
                name, writer, None if same else _parsed(name)
            )
        if reader.name != expected:
            raise SerdeError(f"expected a {expected} but the message holds a {reader.name}")
        return reader

    def decode(self, data: bytes | bytearray | memoryview, name: str) -> dict[str, Any]:
        """The Avro datum of a framed *name* record; :class:`SerdeError` if it is not one."""
        schema_id, payload = unframe(data)
        reader = self._reader(schema_id, name)
        stream = io.BytesIO(payload)
        try:
            datum = schemaless_reader(stream, reader.writer, reader.reader)
        except (EOFError, ValueError, TypeError, IndexError, KeyError, struct.error) as exc:
            raise SerdeError(f"malformed {name} (schema id {schema_id}): {exc!r}") from exc
        if stream.tell() != len(payload):
            raise SerdeError(f"trailing bytes after the {name} record (schema id {schema_id})")
        if not isinstance(datum, dict):
            raise SerdeError(f"schema id {schema_id} did not decode to a record")
        return datum
