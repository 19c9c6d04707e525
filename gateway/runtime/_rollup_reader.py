"""A generated reader of ``RolledUpFootprint`` bytes, straight into the policy's record.

The runner's step 1 used to decode each roll-up with fastavro (the Avro datum, with a UUID and a
datetime object per logical value) and then walk the datum to build the policy's record
(:func:`~gateway._adapter.record_from_datum`): the footprint's fields copied with ``None`` left
out, instants and UUIDs turned to text. :func:`compile_reader` turns the writer schema of a
schema id into Python source once, at the first sight of that id (as the producers' compiled
encoder, ``contracts._avro_encoder.compile_encoder``, knows each union's branch in advance), whose
functions read the footprint *already in its PACT JSON form* (``None`` fields never stored,
instants as ``contracts._types.format_datetime`` text, UUIDs as their canonical text) and the
rest of the roll-up as the datum fastavro gives. :func:`~gateway._adapter.record_from_read`
then finishes the record (extensions, the ``pcfx`` extension moved last, the lineage): one pass
over the bytes.

Safety nets, so that this path can never decide on a record the fastavro path would not give:

* it is compiled only for a writer schema equal to the current ``RolledUpFootprint`` schema (no
  schema resolution) and only of the types that schema uses (null, boolean, long incl.
  ``timestamp-micros``, string incl. ``uuid``, enum, array, map, record, unions with null);
  anything else raises :class:`Unsupported` and the id keeps the fastavro path;
* anything unexpected while reading (truncated or garbage bytes, an out-of-range union index or
  boolean, a negative length or block count, bytes left over, invalid UTF-8 or UUID) raises, and
  the caller then decodes that message the old way, which raises exactly what it raised before
  (the same rejection reason) or gives its record;
* a roll-up whose ``pcfx.fieldLabels`` is set takes the model's way (as ``record_from_datum``);
* ``tests/gateway/test_rollup_reader.py`` reads every roll-up shape of the tests and the bench
  both ways and compares the records field for field, key order included, and feeds truncated
  and garbage bytes to both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

from pcf_exchange.contracts import schema_json
from pcf_exchange.contracts._registry import SchemaRegistry
from pcf_exchange.contracts._schemas import normalized
from pcf_exchange.contracts._serde import MAX_MESSAGE_BYTES
from pcf_exchange.gateway._adapter import record_from_read

__all__ = ["Read", "RollupReader", "Unsupported", "compile_reader"]

Adapted = tuple[dict[str, Any] | None, str | None, str]
"""(policy input record or ``None`` without a footprint, pilot category, product id)."""

Read = Callable[[bytes, int], tuple[Any, int]]
"""``read(payload, position) -> (value, position after it)``."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class Unsupported(Exception):
    """The schema uses something :func:`compile_reader` does not implement."""


class Malformed(Exception):
    """The bytes are not a record of the compiled schema (the caller takes the fastavro path)."""


def _long(b: bytes, p: int) -> tuple[int, int]:
    """A zigzag varint at *p* (the generated code inlines the one-byte case)."""
    shift = 0
    n = 0
    while True:
        x = b[p]
        p += 1
        n |= (x & 0x7F) << shift
        if not x & 0x80:
            return (n >> 1) ^ -(n & 1), p
        shift += 7
        if shift > 63:
            raise Malformed("varint longer than 10 bytes")


def _string(b: bytes, p: int) -> tuple[str, int]:
    """A string at *p* whose length is not one byte (the generated code inlines that case)."""
    n, p = _long(b, p)
    if n < 0:
        raise Malformed("negative length")
    e = p + n
    return b[p:e].decode(), e


def _bad(what: str) -> Any:
    raise Malformed(what)


def _time(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _time_text(micros: int) -> str:
    """``format_datetime`` of the instant (an aware UTC datetime's text ends in ``+00:00``)."""
    return (_EPOCH + timedelta(microseconds=micros)).isoformat()[:-6] + "Z"


def _uuid_text(text: str) -> str:
    return str(UUID(text))


_PRIMITIVES: Final = frozenset({"null", "boolean", "int", "long", "string", "bytes"})


class _Generator:
    """Python source for one schema: a function per (named record, mode) and inline code for
    everything else. Mode ``plain`` is PACT JSON (``None`` left out, instants and UUIDs as text),
    mode ``datum`` what fastavro's reader gives."""

    def __init__(self, plain: Callable[[str], bool]) -> None:
        self.plain = plain  # records read in plain mode (and every record below them)
        self.types: dict[str, Any] = {}  # full name -> schema node
        self.functions: dict[tuple[str, bool], str] = {}  # (full name, plain) -> function name
        self.sources: list[str] = []
        self.constants: dict[str, Any] = {}
        self.counter = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    @staticmethod
    def full_name(name: str, namespace: str) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def register(self, node: Any, namespace: str) -> None:
        """Collect every named type (records may refer to one defined earlier by name)."""
        if isinstance(node, list):
            for branch in node:
                self.register(branch, namespace)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if isinstance(kind, dict | list):
            self.register(kind, namespace)
            return
        if kind in ("record", "enum", "fixed"):
            space = node.get("namespace", namespace)
            full = self.full_name(node["name"], space)
            self.types[full] = node
            if "." in node["name"]:
                space = node["name"].rsplit(".", 1)[0]
            if kind == "record":
                for field in node["fields"]:
                    self.register(field["type"], space)
        elif kind == "array":
            self.register(node["items"], namespace)
        elif kind == "map":
            self.register(node["values"], namespace)

    def resolve(self, node: Any, namespace: str) -> tuple[Any, str]:
        """(schema node, its namespace) of a reference or inline node."""
        if isinstance(node, str) and node not in _PRIMITIVES:
            full = self.full_name(node, namespace)
            if full not in self.types:
                raise Unsupported(f"reference to unknown named type {node!r}")
            found = self.types[full]
            return found, full.rsplit(".", 1)[0] if "." in full else ""
        if isinstance(node, dict) and isinstance(node.get("type"), dict | list):
            return self.resolve(node["type"], namespace)
        return node, namespace

    def value(self, node: Any, namespace: str, plain: bool, target: str, ind: str) -> list[str]:
        """Lines reading one value of *node* at ``p`` into *target* (``p`` advanced)."""
        node, namespace = self.resolve(node, namespace)
        if isinstance(node, list):
            return self.union(node, namespace, plain, target, ind)
        kind = node if isinstance(node, str) else node.get("type")
        logical = None if isinstance(node, str) else node.get("logicalType")
        if kind == "record":
            function = self.record(node, namespace, plain)
            return [f"{ind}{target}, p = {function}(b, p)"]
        if kind in ("long", "int"):
            lines = self.varint("x", ind)
            if logical == "timestamp-micros":
                convert = "_time_text" if plain else "_time"
                return [*lines, f"{ind}{target} = {convert}(x)"]
            return [*lines, f"{ind}{target} = x"]
        if kind == "string":  # a length under 64 is one byte (its zigzag even, under 128)
            lines = [
                f"{ind}n = b[p]",
                f"{ind}if n < 128 and not n & 1:",
                f"{ind}    e = p + 1 + (n >> 1); {target} = b[p + 1:e].decode(); p = e",
                f"{ind}else: {target}, p = _string(b, p)",
            ]
            if logical == "uuid":
                lines.append(f"{ind}{target} = {'_uuid_text' if plain else 'UUID'}({target})")
            return lines
        if kind == "boolean":
            return [
                f"{ind}x = b[p]; p += 1",
                f"{ind}if x > 1: _bad('boolean byte')",
                f"{ind}{target} = x == 1",
            ]
        if kind == "null":
            return [f"{ind}{target} = None"]
        if kind == "enum":
            symbols = self.fresh("S")
            self.constants[symbols] = tuple(node["symbols"])
            return [
                *self.varint("x", ind),
                f"{ind}if x < 0 or x >= {len(node['symbols'])}: _bad('enum index')",
                f"{ind}{target} = {symbols}[x]",
            ]
        if kind == "array":
            items, item = self.fresh("a"), self.fresh("v")
            body = self.value(node["items"], namespace, plain, item, ind + "        ")
            return [
                f"{ind}{items} = []",
                f"{ind}while True:",
                *self.varint("c", ind + "    "),
                f"{ind}    if c <= 0:",
                f"{ind}        if c: _bad('negative block count')",
                f"{ind}        break",
                f"{ind}    for _ in range(c):",
                *body,
                f"{ind}        {items}.append({item})",
                f"{ind}{target} = {items}",
            ]
        if kind == "map":
            entries, item = self.fresh("m"), self.fresh("v")
            body = self.value(node["values"], namespace, plain, item, ind + "        ")
            return [
                f"{ind}{entries} = {{}}",
                f"{ind}while True:",
                *self.varint("c", ind + "    "),
                f"{ind}    if c <= 0:",
                f"{ind}        if c: _bad('negative block count')",
                f"{ind}        break",
                f"{ind}    for _ in range(c):",
                *self.length(ind + "        "),
                f"{ind}        k = b[p:p + n].decode(); p += n",
                *body,
                f"{ind}        {entries}[k] = {item}",
                # (``None`` is left out of the PACT JSON: after the last of a repeated key)
                f"{ind}{target} = {{k: v for k, v in {entries}.items() if v is not None}}"
                if plain
                else f"{ind}{target} = {entries}",
            ]
        raise Unsupported(f"Avro type {kind!r} (logical type {logical!r})")

    @staticmethod
    def varint(name: str, ind: str) -> list[str]:
        return [
            f"{ind}{name} = b[p]",
            f"{ind}if {name} < 128: p += 1; {name} = ({name} >> 1) ^ -({name} & 1)",
            f"{ind}else: {name}, p = _long(b, p)",
        ]

    def length(self, ind: str) -> list[str]:
        return [*self.varint("n", ind), f"{ind}if n < 0: _bad('negative length')"]

    def union(
        self, branches: list[Any], namespace: str, plain: bool, target: str, ind: str
    ) -> list[str]:
        names = [b if isinstance(b, str) else b.get("type") for b in branches]
        nulls = [i for i, n in enumerate(names) if n == "null"]
        others = [i for i, n in enumerate(names) if n != "null"]
        if len(nulls) != 1 or len(others) != 1:
            raise Unsupported(f"union {branches!r}: only [null, T] unions are compiled")
        # the index is one byte (0 or 1 zigzagged: 0 or 2)
        body = self.value(branches[others[0]], namespace, plain, target, ind + "    ")
        return [
            f"{ind}x = b[p]; p += 1",
            f"{ind}if x == {2 * nulls[0]}: {target} = None",
            f"{ind}elif x == {2 * others[0]}:",
            *body,
            f"{ind}else: _bad('union index')",
        ]

    def record(self, node: Mapping[str, Any], namespace: str, plain: bool) -> str:
        space = node.get("namespace", namespace)
        full = self.full_name(node["name"], space)
        if "." in node["name"]:
            space = node["name"].rsplit(".", 1)[0]
        plain = plain or self.plain(full)
        slot = (full, plain)
        if slot in self.functions:
            return self.functions[slot]
        function = self.functions[slot] = self.fresh(
            f"{'plain' if plain else 'datum'}_{full.rsplit('.', 1)[-1]}_"
        )
        lines = [f"def {function}(b, p):"]
        if plain:  # None is left out of the PACT JSON, in the schema's order
            lines.append("    r = {}")
            for field in node["fields"]:
                name = field["name"]
                kind, _ = self.resolve(field["type"], space)
                lines += self.value(field["type"], space, plain, "y", "    ")
                if isinstance(kind, list):
                    lines.append(f"    if y is not None: r[{name!r}] = y")
                else:
                    lines.append(f"    r[{name!r}] = y")
            lines.append("    return r, p")
        else:  # every field, in locals, then one dict display
            names = [field["name"] for field in node["fields"]]
            for i, field in enumerate(node["fields"]):
                lines += self.value(field["type"], space, plain, f"f{i}", "    ")
            items = ", ".join(f"{name!r}: f{i}" for i, name in enumerate(names))
            lines.append(f"    return {{{items}}}, p")
        self.sources.append("\n".join(lines))
        return function


def compile_reader(schema: Mapping[str, Any], *, plain: Callable[[str], bool]) -> Read:
    """A reader of *schema*'s Avro binary (a record schema): fields of the records whose full
    name *plain* accepts are read in their PACT JSON form, the rest as fastavro's datum.

    Raises :class:`Unsupported` for what the generator does not implement. The reader raises
    :class:`Malformed`, ``IndexError``, ``ValueError`` (UTF-8, UUID) or ``OverflowError`` for
    bytes that are not such a record; it does not check that the bytes end with the record."""
    node = json.loads(json.dumps(schema))
    if not isinstance(node, dict) or node.get("type") != "record":
        raise Unsupported("only a record schema is compiled")
    generator = _Generator(plain)
    generator.register(node, "")
    top = generator.record(node, "", False)
    scope: dict[str, Any] = {
        "_long": _long,
        "_bad": _bad,
        "_string": _string,
        "_time": _time,
        "_time_text": _time_text,
        "_uuid_text": _uuid_text,
        "UUID": UUID,
        **generator.constants,
    }
    exec(compile("\n\n".join(generator.sources), f"<reader of {node['name']}>", "exec"), scope)
    read: Read = scope[top]
    return read


_FOOTPRINT: Final = "io.pcfexchange.ProductFootprint"


class RollupReader:
    """The policy's record of a framed ``RolledUpFootprint`` message through the generated
    reader, or ``None`` when this path does not give it (the caller then decodes the message
    with fastavro and :func:`~gateway._adapter.record_from_datum`, which raise the proper
    errors): a schema id it cannot compile (unknown, another record type, another version of
    the schema, what the generator does not implement; looked up once per id), bytes it cannot
    read to their end, a roll-up with ``pcfx.fieldLabels``."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self._registry = registry
        self._readers: dict[int, Read | None] = {}
        self._current = normalized(schema_json("RolledUpFootprint"))

    def schema_reader(self, schema_id: int) -> Read | None:
        """The compiled reader of *schema_id*, compiled at its first sight (``None``: none; an id
        the registry could not be asked about is asked again next time)."""
        if schema_id in self._readers:
            return self._readers[schema_id]
        try:
            text = self._registry.get_schema(schema_id)
        except Exception:  # (the fastavro path asks again and raises the proper error)
            return None
        found: Read | None = None
        try:
            if normalized(text) == self._current:
                found = compile_reader(json.loads(text), plain=_FOOTPRINT.__eq__)
        except (Unsupported, ValueError, TypeError, KeyError, SyntaxError):
            found = None
        self._readers[schema_id] = found
        return found

    def read(self, value: bytes) -> Adapted | None:
        if type(value) is not bytes or not 5 <= len(value) <= MAX_MESSAGE_BYTES or value[0]:
            return None
        read = self._readers.get(int.from_bytes(value[1:5], "big"), _UNSEEN)
        if read is _UNSEEN:
            read = self.schema_reader(int.from_bytes(value[1:5], "big"))
        if read is None:
            return None
        try:
            datum, end = read(value, 5)
        except (Malformed, IndexError, ValueError, OverflowError, RecursionError):
            return None
        if end != len(value):
            return None
        adapted = record_from_read(datum)
        if adapted is None:
            return None
        return adapted[0], adapted[1], datum["productId"]


def _unseen(b: bytes, p: int) -> tuple[Any, int]:  # pragma: no cover (a marker, never called)
    raise AssertionError


_UNSEEN: Final[Read] = _unseen
