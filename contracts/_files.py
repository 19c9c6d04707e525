"""Files users hand us: PACT v3 footprints (JSON), bills of materials (JSON), factors (JSON/CSV).

Each loader returns one :class:`LoadedRecord` per record (file, index, the record or its
:class:`ValidationFailed`), so one bad record never hides the good ones; a file that cannot be
read at all gives a single result with ``index=None``. JSON Schemas describing each format are
in ``contracts/jsonschema/`` (see :func:`json_schema`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel

from pcf_exchange.contracts._footprint import ProductFootprint
from pcf_exchange.contracts._jsonio import MAX_JSON_BYTES, loads
from pcf_exchange.contracts._pact import check_footprint
from pcf_exchange.contracts._records import BillOfMaterials, EmissionFactor
from pcf_exchange.contracts._validate import CheckResult, check
from pcf_exchange.contracts.errors import ValidationFailed, Violation

__all__ = [
    "FACTOR_CSV_COLUMNS",
    "JSONSCHEMA_DIR",
    "LoadedRecord",
    "json_schema",
    "load_boms",
    "load_factors",
    "load_footprints",
    "read_boms",
    "read_factors_csv",
    "read_factors_json",
    "read_footprints",
]

T = TypeVar("T", bound=BaseModel)

JSONSCHEMA_DIR: Final = Path(__file__).resolve().parent / "jsonschema"

FACTOR_CSV_COLUMNS: Final[dict[str, str | None]] = {
    # column -> path inside the EmissionFactor JSON (None: top level, same name)
    "factorId": None,
    "name": None,
    "unit": None,
    "value": None,
    "source": None,
    "version": None,
    "geography": None,
    "technologicalDQR": "dqr",
    "geographicalDQR": "dqr",
    "temporalDQR": "dqr",
    "relativeStandardUncertaintyPercent": "uncertainty",
    "lower95": "uncertainty",
    "upper95": "uncertainty",
    "uncertaintyMethod": "uncertainty",
    "referenceYear": None,
    "fossilGhgEmissions": None,
    "biogenicNonCO2Emissions": None,
    "landUseChangeGhgEmissions": None,
    "fossilCarbonContent": None,
    "biogenicCarbonContent": None,
    "referencePublisher": "reference",
    "referenceTitle": "reference",
    "referenceUrl": "reference",
    "referencePublished": "reference",
    "referenceAsPublished": "reference",
}
_REQUIRED_COLUMNS: Final = ("factorId", "name", "unit", "value", "source", "version")
_CSV_KEYS: Final = {
    # column -> key inside its group, where they differ
    "uncertaintyMethod": "method",
    "referencePublisher": "publisher",
    "referenceTitle": "title",
    "referenceUrl": "url",
    "referencePublished": "published",
    "referenceAsPublished": "asPublished",
}


def _csv_int(cell: str) -> int | str:
    """A whole-number cell as an int (the model then checks its range); anything else as
    written, so the model's error names what came in."""
    return int(cell) if cell.isascii() and cell.isdigit() else cell


@dataclass(frozen=True, slots=True)
class LoadedRecord(Generic[T]):
    """One record of a file: the record, or why it was refused."""

    file: str
    index: int | None
    """Position in the file (0-based; the data row for CSV); ``None`` if the file is unreadable."""
    value: T | None
    error: ValidationFailed | None = None
    warnings: tuple[Violation, ...] = ()
    line: int | None = None
    """1-based line of a CSV row."""

    @property
    def ok(self) -> bool:
        return self.error is None


def _result(
    file: str, index: int | None, result: CheckResult[T], line: int | None = None
) -> LoadedRecord[T]:
    if result.ok:
        return LoadedRecord(file, index, result.value, None, result.warnings, line)
    return LoadedRecord(file, index, None, result.error(), result.warnings, line)


def _unreadable(file: str, error: ValidationFailed) -> list[Any]:
    return [LoadedRecord(file, None, None, error)]


def _read(path: str | Path) -> bytes | ValidationFailed:
    try:
        size = Path(path).stat().st_size
        if size > MAX_JSON_BYTES:
            return ValidationFailed(
                [
                    Violation(
                        "", "too_large", f"must be at most {MAX_JSON_BYTES} bytes", f"{size} bytes"
                    )
                ],
                subject=str(path),
            )
        return Path(path).read_bytes()
    except OSError as exc:
        return ValidationFailed(
            [Violation("", "unreadable", f"cannot be read: {exc.strerror or exc}")],
            subject=str(path),
        )


def _document(data: bytes | str, name: str) -> Any | ValidationFailed:
    try:
        return loads(data, subject=name)
    except ValidationFailed as exc:
        return exc


# --------------------------------------------------------------------------------------------
# Footprints


def read_footprints(
    data: bytes | str, *, name: str = "<input>"
) -> list[LoadedRecord[ProductFootprint]]:
    """PACT v3 footprints from JSON text.

    Accepts one object, a list, or a PACT response ``{"data": [...]}`` / ``{"data": {...}}``.
    """
    doc = _document(data, name)
    if isinstance(doc, ValidationFailed):
        return _unreadable(name, doc)
    if isinstance(doc, Mapping) and "data" in doc and "pcf" not in doc and "id" not in doc:
        extra = sorted(set(doc) - {"data"})
        if extra:
            error = ValidationFailed(
                [
                    Violation(
                        extra[0],
                        "unknown_field",
                        'is not expected next to "data" in a footprint list',
                    )
                ],
                subject=name,
            )
            return _unreadable(name, error)
        doc = doc["data"]
    items = doc if isinstance(doc, list) else [doc]
    return [
        _result(name, i, check_footprint(item, subject=f"{name} footprint [{i}]"))
        for i, item in enumerate(items)
    ]


def load_footprints(path: str | Path) -> list[LoadedRecord[ProductFootprint]]:
    data = _read(path)
    if isinstance(data, ValidationFailed):
        return _unreadable(str(path), data)
    return read_footprints(data, name=str(path))


# --------------------------------------------------------------------------------------------
# Bills of materials


def read_boms(data: bytes | str, *, name: str = "<input>") -> list[LoadedRecord[BillOfMaterials]]:
    """Bills of materials from JSON text: one object or a list (decimals as strings)."""
    doc = _document(data, name)
    if isinstance(doc, ValidationFailed):
        return _unreadable(name, doc)
    items = doc if isinstance(doc, list) else [doc]
    return [
        _result(name, i, check(BillOfMaterials, item, subject=f"{name} bill of materials [{i}]"))
        for i, item in enumerate(items)
    ]


def load_boms(path: str | Path) -> list[LoadedRecord[BillOfMaterials]]:
    data = _read(path)
    if isinstance(data, ValidationFailed):
        return _unreadable(str(path), data)
    return read_boms(data, name=str(path))


# --------------------------------------------------------------------------------------------
# Emission factors


def read_factors_json(
    data: bytes | str, *, name: str = "<input>"
) -> list[LoadedRecord[EmissionFactor]]:
    """Emission factors from JSON text: a list of factor objects (or one object)."""
    doc = _document(data, name)
    if isinstance(doc, ValidationFailed):
        return _unreadable(name, doc)
    items = doc if isinstance(doc, list) else [doc]
    return [
        _result(name, i, check(EmissionFactor, item, subject=f"{name} factor [{i}]"))
        for i, item in enumerate(items)
    ]


def _csv_path(violation: Violation) -> Violation:
    """``dqr.technologicalDQR`` -> ``technologicalDQR``: name the column the sender wrote."""
    path = violation.path
    for prefix in ("dqr.", "uncertainty.", "reference."):
        if path.startswith(prefix):
            key = path[len(prefix) :]
            column = next(
                (
                    c
                    for c, k in _CSV_KEYS.items()
                    if k == key and FACTOR_CSV_COLUMNS[c] == prefix[:-1]
                ),
                key,
            )
            return Violation(column, violation.code, violation.message, violation.got)
    return violation


def read_factors_csv(
    data: bytes | str, *, name: str = "<input>"
) -> list[LoadedRecord[EmissionFactor]]:
    """Emission factors from CSV with a header row (comma or semicolon separated, UTF-8).

    Columns: ``factorId,name,unit,value,source,version`` and optionally ``geography``, the
    three DQR columns, ``relativeStandardUncertaintyPercent``, ``lower95``, ``upper95``,
    ``uncertaintyMethod``, ``referenceYear``, the split ``fossilGhgEmissions``,
    ``biogenicNonCO2Emissions``, ``landUseChangeGhgEmissions``, the carbon contents
    ``fossilCarbonContent``, ``biogenicCarbonContent``, and the published source
    ``referencePublisher``, ``referenceTitle``, ``referenceUrl``, ``referencePublished``,
    ``referenceAsPublished`` (:class:`~contracts.FactorReference`). Empty cells are absent
    values; ``value`` is kgCO2e per unit. Errors name the CSV column (``referenceUrl``).
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            error = ValidationFailed(
                [
                    Violation(
                        "", "not_utf8", f"must be UTF-8 text; byte {exc.start} is not valid UTF-8"
                    )
                ],
                subject=name,
            )
            return _unreadable(name, error)
    else:
        text = data
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return _unreadable(
            name, ValidationFailed([Violation("", "empty", "has no header row")], subject=name)
        )
    except csv.Error as exc:
        return _unreadable(
            name,
            ValidationFailed(
                [Violation("", "csv_syntax", f"is not valid CSV: {exc}")], subject=name
            ),
        )
    problems = [
        Violation(
            column,
            "unknown_column",
            "is not a factor column; known: " + ", ".join(FACTOR_CSV_COLUMNS),
        )
        for column in header
        if column not in FACTOR_CSV_COLUMNS
    ]
    problems += [
        Violation(c, "required", "column is required") for c in _REQUIRED_COLUMNS if c not in header
    ]
    if len(set(header)) != len(header):
        problems.append(Violation("", "duplicate_column", "header repeats a column name"))
    if problems:
        return _unreadable(name, ValidationFailed(problems, subject=name))
    results: list[LoadedRecord[EmissionFactor]] = []
    index = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            error = ValidationFailed(
                [Violation("", "csv_syntax", f"is not valid CSV: {exc}")], subject=name
            )
            results.append(LoadedRecord(name, index, None, error, (), reader.line_num))
            break
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        subject = f"{name} line {line}"
        if len(row) != len(header):
            error = ValidationFailed(
                [
                    Violation(
                        "", "column_count", f"has {len(row)} cells but the header has {len(header)}"
                    )
                ],
                subject=subject,
            )
            results.append(LoadedRecord(name, index, None, error, (), line))
            index += 1
            continue
        record: dict[str, Any] = {}
        for column, raw_cell in zip(header, row, strict=True):
            cell = raw_cell.strip()
            if not cell:
                continue
            group = FACTOR_CSV_COLUMNS[column]
            if group is None:
                record[column] = _csv_int(cell) if column == "referenceYear" else cell
            else:
                key = _CSV_KEYS.get(column, column)
                record.setdefault(group, {})[key] = cell
        result = check(EmissionFactor, record, subject=subject)
        result = CheckResult(
            subject,
            result.value,
            tuple(_csv_path(v) for v in result.violations),
            tuple(_csv_path(v) for v in result.warnings),
        )
        results.append(_result(name, index, result, line))
        index += 1
    return results


def load_factors(path: str | Path) -> list[LoadedRecord[EmissionFactor]]:
    """Emission factors from a ``.csv`` file, or JSON otherwise."""
    data = _read(path)
    if isinstance(data, ValidationFailed):
        return _unreadable(str(path), data)
    if str(path).lower().endswith(".csv"):
        return read_factors_csv(data, name=str(path))
    return read_factors_json(data, name=str(path))


@cache
def _schema(name: str) -> str:
    return (JSONSCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema of a file format: ``footprints``, ``boms``, ``factors``, ``pcfx-extension``."""
    result: dict[str, Any] = json.loads(_schema(kind))
    return result
