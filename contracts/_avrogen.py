"""Developer tool: derive Avro schemas from the records, to review against ``schemas/*.avsc``.

The committed ``.avsc`` files are the contract; this generator only proposes them.
``python -m pcf_exchange.contracts._avrogen --check`` lists every difference; ``--write``
rewrites the files (then add a history version, see :mod:`contracts._schemas`). Mapping:
decimals -> string (PACT decimal text), instants -> long/timestamp-micros, UUID -> string/uuid,
tuple -> array,
dict -> map, StrEnum -> enum with a fail-closed default, optional -> union with null first;
a field marked ``json_schema_extra={"avro_nullable": True}`` is required in Python but a union
with null first (default null) on the wire (a signed footprint's ``footprint``, which the v2
envelope carries inside ``signedBody`` instead).
"""

from __future__ import annotations

import json
import sys
import types
import typing
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

NAMESPACE: Final = "io.pcfexchange"

ENUM_DEFAULTS: Final[dict[str, str]] = {
    # The symbol an *older* reader falls back to when a newer writer sends a symbol it does not
    # know. Security labels fall back to the most restrictive value (fail closed).
    "PilotCategory": "OTHER",
    "DataGrade": "CORE",
    "PersonalInfo": "SENSITIVE_PI",
    "DestinationType": "OTH",
    "LegalMechanism": "UNKNOWN",
    "FieldActionKind": "BLK",
    "TransferOutcome": "DENY",
    "ApprovalOutcome": "REJECTED",
    "SignerRole": "company",
}


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _avro_type(annotation: Any, refs: set[str]) -> Any:
    annotation = _strip(annotation)
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only Optional unions are supported: {annotation}")
        return ["null", _avro_type(args[0], refs)]
    if origin is tuple:
        return {"type": "array", "items": _avro_type(get_args(annotation)[0], refs)}
    if origin is dict and get_args(annotation)[1] is Any:
        return "string"  # an arbitrary JSON object travels as JSON text
    if origin is dict:
        return {"type": "map", "values": _avro_type(get_args(annotation)[1], refs)}
    if origin is typing.Literal:
        return "string"
    if annotation is Decimal:
        return "string"
    if annotation is datetime:
        return {"type": "long", "logicalType": "timestamp-micros"}
    if annotation is UUID:
        return {"type": "string", "logicalType": "uuid"}
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "long"
    if annotation is str:
        return "string"
    if annotation is bytes:
        return "bytes"
    if isinstance(annotation, type) and issubclass(annotation, StrEnum | BaseModel):
        refs.add(annotation.__name__)
        return f"{NAMESPACE}.{annotation.__name__}"
    raise TypeError(f"no Avro mapping for {annotation!r}")


def _is_decimal(annotation: Any) -> bool:
    annotation = _strip(annotation)
    if get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = _strip(next(a for a in get_args(annotation) if a is not type(None)))
    return annotation is Decimal


def _default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


def record_schema(model: type[BaseModel]) -> tuple[dict[str, Any], set[str]]:
    refs: set[str] = set()
    fields = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        avro = _avro_type(info.annotation, refs)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        nullable = bool(extra.get("avro_nullable"))
        if nullable:  # required in Python, optional on the wire (e.g. carried as signed bytes)
            avro = ["null", avro]
        is_decimal = _is_decimal(info.annotation)
        field: dict[str, Any] = {"name": alias, "type": avro}
        doc = (info.description or "").strip()
        if is_decimal:
            doc = (doc + " " if doc else "") + "[PACT decimal string]"
        if doc:
            field["doc"] = " ".join(doc.split())
        if nullable:
            field["default"] = None
        elif info.default is not PydanticUndefined:
            field["default"] = _default(info.default)
        fields.append(field)
    schema: dict[str, Any] = {"type": "record", "name": model.__name__, "namespace": NAMESPACE}
    doc = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
    if doc:
        schema["doc"] = doc
    schema["fields"] = fields
    return schema, refs


def enum_schema(enum: type[StrEnum]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "enum", "name": enum.__name__, "namespace": NAMESPACE}
    doc = " ".join((enum.__doc__ or "").strip().split())
    if doc and not doc.startswith("An enumeration"):
        schema["doc"] = doc
    schema["symbols"] = [m.value for m in enum]
    if enum.__name__ in ENUM_DEFAULTS:
        schema["default"] = ENUM_DEFAULTS[enum.__name__]
    return schema


def all_schemas() -> dict[str, dict[str, Any]]:
    """Schema of every named type reachable from the wire records."""
    from pcf_exchange.contracts._serde import WIRE_MODELS

    named: dict[str, type[Any]] = {}
    todo: list[type[Any]] = list(WIRE_MODELS)
    while todo:
        cls = todo.pop()
        if cls.__name__ in named:
            continue
        named[cls.__name__] = cls
        if issubclass(cls, BaseModel):
            _, refs = record_schema(cls)
            module_types = _lookup_types()
            todo.extend(module_types[r] for r in refs)
    out = {}
    for name, cls in sorted(named.items()):
        out[name] = record_schema(cls)[0] if issubclass(cls, BaseModel) else enum_schema(cls)
    return out


def _lookup_types() -> dict[str, type[Any]]:
    from pcf_exchange.contracts import _envelope, _footprint, _records

    found: dict[str, type[Any]] = {}
    for module in (_footprint, _records, _envelope):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel | StrEnum):
                found[value.__name__] = value
    return found


def main(argv: list[str]) -> int:
    from pcf_exchange.contracts._schemas import SCHEMA_DIR, pretty

    write = "--write" in argv
    differences = 0
    for name, schema in all_schemas().items():
        path = SCHEMA_DIR / f"{name}.avsc"
        text = pretty(schema) + "\n"
        current = path.read_text() if path.exists() else None
        if current is not None and json.loads(current) == schema:
            continue
        differences += 1
        print(f"{'new' if current is None else 'changed'}: {path.name}")
        if write:
            path.write_text(text)
    return 1 if differences and not write else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
