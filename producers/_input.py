"""Input files: what ``pcfx publish`` reads, one :class:`Item` per record (or per bad file).

=============  ==================================================================================
footprints     PACT v3 JSON (one object, a list, or ``{"data": [...]}``); JSON Lines (``.jsonl``
               / ``.ndjson``: one footprint object per line, for files beyond the 64 MiB JSON
               limit); CSV (``.csv``, the column mapping below).
boms           JSON: one bill of materials or a list (``contracts/jsonschema/boms.schema.json``).
factors        JSON (a list, or one object) or CSV (``contracts``' factor columns).
=============  ==================================================================================

**Footprint CSV.** One footprint per row; a header row names the columns, comma or semicolon
separated, UTF-8. A column is a PACT v3 field path, with dots for nesting, exactly as the JSON
names it::

    id,specVersion,created,status,companyName,companyIds,productDescription,productIds,
    productNameCompany,pcf.declaredUnitOfMeasurement,pcf.declaredUnitAmount,
    pcf.productMassPerDeclaredUnit,pcf.referencePeriodStart,pcf.referencePeriodEnd,
    pcf.geographyCountry,pcf.pcfExcludingBiogenicUptake,pcf.pcfIncludingBiogenicUptake,
    pcf.fossilGhgEmissions,pcf.fossilCarbonContent,pcf.ipccCharacterizationFactors,
    pcf.crossSectoralStandards,pcf.exemptedEmissionsPercent,pcf.dqi.technologicalDQR,...

* an empty cell is an absent field;
* a list of texts (``companyIds``, ``productIds``, ``precedingPfIds``,
  ``pcf.crossSectoralStandards``, ...) is written in one cell, items separated by ``|``;
* a list of objects (``pcf.productOrSectorSpecificRules``,
  ``pcf.secondaryEmissionFactorSources``) or ``extensions`` is JSON text in the cell;
* booleans are ``true``/``false``; decimals are written as they are (``61.40``);
* ``pcfx.<field>`` columns fill our PACT extension (``pcfx.pilotCategory``, ``pcfx.standards``
  with ``|``, ``pcfx.uncertainty.lower95``, ``pcfx.stageBreakdown.<stage>``, ...);
* ``specVersion`` defaults to ``3.0.0`` and ``status`` to ``Active`` when the column is absent;
  ``id`` and ``created`` are required: they make re-publishing a row harmless (same id, same
  sequence).

Problems name the column and the 1-based line, e.g. ``footprints.csv:7 'pcf.dqi.temporalDQR'``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from pcf_exchange.contracts import (
    PCFX_EXTENSION_SCHEMA,
    BillOfMaterials,
    EmissionFactor,
    LoadedRecord,
    ProductFootprint,
    SupplierKey,
    ValidationFailed,
    Violation,
    check_footprint,
    json_schema,
    load_boms,
    load_factors,
    load_footprints,
)
from pcf_exchange.producers._fastpath import (
    PactFootprint,
    accept,
    canonical_payload,
    no_repeated_key,
)

__all__ = [
    "FOOTPRINT_CSV_DEFAULTS",
    "Item",
    "Kind",
    "footprint_csv_columns",
    "jsonl_item",
    "load_items",
    "read_footprints_csv",
    "read_footprints_jsonl",
]

Kind = Literal["footprints", "boms", "factors"]
Record = ProductFootprint | PactFootprint | BillOfMaterials | EmissionFactor | SupplierKey

FOOTPRINT_CSV_DEFAULTS: Final[Mapping[str, str]] = {"specVersion": "3.0.0", "status": "Active"}
_LIST_SEPARATOR: Final = "|"
MAX_JSON_BYTES: Final = 64 * 1024 * 1024
"""Largest CSV file or JSON line read (contracts' limit for a JSON document)."""
_PCFX_PREFIX: Final = "pcfx."


@dataclass(frozen=True, slots=True)
class Item:
    """One record to publish, or why it cannot be: what ``Publisher.publish_many`` takes."""

    record: Record | None
    ref: str
    file: str | None = None
    index: int | None = None
    line: int | None = None
    error: ValidationFailed | None = None
    warnings: tuple[Violation, ...] = ()
    note: str | None = None
    unreadable: bool = False
    """The whole file could not be read (``index`` is ``None``)."""
    pcr: tuple[Violation, ...] | None = None
    """The product-category-rule gate's verdict when a checking process ran it already
    (:mod:`producers._parallel`): ``()`` passed (a range warning is in :attr:`warnings`), else
    the violations that refuse the record; ``None``: the publisher runs the gate."""

    def __reduce__(self) -> tuple[Any, ...]:
        # (between processes: an exception pickles as its message, which ValidationFailed
        # would read as its violations; it travels as its type, violations and subject)
        error = self.error
        sent = None if error is None else (type(error), error.violations, error.subject)
        return (_item, (self.record, self.ref, self.file, self.index, self.line, sent,
                        self.warnings, self.note, self.unreadable, self.pcr))  # fmt: skip

    @classmethod
    def of(cls, record: Record, ref: str, note: str | None = None) -> Item:
        return cls(record, ref, note=note)

    @classmethod
    def from_loaded(cls, loaded: LoadedRecord[Any]) -> Item:
        if loaded.index is None:
            ref = loaded.file
        elif loaded.line is not None:
            ref = f"{loaded.file}:{loaded.line}"
        else:
            ref = f"{loaded.file}#{loaded.index}"
        return cls(
            loaded.value,
            ref,
            loaded.file,
            loaded.index,
            loaded.line,
            loaded.error,
            loaded.warnings,
            unreadable=loaded.index is None and loaded.error is not None,
        )

    def rejected(self, violations: Sequence[Violation]) -> Item:
        return replace(self, record=None, error=ValidationFailed(violations, subject=self.ref))


def _item(
    record: Record | None,
    ref: str,
    file: str | None,
    index: int | None,
    line: int | None,
    error: tuple[type[ValidationFailed], tuple[Violation, ...], str] | None,
    warnings: tuple[Violation, ...],
    note: str | None,
    unreadable: bool,
    pcr: tuple[Violation, ...] | None,
) -> Item:
    """An :class:`Item` unpickled (see :meth:`Item.__reduce__`)."""
    failed = None if error is None else error[0](error[1], subject=error[2])
    return Item(record, ref, file, index, line, failed, warnings, note, unreadable, pcr)


def _unreadable(name: str, code: str, message: str) -> list[Item]:
    error = ValidationFailed([Violation("", code, message)], subject=name)
    return [Item(None, name, name, None, None, error, unreadable=True)]


# --------------------------------------------------------------------------------------------
# Footprint CSV


@cache
def _footprint_defs() -> dict[str, Any]:
    defs: dict[str, Any] = json_schema("footprints")["$defs"]
    return defs


@cache
def _model_only_fields() -> frozenset[str]:
    aliases = {f.alias or n for n, f in ProductFootprint.model_fields.items()}
    return frozenset(aliases - {"pcfx"})


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _footprint_defs()[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _shape(path: str) -> str | None:
    """How a column's cell is read: ``text``, ``list`` (``|``-separated), ``json``, ``bool``,
    ``int``, or ``None`` when the path is not a footprint field."""
    if path.startswith(_PCFX_PREFIX):
        node: Any = json_schema("pcfx-extension")
        parts = path[len(_PCFX_PREFIX) :].split(".")
    else:
        node = _footprint_defs()["ProductFootprint"]
        parts = path.split(".")
        if parts[0] not in node.get("properties", {}) and len(parts) == 1:
            # a field the model reads but the file schema does not list (e.g. comment)
            return "text" if parts[0] in _model_only_fields() else None
    for part in parts:
        node = _resolve(node)
        if not isinstance(node, dict):
            return None
        properties = node.get("properties") or {}
        if part in properties:
            node = properties[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    node = _resolve(node)
    kind = node.get("type") if isinstance(node, dict) else None
    if kind == "array":
        items = _resolve(node.get("items", {}))
        return "list" if isinstance(items, dict) and items.get("type") == "string" else "json"
    if kind == "object":
        return "json"
    if kind == "boolean":
        return "bool"
    if kind == "integer":
        return "int"
    return "text"


def footprint_csv_columns() -> list[str]:
    """Every top-level footprint column (nested ``pcf.*``/``pcfx.*`` paths are allowed too)."""
    top = list(_footprint_defs()["ProductFootprint"].get("properties", {}))
    return [c for c in top if c not in ("pcf", "extensions")] + ["pcf.*", "pcfx.*", "extensions"]


def _cell(value: str, shape: str, column: str) -> Any:
    if shape == "list":
        return [part.strip() for part in value.split(_LIST_SEPARATOR) if part.strip()]
    if shape == "bool":
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ValueError(f"must be true or false (got {value!r})")
    if shape == "int":
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"must be an integer (got {value!r})") from None
    if shape == "json":
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"must be JSON text ({exc.args[0]})") from None
    return value


def _put(target: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _csv_violation(v: Violation, pcfx_index: int | None) -> Violation:
    """Name the CSV column: ``companyIds[1]`` -> ``companyIds``,
    ``extensions[0].data.pilotCategory`` -> ``pcfx.pilotCategory``."""
    path = v.path
    prefix = f"extensions[{pcfx_index}].data"
    if pcfx_index is not None and path.startswith(prefix):
        path = "pcfx" + path[len(prefix) :]
    if "[" in path and not path.startswith("extensions"):
        path = path.split("[", 1)[0]
    return v if path == v.path else Violation(path, v.code, v.message, v.got)


def read_footprints_csv(data: bytes | str, *, name: str = "<input>") -> list[Item]:
    """Footprints from CSV (see the module docstring for the columns)."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return _unreadable(
                name, "not_utf8", f"must be UTF-8 text; byte {exc.start} is not valid UTF-8"
            )
    else:
        text = data
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return _unreadable(name, "empty", "has no header row")
    except csv.Error as exc:
        return _unreadable(name, "csv_syntax", f"is not valid CSV: {exc}")
    shapes: dict[str, str] = {}
    problems: list[Violation] = []
    for column in header:
        shape = _shape(column) if column else None
        if shape is None:
            problems.append(
                Violation(
                    column,
                    "unknown_column",
                    "is not a PACT v3 footprint field path; known: "
                    + ", ".join(footprint_csv_columns()),
                )
            )
        else:
            shapes[column] = shape
    if len(set(header)) != len(header):
        problems.append(Violation("", "duplicate_column", "header repeats a column name"))
    problems += [
        Violation(c, "required", "column is required") for c in ("id", "created") if c not in header
    ]
    if problems:
        error = ValidationFailed(problems, subject=name)
        return [Item(None, name, name, None, None, error, unreadable=True)]
    items: list[Item] = []
    index = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            ref = f"{name}:{reader.line_num}"
            error = ValidationFailed(
                [Violation("", "csv_syntax", f"is not valid CSV: {exc}")], subject=ref
            )
            items.append(Item(None, ref, name, index, reader.line_num, error))
            break
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        ref = f"{name}:{line}"
        items.append(
            _footprint_row(header, shapes, row, ref=ref, name=name, index=index, line=line)
        )
        index += 1
    return items


def _footprint_row(
    header: list[str],
    shapes: Mapping[str, str],
    row: list[str],
    *,
    ref: str,
    name: str,
    index: int,
    line: int,
) -> Item:
    if len(row) != len(header):
        message = f"has {len(row)} cells but the header has {len(header)}"
        error = ValidationFailed([Violation("", "column_count", message)], subject=ref)
        return Item(None, ref, name, index, line, error)
    record: dict[str, Any] = dict(FOOTPRINT_CSV_DEFAULTS)
    extension: dict[str, Any] = {}
    problems: list[Violation] = []
    for column, raw in zip(header, row, strict=True):
        cell = raw.strip()
        if not cell:
            record.pop(column, None)  # an empty cell is an absent field, even a defaulted one
            continue
        try:
            value = _cell(cell, shapes[column], column)
        except ValueError as exc:
            problems.append(Violation.of(column, "csv_cell", str(exc)))
            continue
        if column.startswith(_PCFX_PREFIX):
            _put(extension, column[len(_PCFX_PREFIX) :].split("."), value)
        else:
            _put(record, column.split("."), value)
    pcfx_index: int | None = None
    if extension:
        extensions = record.setdefault("extensions", [])
        if not isinstance(extensions, list):
            problems.append(Violation("extensions", "csv_cell", "must be a JSON list"))
        else:
            pcfx_index = len(extensions)
            extensions.append(
                {"specVersion": "2.0.0", "dataSchema": PCFX_EXTENSION_SCHEMA, "data": extension}
            )
    if problems:
        return Item(None, ref, name, index, line, ValidationFailed(problems, subject=ref))
    result = check_footprint(record, subject=ref)
    warnings = tuple(_csv_violation(v, pcfx_index) for v in result.warnings)
    if result.value is None:
        violations = [_csv_violation(v, pcfx_index) for v in result.violations]
        return Item(
            None, ref, name, index, line, ValidationFailed(violations, subject=ref), warnings
        )
    return Item(result.value, ref, name, index, line, None, warnings)


# --------------------------------------------------------------------------------------------
# Footprint JSON Lines


def read_footprints_jsonl(path: Path) -> Iterator[Item]:
    """Footprints from JSON Lines, one object per line, read lazily (no size limit)."""
    name = str(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in finally, generator-scoped
    except OSError as exc:
        yield from _unreadable(name, "unreadable", f"cannot be read: {exc.strerror or exc}")
        return
    try:
        index = 0
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            yield jsonl_item(name, number, index, raw)
            index += 1
    except OSError as exc:
        yield from _unreadable(name, "unreadable", f"cannot be read: {exc.strerror or exc}")
    finally:
        handle.close()


def jsonl_item(name: str, number: int, index: int, raw: bytes) -> Item:
    """The :class:`Item` of one non-blank line of a JSON Lines footprint file (*number*: its
    1-based line, *index*: its place among the records): a pure function of its arguments,
    which ``pcfx publish --jobs`` runs in a checking process (:mod:`producers._parallel`)."""
    ref = f"{name}:{number}"
    if len(raw) > MAX_JSON_BYTES:
        message = f"must be at most {MAX_JSON_BYTES} bytes"
        too_large = ValidationFailed([Violation("", "too_large", message)], subject=ref)
        return Item(None, ref, name, index, number, too_large)
    fast = _fast_lane(raw)
    if fast is not None:
        return Item(fast, ref, name, index, number)
    result = check_footprint(raw, subject=ref)
    error = None if result.value is not None else result.error()
    return Item(result.value, ref, name, index, number, error, result.warnings)


# --------------------------------------------------------------------------------------------
# The fast lane (producers._fastpath): a footprint the model would accept without warnings and
# write back the same is kept as the JSON read; anything else is read by the model as before.


def _fast_lane(raw: bytes) -> PactFootprint | None:
    """One JSON object's :class:`PactFootprint`, or ``None``: let the model read it."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    # written once: read by both checks, and the payload of the signed body
    try:
        canonical = canonical_payload(value)
    except (TypeError, ValueError, RecursionError):  # e.g. nested too deep for orjson to write
        return None
    if not no_repeated_key(raw, value, canonical):
        return None
    return accept(value, canonical)


def _fast_json(path: Path) -> list[Item] | None:
    """The items of a PACT JSON file when the fast lane takes every footprint in it, else
    ``None`` (the file is read by the model path, which names each problem)."""
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError:
        return None  # the model path reports it
    if len(data) > MAX_JSON_BYTES:
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not no_repeated_key(data, doc):
        return None
    if type(doc) is dict and "data" in doc and "pcf" not in doc and "id" not in doc:
        if doc.keys() != {"data"}:
            return None
        doc = doc["data"]
    records = doc if type(doc) is list else [doc]
    items = []
    for index, value in enumerate(records):
        fast = accept(value)
        if fast is None:
            return None
        items.append(Item(fast, f"{name}#{index}", name, index))
    return items


# --------------------------------------------------------------------------------------------
# Dispatch


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def load_items(kind: Kind, path: Path) -> Iterator[Item]:
    """The records of *path* as :class:`Item`\\ s (lazily for JSON Lines)."""
    suffix = _suffix(path)
    name = str(path)
    if kind == "footprints":
        if suffix in (".jsonl", ".ndjson"):
            yield from read_footprints_jsonl(path)
            return
        if suffix == ".csv":
            try:
                data = path.read_bytes()
            except OSError as exc:
                yield from _unreadable(name, "unreadable", f"cannot be read: {exc.strerror or exc}")
                return
            if len(data) > MAX_JSON_BYTES:
                message = f"must be at most {MAX_JSON_BYTES} bytes; split it"
                yield from _unreadable(name, "too_large", message)
                return
            yield from read_footprints_csv(data, name=name)
            return
        if suffix not in ("", ".json"):
            yield from _wrong_format(name, suffix, ".json, .jsonl, .ndjson or .csv")
            return
        fast_items = _fast_json(path)
        if fast_items is not None:
            yield from fast_items
            return
        loaded: list[LoadedRecord[Any]] = list(load_footprints(path))
    elif kind == "boms":
        if suffix not in ("", ".json"):
            yield from _wrong_format(name, suffix, ".json")
            return
        loaded = list(load_boms(path))
    else:
        if suffix not in ("", ".json", ".csv"):
            yield from _wrong_format(name, suffix, ".json or .csv")
            return
        loaded = list(load_factors(path))
    for record in loaded:
        yield Item.from_loaded(record)


def _wrong_format(name: str, suffix: str, expected: str) -> list[Item]:
    return _unreadable(name, "unknown_format", f"must be {expected} (got a '{suffix}' file)")
